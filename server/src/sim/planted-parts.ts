/**
 * The planted benchmark of the shared-feature maps (issue 15; `bench/maps-quality.ts` and the map tests):
 * parts (the central 72 x 72 of a demo image drawn at 96 x 96) pasted at known quadrant boxes into whole
 * images of another category, model neurons planted on the latent dimensions of one part, and the
 * measures that say what a good map is (pointing game, mass in the box, rank correlations).
 *
 * Scene k: the driver is host image H1 with parts P, Q, R in three quadrants; the reference is host H2
 * with P and Q in two other quadrants. Even k paste body/face parts into object images (the
 * out-of-category driver carrying part of a preferred image), odd k the reverse.
 */
import path from 'node:path';
import sharp from 'sharp';
import { tf } from '../compute/backend.ts';
import { GREY } from '../compute/image-input.ts';
import type { FeatureFn } from '../compute/shared-feature-maps.ts';

export const SIZE = 224;
export const PART = 72;
/** Left/top of the four quadrant boxes: top-left, top-right, bottom-left, bottom-right. */
export const QUADRANTS: [number, number][] = [
  [12, 12],
  [140, 12],
  [12, 140],
  [140, 140],
];

export interface Box {
  left: number;
  top: number;
  size: number;
}
export interface PartPlacement {
  file: string;
  box: Box;
}
export interface DemoImage {
  file: string;
  category: string;
}
export interface PlantedScene {
  /** Image files (relative to the set folder) of the hosts and parts. */
  hosts: [string, string];
  parts: { P: string; Q: string; R: string };
  /** Boxes in the driver (P, Q, R) and in the reference (P, Q). */
  driverBoxes: { P: Box; Q: Box; R: Box };
  referenceBoxes: { P: Box; Q: Box };
}

const box = (q: number): Box => ({ left: QUADRANTS[q][0], top: QUADRANTS[q][1], size: PART });

/** `n` scenes from a stimulus set's images (deterministic: image choice and quadrants rotate with k). */
export function plantedScenes(images: DemoImage[], n: number): PlantedScene[] {
  const preferred = images.filter((s) => s.category !== 'object').map((s) => s.file);
  const objects = images.filter((s) => s.category === 'object').map((s) => s.file);
  const pick = (list: string[], i: number) => list[(i * 7 + 3) % list.length];
  return Array.from({ length: n }, (_, k) => {
    const [hostList, partList] = k % 2 === 0 ? [objects, preferred] : [preferred, objects];
    const j = Math.floor(k / 2);
    // driver quadrants: all but one; reference: P and Q swap to quadrants they did not hold in the driver
    const free = k % 4;
    const used = [0, 1, 2, 3].filter((q) => q !== free);
    const [qp, qq, qr] = [used[j % 3], used[(j + 1) % 3], used[(j + 2) % 3]];
    return {
      hosts: [pick(hostList, 2 * j), pick(hostList, 2 * j + 1)],
      parts: { P: pick(partList, 3 * j), Q: pick(partList, 3 * j + 1), R: pick(partList, 3 * j + 2) },
      driverBoxes: { P: box(qp), Q: box(qq), R: box(qr) },
      referenceBoxes: { P: box(free), Q: box(qp) },
    };
  });
}

/** A part: the central PART x PART of the image drawn at 96 x 96 on grey, as PNG. */
async function partPng(dir: string, file: string): Promise<Buffer> {
  const off = (96 - PART) / 2;
  const drawn = await sharp(path.join(dir, file)).flatten({ background: GREY }).resize(96, 96, { fit: 'contain', background: GREY }).png().toBuffer();
  return sharp(drawn).extract({ left: off, top: off, width: PART, height: PART }).png().toBuffer();
}

/** A 224 x 224 image (1 x H x W x 3 in [0, 1]): a host image letterboxed on grey (or plain grey) with parts pasted. */
export async function compose(dir: string, host: string | null, parts: PartPlacement[]): Promise<tf.Tensor4D> {
  const base = host
    ? sharp(await sharp(path.join(dir, host)).flatten({ background: GREY }).resize(SIZE, SIZE, { fit: 'contain', background: GREY }).png().toBuffer())
    : sharp({ create: { width: SIZE, height: SIZE, channels: 3, background: GREY } });
  const layers = await Promise.all(parts.map(async (p) => ({ input: await partPng(dir, p.file), left: p.box.left, top: p.box.top })));
  const { data } = await base.composite(layers).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return tf.tensor4d(Float32Array.from(data, (v) => v / 255), [1, SIZE, SIZE, 3]);
}

