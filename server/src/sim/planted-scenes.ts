/**
 * Ground truth for the shared-feature maps: grey 224 x 224 scenes with 80 x 80 demo objects at known
 * places, model neurons planted on known latent dimensions of one object, and deletion curves (Petsiuk et
 * al.) of a neuron's model response. Used by the map tests and `bench/deletion.ts`.
 */
import path from 'node:path';
import sharp from 'sharp';
import { tf } from '../compute/backend.ts';
import { GREY } from '../compute/image-input.ts';
import type { FeatureFn } from '../compute/shared-feature-maps.ts';

export const SIZE = 224;
export const OBJ = 80;
/** Left/top of the two object places. */
export const A = 16;
export const B = 128;

/** [shared object, distractor in the driver scene, distractor in the reference scene]. */
export const scenePairs: [string, string, string][] = [
  ['guitar', 'car', 'baby'],
  ['hammer', 'cactus', 'frog'],
  ['monkey', 'umbrella', 'key'],
];

export interface Placed {
  name: string;
  left: number;
  top: number;
}

/** A grey scene with demo objects (stimuli/demo/images/NAME.png) at the given places, as 1 x 224 x 224 x 3 in [0, 1]. */
export async function scene(imagesDir: string, parts: Placed[]): Promise<tf.Tensor4D> {
  const layers = await Promise.all(parts.map(async (p) => ({ input: await sharp(path.join(imagesDir, `${p.name}.png`)).resize(OBJ, OBJ).png().toBuffer(), left: p.left, top: p.top })));
  const { data } = await sharp({ create: { width: SIZE, height: SIZE, channels: 3, background: GREY } }).composite(layers).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return tf.tensor4d(Float32Array.from(data, (v) => v / 255), [1, SIZE, SIZE, 3]);
}

/** The driver scene (shared object at A, distractor 1 at B) and the reference scene (shared at B, distractor 2 at A). */
export async function scenePair(imagesDir: string, [shared, d1, d2]: [string, string, string]): Promise<{ xO: tf.Tensor4D; xRef: tf.Tensor4D }> {
  const xO = await scene(imagesDir, [{ name: shared, left: A, top: A }, { name: d1, left: B, top: B }]);
  const xRef = await scene(imagesDir, [{ name: shared, left: B, top: B }, { name: d2, left: A, top: A }]);
  return { xO, xRef };
}

/** A model neuron on known latent dimensions: weight 1 on the 20 where the shared object alone exceeds both distractors and the blank. */
export async function plantedNeuron(phi: FeatureFn, imagesDir: string, [shared, d1, d2]: [string, string, string]): Promise<Float32Array> {
  const f = async (parts: Placed[]) => {
    const x = await scene(imagesDir, parts);
    const v = tf.tidy(() => phi(x).dataSync());
    x.dispose();
    return v;
  };
  const centre = (name: string) => [{ name, left: 72, top: 72 }];
  const [ps, p1, p2, pb] = [await f(centre(shared)), await f(centre(d1)), await f(centre(d2)), await f([])];
  const margin = Array.from(ps, (x, d) => x - Math.max(p1[d], p2[d], pb[d]));
  const w = new Float32Array(ps.length);
  for (const d of Array.from(margin.keys()).sort((a, b) => margin[b] - margin[a]).slice(0, 20)) w[d] = 1;
  return w;
}

/** Sum of a SIZE x SIZE map over the object placed at (left, top). */
export function massIn(m: Float32Array, left: number, top: number): number {
  let s = 0;
  for (let y = top; y < top + OBJ; y++) for (let x = left; x < left + OBJ; x++) s += m[y * SIZE + x];
  return s;
}

/** Deleted fractions of the curve: 5%, 15%, ..., 95%. */
export const deletionFractions = Array.from({ length: 10 }, (_, i) => i / 10 + 0.05);

/**
 * Area of the deletion curve: the pixels of `x` set to grey (0.5) in the order of `map` (highest first),
 * the model response w . phi after each fraction, averaged. Lower = the map finds what drives w faster.
 */
export function deletionArea(phi: FeatureFn, x: tf.Tensor4D, w: Float32Array, map: Float32Array, fracs = deletionFractions): number {
  const xv = x.dataSync();
  const order = Array.from(map.keys()).sort((a, b) => map[b] - map[a]);
  let total = 0;
  for (const frac of fracs) {
    const deleted = Float32Array.from(xv);
    for (const i of order.slice(0, Math.floor(frac * order.length))) deleted.fill(0.5, i * 3, i * 3 + 3);
    total += tf.tidy(() => tf.sum(tf.mul(phi(tf.tensor4d(deleted, [1, SIZE, SIZE, 3])), tf.tensor1d(w))).dataSync()[0]);
  }
  return total / fracs.length;
}
