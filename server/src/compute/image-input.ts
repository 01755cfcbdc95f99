/**
 * Image decoding for the CNN with sharp: any format sharp reads, transparency flattened onto mid-grey (the
 * usual background of a stimulus display), letterboxed to a square of `size` pixels, RGB in [0, 1].
 */
import sharp from 'sharp';

export const GREY = { r: 128, g: 128, b: 128 };

/** Decodes one image file to size x size x 3 floats in [0, 1], row-major. */
export async function loadImage(file: string, size: number): Promise<Float32Array> {
  const { data } = await sharp(file)
    .flatten({ background: GREY })
    .resize(size, size, { fit: 'contain', background: GREY })
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return Float32Array.from(data, (v) => v / 255);
}