/** Driver and reference images of a scene. */
export async function sceneImages(dir: string, s: PlantedScene): Promise<{ xO: tf.Tensor4D; xRef: tf.Tensor4D }> {
  const xO = await compose(dir, s.hosts[0], [
    { file: s.parts.P, box: s.driverBoxes.P },
    { file: s.parts.Q, box: s.driverBoxes.Q },
    { file: s.parts.R, box: s.driverBoxes.R },
  ]);
  const xRef = await compose(dir, s.hosts[1], [
    { file: s.parts.P, box: s.referenceBoxes.P },
    { file: s.parts.Q, box: s.referenceBoxes.Q },
  ]);
  return { xO, xRef };
}

/** A copy of the image (1 x H x W x 3) with the box set to the blank screen's grey. */
export function greyBox(x: tf.Tensor4D, b: Box): tf.Tensor4D {
  const v = Float32Array.from(x.dataSync());
  const g = [GREY.r / 255, GREY.g / 255, GREY.b / 255];
  for (let y = b.top; y < b.top + b.size; y++) for (let i = y * SIZE + b.left; i < y * SIZE + b.left + b.size; i++) v.set(g, i * 3);
  return tf.tensor4d(v, x.shape as [number, number, number, number]);
}

type Feat = Float32Array;
/**
 * What each thing in a scene's two images adds to the features in its context: phi(image) minus phi(image
 * with that part set to grey), and for the host, phi(image) minus phi(the parts alone on grey).
 */
async function contributions(phi: FeatureFn, dir: string, s: PlantedScene): Promise<{ O: Record<'P' | 'Q' | 'R' | 'host', Feat>; Ref: Record<'P' | 'Q' | 'host', Feat> }> {
  const read = (x: tf.Tensor4D) => {
    const f = tf.tidy(() => phi(x).dataSync() as Float32Array);
    x.dispose();
    return f;
  };
  const minus = (a: Feat, b: Feat) => Float32Array.from(a, (x, d) => x - b[d]);
  const { xO, xRef } = await sceneImages(dir, s);
  const [fO, fRef] = [tf.tidy(() => phi(xO).dataSync() as Float32Array), tf.tidy(() => phi(xRef).dataSync() as Float32Array)];
  const drop = (x: tf.Tensor4D, f: Feat, b: Box) => minus(f, read(greyBox(x, b)));
  const O = {
    P: drop(xO, fO, s.driverBoxes.P),
    Q: drop(xO, fO, s.driverBoxes.Q),
    R: drop(xO, fO, s.driverBoxes.R),
    host: minus(fO, read(await compose(dir, null, (['P', 'Q', 'R'] as const).map((k) => ({ file: s.parts[k], box: s.driverBoxes[k] }))))),
  };
  const Ref = {
    P: drop(xRef, fRef, s.referenceBoxes.P),
    Q: drop(xRef, fRef, s.referenceBoxes.Q),
    host: minus(fRef, read(await compose(dir, null, (['P', 'Q'] as const).map((k) => ({ file: s.parts[k], box: s.referenceBoxes[k] }))))),
  };
  tf.dispose([xO, xRef]);
  return { O, Ref };
}

/**
 * Model neurons of a scene with known readouts: weight 1 on the `k` latent dimensions where the part adds
 * most in context (phi drops when the part is set to grey, in every image of the scene that holds it)
 * beyond what any other part or the host image adds there. `nP` and `nQ` are planted on P and on Q (both in
 * both images); `nPR` on P and R (k / 2 each), for the shared-versus-single measure (R is only in the
 * driver). Chosen in context because a part's features alone on grey are not what it adds among other
 * things: chosen alone (before), the response of 8 of 60 neuron-image cases on the first 30 scenes fell
 * more when another part was removed than when the neuron's own part was, so no map could point there.
 */
export async function plantedNeurons(phi: FeatureFn, dir: string, s: PlantedScene, k = 20): Promise<{ nP: Float32Array; nQ: Float32Array; nPR: Float32Array }> {
  const { O, Ref } = await contributions(phi, dir, s);
  const dim = O.P.length;
  const top = (own: Feat[], others: Feat[], n: number) => {
    const margin = Array.from({ length: dim }, (_, d) => Math.min(...own.map((o) => o[d])) - Math.max(...others.map((o) => o[d])));
    return Array.from(margin.keys()).sort((a, b) => margin[b] - margin[a]).slice(0, n);
  };
  const neuron = (dims: number[]) => {
    const w = new Float32Array(dim);
    for (const d of dims) w[d] = 1;
    return w;
  };
  const pDims = (n: number) => top([O.P, Ref.P], [O.Q, O.R, O.host, Ref.Q, Ref.host], n);
  return {
    nP: neuron(pDims(k)),
    nQ: neuron(top([O.Q, Ref.Q], [O.P, O.R, O.host, Ref.P, Ref.host], k)),
    nPR: neuron([...pDims(k / 2), ...top([O.R], [O.P, O.Q, O.host], k / 2)]),
  };
}

