/**
 * Image input for the CNN, matched to the default backbone's own preprocessing: nsfwjs 4.4.0 feeds its
 * MobileNetV2 `tf.image.resizeBilinear(pixels / 255, [224, 224], alignCorners = true)` (dist/esm/core.js,
 * NSFWJS.infer), RGB in [0, 1]; the graph scales to [-1, 1] itself. Here: decoded with sharp (any format it
 * reads), transparency flattened onto mid-grey (the usual background of a stimulus display), padded with
 * grey to a square at the image's own resolution (so a non-square stimulus keeps the shape the animal sees;
 * nsfwjs would stretch it, square images are identical), then resized with exactly that bilinear
 * interpolation. docs/compute.md, "Features", says why (sharp's own resize, Lanczos, gave features with a
 * median correlation of 0.958 to the backbone's bilinear input, minimum 0.85).
 */
import sharp from 'sharp';

export const GREY = { r: 128, g: 128, b: 128 };

/** Part of the feature cache key: changes whenever the pixels fed to the CNN would change. */
export const PREPROCESSING_ID = 'grey-square-bilinear-aligned-v2';

/** Decodes one image file to size x size x 3 floats in [0, 1], row-major. */
export async function loadImage(file: string, size: number): Promise<Float32Array> {
  const flat = await sharp(file).flatten({ background: GREY }).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  const { width, height, channels } = flat.info;
  const side = Math.max(width, height);
  const top = Math.floor((side - height) / 2);
  const left = Math.floor((side - width) / 2);
  const square = new Float32Array(side * side * 3);
  for (let i = 0; i < side * side; i++) square.set([GREY.r / 255, GREY.g / 255, GREY.b / 255], i * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      for (let k = 0; k < 3; k++) square[((y + top) * side + x + left) * 3 + k] = flat.data[(y * width + x) * channels + k] / 255;
  return resizeBilinearAligned(square, side, side, size, size);
}

/**
 * Bilinear resize of an H x W x 3 image with aligned corners, as tf.image.resizeBilinear(x, [h, w], true):
 * output pixel (i, j) samples the input at (i (H - 1) / (h - 1), j (W - 1) / (w - 1)), the corner pixels
 * map onto each other, and no antialiasing filter is applied (none is when enlarging, the usual case).
 */
export function resizeBilinearAligned(src: Float32Array, H: number, W: number, h: number, w: number): Float32Array {
  const out = new Float32Array(h * w * 3);
  const sy = h > 1 ? (H - 1) / (h - 1) : 0;
  const sx = w > 1 ? (W - 1) / (w - 1) : 0;
  for (let i = 0; i < h; i++) {
    const y = i * sy;
    const y0 = Math.floor(y);
    const y1 = Math.min(y0 + 1, H - 1);
    const fy = y - y0;
    for (let j = 0; j < w; j++) {
      const x = j * sx;
      const x0 = Math.floor(x);
      const x1 = Math.min(x0 + 1, W - 1);
      const fx = x - x0;
      for (let k = 0; k < 3; k++) {
        const a = src[(y0 * W + x0) * 3 + k];
        const b = src[(y0 * W + x1) * 3 + k];
        const c = src[(y1 * W + x0) * 3 + k];
        const d = src[(y1 * W + x1) * 3 + k];
        const top = a + (b - a) * fx;
        out[(i * w + j) * 3 + k] = top + (c + (d - c) * fx - top) * fy;
      }
    }
  }
  return out;
}
