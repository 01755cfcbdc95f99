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

/**
 * Model neurons of a scene with known readouts: weight 1 on the `k` latent dimensions where a part alone
 * (centred on grey) exceeds most what every other image of the scene gives alone (hosts, other parts,
 * blank). `nP` and `nQ` are planted on P and on Q; `nPR` on P and R (k / 2 each), for the shared-versus-single
 * measure (R is only in the driver).
 */
export async function plantedNeurons(phi: FeatureFn, dir: string, s: PlantedScene, k = 20): Promise<{ nP: Float32Array; nQ: Float32Array; nPR: Float32Array }> {
  const centre: Box = { left: (SIZE - PART) / 2, top: (SIZE - PART) / 2, size: PART };
  const feat = async (host: string | null, part?: string) => {
    const x = await compose(dir, host, part ? [{ file: part, box: centre }] : []);
    const f = tf.tidy(() => phi(x).dataSync() as Float32Array);
    x.dispose();
    return f;
  };
  const f = {
    P: await feat(null, s.parts.P),
    Q: await feat(null, s.parts.Q),
    R: await feat(null, s.parts.R),
    H1: await feat(s.hosts[0]),
    H2: await feat(s.hosts[1]),
    blank: await feat(null),
  };
  const top = (own: Float32Array, others: Float32Array[], n: number) => {
    const margin = Array.from(own, (x, d) => x - Math.max(...others.map((o) => o[d])));
    return Array.from(margin.keys()).sort((a, b) => margin[b] - margin[a]).slice(0, n);
  };
  const neuron = (dims: number[]) => {
    const w = new Float32Array(f.P.length);
    for (const d of dims) w[d] = 1;
    return w;
  };
  const rest = [f.H1, f.H2, f.blank];
  return {
    nP: neuron(top(f.P, [f.Q, f.R, ...rest], k)),
    nQ: neuron(top(f.Q, [f.P, f.R, ...rest], k)),
    nPR: neuron([...top(f.P, [f.Q, f.R, ...rest], k / 2), ...top(f.R, [f.P, f.Q, ...rest], k / 2)]),
  };
}

const inBox = (i: number, b: Box) => {
  const x = i % SIZE;
  const y = Math.floor(i / SIZE);
  return x >= b.left && x < b.left + b.size && y >= b.top && y < b.top + b.size;
};

/** Pointing game: is the map's maximum inside the box? */
export function pointsInto(m: ArrayLike<number>, b: Box): boolean {
  let best = 0;
  for (let i = 1; i < m.length; i++) if (m[i] > m[best]) best = i;
  return inBox(best, b);
}

/** Mean of the map inside the box. */
export function meanIn(m: ArrayLike<number>, b: Box): number {
  let s = 0;
  for (let y = b.top; y < b.top + b.size; y++) for (let x = b.left; x < b.left + b.size; x++) s += m[y * SIZE + x];
  return s / (b.size * b.size);
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

/** Spearman rank correlation of two maps (0 when either is constant). */
export function rankCorrelation(a: ArrayLike<number>, b: ArrayLike<number>): number {
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