/**
 * Is a planted neuron fair on an image: does its response w . phi fall more when its own part is set to grey
 * than when any other part is (and by at least a tenth)? Where it does not, no map of it can point.
 */
export function plantedFair(phi: FeatureFn, x: tf.Tensor4D, w: Float32Array, own: Box, others: Box[]): boolean {
  const resp = (img: tf.Tensor4D) => tf.tidy(() => tf.sum(tf.mul(phi(img), tf.tensor1d(w))).dataSync()[0]);
  const full = resp(x);
  const fall = (b: Box) => {
    const g = greyBox(x, b);
    const r = full - resp(g);
    g.dispose();
    return r;
  };
  const mine = fall(own);
  return mine > 0.1 * full && others.every((b) => fall(b) < mine);
}

/** The regions of a scene's driver image: its three parts and the host (everything outside the parts). */
export type DriverRegion = 'P' | 'Q' | 'R' | 'host';

/**
 * The planted ground truth at the resolution of the scene's regions: phi of the driver, and phi of the driver
 * with each region removed (a part set to grey; the host removed, i.e. the parts alone on grey).
 */
export async function driverRegionFeatures(phi: FeatureFn, dir: string, s: PlantedScene, xO: tf.Tensor4D): Promise<{ full: Float32Array; without: Record<DriverRegion, Float32Array> }> {
  const read = (x: tf.Tensor4D, dispose: boolean) => {
    const f = tf.tidy(() => phi(x).dataSync() as Float32Array);
    if (dispose) x.dispose();
    return f;
  };
  return {
    full: read(xO, false),
    without: {
      P: read(greyBox(xO, s.driverBoxes.P), true),
      Q: read(greyBox(xO, s.driverBoxes.Q), true),
      R: read(greyBox(xO, s.driverBoxes.R), true),
      host: read(await compose(dir, null, (['P', 'Q', 'R'] as const).map((k) => ({ file: s.parts[k], box: s.driverBoxes[k] }))), true),
    },
  };
}

/**
 * The ground-truth map of a shared vector v on a scene's driver: each region's pixels take the fall of
 * <v, phi> when that region is removed, per part area (the host's fall spread over its larger area), positive
 * part. What a map that is right at the resolution of the planted regions shows; the rank correlations of
 * two readouts' ground-truth maps are what a perfect map would score on the readout-randomisation measures.
 */
export function regionOcclusionMap(regions: { full: ArrayLike<number>; without: Record<DriverRegion, ArrayLike<number>> }, boxes: PlantedScene['driverBoxes'], v: ArrayLike<number>): Float32Array {
  const dot = (f: ArrayLike<number>) => {
    let s = 0;
    for (let d = 0; d < v.length; d++) s += f[d] * v[d];
    return s;
  };
  const full = dot(regions.full);
  const parts = ['P', 'Q', 'R'] as const;
  const hostArea = SIZE * SIZE - parts.length * PART * PART;
  const m = new Float32Array(SIZE * SIZE).fill(Math.max(0, ((full - dot(regions.without.host)) * PART * PART) / hostArea));
  for (const k of parts) {
    const b = boxes[k];
    const fall = Math.max(0, full - dot(regions.without[k]));
    for (let y = b.top; y < b.top + b.size; y++) m.fill(fall, y * SIZE + b.left, y * SIZE + b.left + b.size);
  }
  return m;
}

const inBox = (i: number, b: Box) => {
  const x = i % SIZE;
  const y = Math.floor(i / SIZE);
  return x >= b.left && x < b.left + b.size && y >= b.top && y < b.top + b.size;
};

/**
 * Pointing game: is the map's maximum inside the box grown by `tolerancePx` on each side? The game as
 * Zhang et al. (ECCV 2016) define it allows 15 px, for maps coarser than the image: a 14 x 14 layer map
 * resized to 224 px is flat over the outer half cell (8 px), so a part 12 px from the border whose cell is
 * the peak has its first maximal pixel outside the box.
 */
export function pointsInto(m: ArrayLike<number>, b: Box, tolerancePx = 0): boolean {
  let best = 0;
  for (let i = 1; i < m.length; i++) if (m[i] > m[best]) best = i;
  return inBox(best, { left: b.left - tolerancePx, top: b.top - tolerancePx, size: b.size + 2 * tolerancePx });
}

/** The pointing game's tolerance (Zhang et al. 2016), in pixels of the 224 px image. */
export const POINTING_TOLERANCE_PX = 15;

/** Mean of the map inside the box. */
export function meanIn(m: ArrayLike<number>, b: Box): number {
  let s = 0;
  for (let y = b.top; y < b.top + b.size; y++) for (let x = b.left; x < b.left + b.size; x++) s += m[y * SIZE + x];
  return s / (b.size * b.size);
}

/**
 * Two neurons P and Q on one scene, each with its map of the driver and of the reference: how many of the four
 * maps point into their own neuron's part (pointing game, `POINTING_TOLERANCE_PX`) and how many have more mass
 * per area there than on the other neuron's part; `ratios` the four own/other ratios.
 */
export function ownPartScores(maps: Record<'P' | 'Q', ArrayLike<number>[]>, s: Pick<PlantedScene, 'driverBoxes' | 'referenceBoxes'>): { hits: number; own: number; ratios: number[] } {
  let hits = 0;
  let own = 0;
  const ratios: number[] = [];
  for (const [mine, other] of [['P', 'Q'], ['Q', 'P']] as const)
    for (const [k, boxes] of [s.driverBoxes, s.referenceBoxes].entries()) {
      if (pointsInto(maps[mine][k], boxes[mine], POINTING_TOLERANCE_PX)) hits++;
      const ratio = meanIn(maps[mine][k], boxes[mine]) / Math.max(1e-12, meanIn(maps[mine][k], boxes[other]));
      if (ratio > 1) own++;
      ratios.push(ratio);
    }
  return { hits, own, ratios };
}

/** Map mass per area inside the box over mass per area outside it. */
export function boxMassRatio(m: ArrayLike<number>, b: Box): number {
  let total = 0;
  for (let i = 0; i < m.length; i++) total += m[i];
  const inside = meanIn(m, b);
  const outside = (total - inside * b.size * b.size) / (m.length - b.size * b.size);
  return outside > 0 ? inside / outside : inside > 0 ? Infinity : 0;
}

/** Ranks (1-based) with ties given their average rank. */
export function ranks(a: ArrayLike<number>): Float64Array {
  const order = Array.from({ length: a.length }, (_, i) => i).sort((i, j) => a[i] - a[j]);
  const r = new Float64Array(a.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && a[order[j + 1]] === a[order[i]]) j++;
    for (let k = i; k <= j; k++) r[order[k]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return r;
}

/**
 * Spearman rank correlation of two maps (0 when either is constant). With `nonZeroOnly`, over the pixels
 * where either map is non-zero: pixels that both positive-part maps clip to 0 otherwise count as agreement.
 */
export function rankCorrelation(a: ArrayLike<number>, b: ArrayLike<number>, nonZeroOnly = false): number {
  if (nonZeroOnly) {
    const keep = Array.from({ length: a.length }, (_, i) => i).filter((i) => a[i] !== 0 || b[i] !== 0);
    return rankCorrelation(keep.map((i) => a[i]), keep.map((i) => b[i]));
  }
  const [ra, rb] = [ranks(a), ranks(b)];
  const n = ra.length;
  const mean = (n + 1) / 2;
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < n; i++) {
    ab += (ra[i] - mean) * (rb[i] - mean);
    aa += (ra[i] - mean) ** 2;
    bb += (rb[i] - mean) ** 2;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}

/**
 * The corner artefact on a grey background: the mean of the bottom-right `corner` x `corner` pixels over
 * the mean of the background (everything outside the boxes, each grown by 16 px).
 */
export function cornerOverBackground(m: ArrayLike<number>, boxes: Box[], corner = 16): number {
  let c = 0;
  let bg = 0;
  let n = 0;
  const grown = boxes.map((b) => ({ left: b.left - 16, top: b.top - 16, size: b.size + 32 }));
  for (let i = 0; i < m.length; i++) {
    const x = i % SIZE;
    const y = Math.floor(i / SIZE);
    if (x >= SIZE - corner && y >= SIZE - corner) c += m[i];
    if (!grown.some((b) => inBox(i, b))) {
      bg += m[i];
      n++;
    }
  }
  const cornerMean = c / (corner * corner);
  const bgMean = bg / n;
  return bgMean > 0 ? cornerMean / bgMean : cornerMean > 0 ? Infinity : 1;
}
