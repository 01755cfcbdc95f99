/**
 * Parallel backpropagation for shared-feature maps (METHOD.md step 5; Lappe et al., NeurIPS 2024, in the
 * formulation this product commits to, since the paper's exact equations were not available to us):
 *   v = w (.) phi(x_o) (.) phi(x_ref)        dimensions active in both images and weighted by the neuron
 *   S_o = J_phi(x_o)^T v,  S_ref = J_phi(x_ref)^T v
 * Each map is ONE vector-Jacobian product: the gradient of the scalar <stop_gradient(v), phi(x)>.
 *
 * Methods (`MapOptions.method`, chosen on the planted benchmark `bench/maps-quality.ts`, docs/compute.md):
 * - 'gradient': |S| summed over colour channels (the display before issue 15; fails the sanity checks of
 *   Adebayo et al. 2018: the map hardly depends on the neuron);
 * - 'signed': S summed over colour channels, positive part; 'gradientInput': S (.) (x - grey), positive part;
 * - 'integrated': integrated gradients from a grey baseline (positive part); 'smoothgrad': |mean S| over
 *   noisy copies of the image (Smilkov et al. 2017);
 * - 'layer': the same vector-Jacobian product taken at a mid-level convolutional layer A (H' x W' x C),
 *   sum over channels of (A - A_blank) (.) dA, positive part, resized to the image (gradient x input at the
 *   layer against the blank grey screen; Grad-CAM's weighting, Selvaraju et al. 2017, with the shared
 *   vector v as the target). With `integratedSteps` n > 0, dA is averaged over n points on the straight path
 *   from the blank screen's activation to A (integrated gradients at the layer, Sundararajan et al. 2017);
 * - 'layerOcclusion': the fall of <v, phi> when squares of the layer's cells take the blank screen's
 *   activation (occlusion, Zeiler & Fergus 2014, at the layer): no gradient, one batched pass of the upper
 *   layers per square (`occlusionRender` 'centres': the squares' falls interpolated between their centres,
 *   so a stride of whole squares gives no blocks). The fall weighs each feature the square carries by v: by the neuron's weight and by how
 *   both images deviate from the set's mean (with `positiveOnly` false, negative where they deviate in
 *   opposite directions, so content the two images do not share counts against a region).
 * Features (`MapOptions.features`): 'raw' as above; 'centred' v = w (.) (phi_o - mu) (.) (phi_ref - mu) with
 * mu the stimulus set's mean feature; 'standardised' the same over the set's SD per dimension (w in the
 * units of standardised features); 'prediction' v = w: the map is how much the neuron's PREDICTED response
 * w . phi falls when a region is removed (the reference enters nowhere; with a fitted readout the per-dimension
 * products above weigh dimensions that the fit's correlated weights only cancel in the sum, so they are noisy
 * where the prediction is not: bench/maps-quality.ts's `Fitted` rows); 'predictionShared' v = w times the
 * OTHER image's predicted response above the set's mean, max(0, w . (phi_other - mu)): the fall of the product
 * of the two images' centred predictions, i.e. the 'prediction' map scaled by what the other image shares of
 * the neuron's response (all zero when the other image's prediction is at or below the set's mean).
 * Display: Gaussian-smoothed, both maps normalised by one robust maximum of the pair (99.5th percentile) so
 * they share one colour scale.
 */
import type { GraphModel } from '@tensorflow/tfjs-converter';
import { inputGradientOnly, tf } from './backend.ts';
import { weightedCosine } from './drivers.ts';
import { GREY, loadImage } from './image-input.ts';
import type { FeatureModelSpec } from './feature-model.ts';

export type MapMethod = 'gradient' | 'signed' | 'gradientInput' | 'integrated' | 'smoothgrad' | 'layer' | 'layerOcclusion';
export type MapFeatures = 'raw' | 'centred' | 'standardised' | 'prediction' | 'predictionShared';

export interface MapOptions {
  positiveOnly: boolean;
  /** Steps of integrated gradients ('integrated'; with 'gradient', n > 0 integrates |S| as before). */
  integratedSteps: number;
  /** Gaussian smoothing of the display maps, in pixels (0: none). */
  smoothSigmaPx: number;
  /** How the pixel map is computed from v (default 'gradient', the display before issue 15). */
  method?: MapMethod;
  features?: MapFeatures;
  /** Graph node of the layer for method 'layer' (4-D, H' x W' x C). */
  layer?: string;
  /** Noisy copies for 'smoothgrad', and their noise SD in image units ([0, 1]). */
  smoothSamples?: number;
  smoothNoise?: number;
  /** Side of the square of layer cells set to the blank screen's activation at once ('layerOcclusion'). */
  occlusionCells?: number;
  /** Step between those squares, in cells ('layerOcclusion'; the last square always reaches the border). */
  occlusionStride?: number;
  /**
   * How the squares' falls become a map ('layerOcclusion'): 'cells' (default), each cell the mean fall of the
   * squares covering it, resized bilinearly; 'centres', each square's fall placed at the square's centre and
   * interpolated bilinearly between the centres over the image (held constant beyond the outer centres): no
   * blocks where squares do not overlap, the same falls, no finer detail.
   */
  occlusionRender?: 'cells' | 'centres';
  /** The stimulus set's mean and SD of each feature (for 'centred' and 'standardised'). */
  featureMean?: ArrayLike<number>;
  featureSd?: ArrayLike<number>;
}

/** The pixel-gradient display used before issue 15 (method 'gradient'); the server's default is config compute.maps. */
export const gradientMapOptions: MapOptions = { positiveOnly: true, integratedSteps: 0, smoothSigmaPx: 2, method: 'gradient' };

/** phi: images (1 x H x W x 3 in [0, 1]) to feature vectors (1 x D); `split` cuts the network at a layer. */
export type FeatureFn = ((x: tf.Tensor4D) => tf.Tensor2D) & {
  split?: (layer: string) => { lower: (x: tf.Tensor4D) => tf.Tensor4D; upper: (a: tf.Tensor4D) => tf.Tensor2D };
};

const graphFeatureFns = new WeakMap<GraphModel, Map<string, FeatureFn>>();

/**
 * The feature function of a graph model, splittable at any of its 4-D nodes (fed back in by name). One per
 * (model, layer), so what is kept per feature function (the blank screen's activations) is kept once.
 */
export function graphFeatureFn(model: GraphModel, spec: FeatureModelSpec): FeatureFn {
  const byLayer = graphFeatureFns.get(model) ?? new Map<string, FeatureFn>();
  graphFeatureFns.set(model, byLayer);
  const known = byLayer.get(spec.layer);
  if (known) return known;
  const pool = (t: tf.Tensor) => (t.rank === 4 ? tf.mean(t, [1, 2]) : t) as tf.Tensor2D;
  const phi: FeatureFn = (x) => tf.tidy(() => pool(model.execute(x, spec.layer) as tf.Tensor));
  phi.split = (layer) => ({
    lower: (x) => model.execute(x, layer) as tf.Tensor4D,
    upper: (a) => tf.tidy(() => pool(model.execute({ [layer]: a }, spec.layer) as tf.Tensor)),
  });
  byLayer.set(spec.layer, phi);
  return phi;
}

/** Feature moments of a set of image files, each through `phi` in turn: the mean and SD centred and standardised maps read. */
export async function imageSetMoments(phi: FeatureFn, files: string[]): Promise<{ mean: Float32Array; sd: Float32Array }> {
  const rows: number[] = [];
  for (const file of files) {
    const x = tf.tensor4d(await loadImage(file, 224), [1, 224, 224, 3]);
    rows.push(...tf.tidy(() => phi(x).dataSync()));
    x.dispose();
  }
  return featureMoments(rows, rows.length / files.length);
}

/** Mean and SD per feature dimension of a set of feature vectors (n x dim, row-major). */
export function featureMoments(features: ArrayLike<number>, dim: number): { mean: Float32Array; sd: Float32Array } {
  const n = Math.floor(features.length / dim);
  const mean = new Float32Array(dim);
  const sd = new Float32Array(dim);
  for (let i = 0; i < n; i++) for (let d = 0; d < dim; d++) mean[d] += features[i * dim + d] / n;
  for (let i = 0; i < n; i++) for (let d = 0; d < dim; d++) sd[d] += (features[i * dim + d] - mean[d]) ** 2 / Math.max(1, n - 1);
  for (let d = 0; d < dim; d++) sd[d] = Math.sqrt(sd[d]);
  return { mean, sd };
}

export interface SharedFeatureMaps {
  /** Display maps, H x W, in [0, 1] on a common scale. */
  driverMap: Float32Array;
  referenceMap: Float32Array;
  size: number;
  /** Raw attribution totals before normalisation (sum of |S| over pixels). */
  driverMass: number;
  referenceMass: number;
  /** Shared-feature similarity: sum of v over cosine normaliser, i.e. cos(w (.) phi_o, w (.) phi_ref). */
  similarity: number;
}

/**
 * The vector v = w (.) phi(x_o) (.) phi(x_ref), optionally clipped at zero. With `moments`, the features
 * are centred on the set's mean (and divided by its SD when `sd` is given; dimensions with SD 0 drop out).
 */
export function sharedVector(
  w: ArrayLike<number>,
  phiO: ArrayLike<number>,
  phiRef: ArrayLike<number>,
  positiveOnly: boolean,
  moments?: { mean: ArrayLike<number>; sd?: ArrayLike<number> },
): Float32Array {
  return Float32Array.from({ length: w.length }, (_, d) => {
    const mu = moments?.mean[d] ?? 0;
    const sd = moments?.sd ? moments.sd[d] : 1;
    const v = sd > 0 ? (w[d] * (phiO[d] - mu) * (phiRef[d] - mu)) / sd : 0;
    return positiveOnly ? Math.max(0, v) : v;
  });
}

/** Whether maps with these features need the stimulus set's feature moments (mean, and SD when standardised). */
export const usesFeatureMoments = (features: MapFeatures = 'raw'): boolean => features !== 'raw' && features !== 'prediction';

/** The feature moments `opts.features` asks for; an error when the set's moments are missing. */
function momentsFor(opts: MapOptions): { mean: ArrayLike<number>; sd?: ArrayLike<number> } | undefined {
  const f = opts.features ?? 'raw';
  if (!usesFeatureMoments(f)) return undefined;
  if (!opts.featureMean || (f === 'standardised' && !opts.featureSd)) throw new Error(`map features '${f}' need the stimulus set's feature mean${f === 'standardised' ? ' and SD' : ''}`);
  return { mean: opts.featureMean, sd: f === 'standardised' ? opts.featureSd : undefined };
}

/**
 * The vector v whose <v, phi> the map of `side` explains, by `opts.features`: the shared vector (sharedVector:
 * 'raw', 'centred', 'standardised', clipped when `positiveOnly`), the readout itself ('prediction'), or the
 * readout times the other image's centred prediction, max(0, w . (phi_other - mu)) ('predictionShared').
 */
export function mapVector(w: ArrayLike<number>, phiO: ArrayLike<number>, phiRef: ArrayLike<number>, opts: MapOptions, side: 'driver' | 'reference'): Float32Array {
  const f = opts.features ?? 'raw';
  if (f === 'prediction') return Float32Array.from(w);
  if (f === 'predictionShared') {
    const mu = momentsFor(opts)!.mean;
    const other = side === 'driver' ? phiRef : phiO;
    let s = 0;
    for (let d = 0; d < w.length; d++) s += w[d] * (other[d] - mu[d]);
    return Float32Array.from(w, (x) => x * Math.max(0, s));
  }
  return sharedVector(w, phiO, phiRef, opts.positiveOnly, momentsFor(opts));
}

/** Gradient of <v, phi(x)> with respect to the pixels (plain or integrated), 1 x H x W x 3. */
export function attribution(phi: FeatureFn, x: tf.Tensor4D, v: tf.Tensor1D, integratedSteps: number): tf.Tensor4D {
  const g = tf.grad((inp: tf.Tensor) => tf.sum(tf.mul(phi(inp as tf.Tensor4D), v)));
  return inputGradientOnly(() => {
    if (integratedSteps <= 0) return g(x) as tf.Tensor4D;
    return tf.tidy(() => {
      const baseline = tf.fill(x.shape, BLANK);
      let sum: tf.Tensor4D = tf.zerosLike(x);
      for (let k = 1; k <= integratedSteps; k++) {
        const xk = tf.add(baseline, tf.mul(tf.sub(x, baseline), k / integratedSteps));
        const next = tf.add(sum, g(xk));
        sum.dispose();
        sum = next as tf.Tensor4D;
      }
      return tf.mul(tf.div(sum, integratedSteps), tf.sub(x, baseline)) as tf.Tensor4D;
    });
  });
}

/** Mean gradient of <v, phi> over `n` copies of x with Gaussian noise of SD `noise` (SmoothGrad), 1 x H x W x 3. */
function smoothGradient(phi: FeatureFn, x: tf.Tensor4D, v: tf.Tensor1D, n: number, noise: number): tf.Tensor4D {
  const g = tf.grad((inp: tf.Tensor) => tf.sum(tf.mul(phi(inp as tf.Tensor4D), v)));
  return inputGradientOnly(() =>
    tf.tidy(() => {
      let sum: tf.Tensor4D = tf.zerosLike(x);
      for (let k = 0; k < n; k++) {
        // a fixed seed per copy: the same image and v give the same map
        const next = tf.add(sum, g(tf.add(x, tf.randomNormal(x.shape, 0, noise, 'float32', 1000 + k))));
        sum.dispose();
        sum = next as tf.Tensor4D;
      }
      return tf.div(sum, n) as tf.Tensor4D;
    }),
  );
}

/** The blank screen: the mid-grey images are flattened and letterboxed on (image-input.ts), in [0, 1]. */
export const BLANK = GREY.r / 255;

/** The layer's activation to the blank screen, per feature function, layer and shape (kept; small). */
const blankActivations = new WeakMap<FeatureFn, Map<string, tf.Tensor4D>>();
export function blankActivation(phi: FeatureFn, layer: string, lower: (x: tf.Tensor4D) => tf.Tensor4D, shape: [number, number, number, number]): tf.Tensor4D {
  const byLayer = blankActivations.get(phi) ?? new Map<string, tf.Tensor4D>();
  blankActivations.set(phi, byLayer);
  const key = `${layer}|${shape.join('x')}`;
  let a0 = byLayer.get(key);
  if (!a0) {
    a0 = tf.keep(tf.tidy(() => lower(tf.fill(shape, BLANK) as tf.Tensor4D)));
    byLayer.set(key, a0);
  }
  return a0;
}

/**
 * The activation's change from the blank screen times the gradient of <v, phi> at the layer `layer`
 * (1 x H' x W' x C): sum over channels of (A - A_blank) (.) dA, positive part, resized to the image
 * (1 x H x W x 1) with half-pixel centres (each cell covers its own patch; corner alignment would shift
 * the map by up to half a cell towards the bottom right). Measured against the blank screen because the
 * network's zero padding makes border cells respond to a plain grey canvas (most at the bottom right,
 * where TF's 'same' padding of its stride-2 layers adds the extra row and column): those responses are
 * the same with and without a stimulus, so they cancel, and a grey background carries no map.
 */
function layerMap(phi: FeatureFn, x: tf.Tensor4D, v: tf.Tensor1D, layer: string, steps: number): tf.Tensor4D {
  if (!phi.split) throw new Error(`map method 'layer' needs a feature function that can be split at a layer`);
  const { lower, upper } = phi.split(layer);
  const a0 = blankActivation(phi, layer, lower, x.shape);
  return inputGradientOnly(() =>
    tf.tidy(() => {
      const a = lower(x);
      if (a.rank !== 4) throw new Error(`map layer ${layer} is not 4-D (${a.shape.join(' x ')})`);
      const g = tf.grad((inp: tf.Tensor) => tf.sum(tf.mul(upper(inp as tf.Tensor4D), v)));
      const change = tf.sub(a, a0);
      let da = steps > 0 ? tf.zerosLike(a) : g(a);
      for (let k = 1; k <= steps; k++) da = tf.add(da, tf.div(g(tf.add(a0, tf.mul(change, k / steps))), steps));
      const m = tf.relu(tf.sum(tf.mul(change, da), 3, true)) as tf.Tensor4D;
      return tf.image.resizeBilinear(m, [x.shape[1], x.shape[2]], false, true);
    }),
  );
}

/**
 * Occlusion at the layer (Zeiler & Fergus 2014, at a layer instead of the pixels): for each square of
 * `cells` x `cells` cells of the layer's grid, how much <v, phi> falls when those cells take the blank
 * screen's activation; a cell's value is the mean fall over the squares that cover it, positive part,
 * resized to the image. The upper layers run once per square, batched (no gradient).
 */
function layerOcclusionMap(phi: FeatureFn, x: tf.Tensor4D, v: tf.Tensor1D, layer: string, cells: number, stride: number, render: 'cells' | 'centres'): tf.Tensor4D {
  if (!phi.split) throw new Error(`map method 'layerOcclusion' needs a feature function that can be split at a layer`);
  const { lower, upper } = phi.split(layer);
  const a0 = blankActivation(phi, layer, lower, x.shape);
  return tf.tidy(() => {
    const a = lower(x);
    if (a.rank !== 4) throw new Error(`map layer ${layer} is not 4-D (${a.shape.join(' x ')})`);
    const [, h, w, c] = a.shape;
    const full = tf.sum(tf.mul(upper(a), v)).dataSync()[0];
    const av = a.dataSync();
    const bv = a0.dataSync();
    const squares: [number, number][] = [];
    const starts = (n: number) => [...new Set([...Array.from({ length: Math.max(1, Math.floor((n - cells) / stride) + 1) }, (_, k) => k * stride), Math.max(0, n - cells)])];
    for (const i of starts(h)) for (const j of starts(w)) squares.push([i, j]);
    const falls = new Float32Array(squares.length);
    const BATCH = 24;
    for (let s0 = 0; s0 < squares.length; s0 += BATCH) {
      const chunk = squares.slice(s0, s0 + BATCH);
      const batch = new Float32Array(chunk.length * av.length);
      chunk.forEach(([i, j], b) => {
        batch.set(av, b * av.length);
        for (let y = i; y < i + cells; y++) for (let xx = j; xx < j + cells; xx++) {
          const o = (y * w + xx) * c;
          batch.set(bv.subarray(o, o + c), b * av.length + o);
        }
      });
      const out = tf.tidy(() => tf.sum(tf.mul(upper(tf.tensor4d(batch, [chunk.length, h, w, c])), v), 1).dataSync());
      out.forEach((r, b) => (falls[s0 + b] = full - r));
    }
    if (render === 'centres') return centresMap(falls, starts(h), starts(w), cells, [h, w], [x.shape[1], x.shape[2]]);
    const m = new Float32Array(h * w);
    const n = new Float32Array(h * w);
    squares.forEach(([i, j], k) => {
      for (let y = i; y < i + cells; y++) for (let xx = j; xx < j + cells; xx++) {
        m[y * w + xx] += falls[k];
        n[y * w + xx] += 1;
      }
    });
    const cellMap = tf.relu(tf.tensor4d(m.map((s, i) => s / n[i]), [1, h, w, 1])) as tf.Tensor4D;
    return tf.image.resizeBilinear(cellMap, [x.shape[1], x.shape[2]], false, true);
  });
}

/**
 * The 'centres' rendering of layer occlusion: square (a, b)'s fall sits at its centre (rowStarts[a] + cells / 2,
 * colStarts[b] + cells / 2, in cell units from the grid's top-left edge); each pixel (its centre, in cell units)
 * takes the bilinear interpolation between the four centres around it, the nearest outer centres beyond them;
 * positive part. 1 x H x W x 1.
 */
function centresMap(falls: Float32Array, rowStarts: number[], colStarts: number[], cells: number, grid: [number, number], size: [number, number]): tf.Tensor4D {
  /** Per pixel along one axis: the lower centre's index and the upper centre's weight. */
  const axis = (starts: number[], n: number, pixels: number) => {
    const c = starts.map((s) => s + cells / 2);
    return Array.from({ length: pixels }, (_, p) => {
      const pos = Math.min(c[c.length - 1], Math.max(c[0], ((p + 0.5) * n) / pixels));
      let k = 0;
      while (k < c.length - 2 && pos > c[k + 1]) k++;
      const t = c.length > 1 ? (pos - c[k]) / (c[k + 1] - c[k]) : 0;
      return { k, t };
    });
  };
  const rows = axis(rowStarts, grid[0], size[0]);
  const cols = axis(colStarts, grid[1], size[1]);
  const nc = colStarts.length;
  const at = (a: number, b: number) => falls[Math.min(a, rowStarts.length - 1) * nc + Math.min(b, nc - 1)];
  const m = new Float32Array(size[0] * size[1]);
  rows.forEach(({ k: a, t: ty }, py) =>
    cols.forEach(({ k: b, t: tx }, px) => {
      const top = at(a, b) * (1 - tx) + at(a, b + 1) * tx;
      const bottom = at(a + 1, b) * (1 - tx) + at(a + 1, b + 1) * tx;
      m[py * size[1] + px] = Math.max(0, top * (1 - ty) + bottom * ty);
    }),
  );
  return tf.tensor4d(m, [1, size[0], size[1], 1]);
}

/** The undisplayed map of one image for the shared vector v (1 x H x W x 1, non-negative), by method. */
export function rawMap(phi: FeatureFn, x: tf.Tensor4D, v: tf.Tensor1D, opts: MapOptions): tf.Tensor4D {
  const method = opts.method ?? 'gradient';
  if (method === 'layer') return layerMap(phi, x, v, opts.layer ?? '', opts.integratedSteps);
  if (method === 'layerOcclusion') return layerOcclusionMap(phi, x, v, opts.layer ?? '', opts.occlusionCells ?? 3, opts.occlusionStride ?? 3, opts.occlusionRender ?? 'cells');
  return tf.tidy(() => {
    const channelSum = (t: tf.Tensor) => tf.sum(t, 3, true) as tf.Tensor4D;
    switch (method) {
      case 'gradient':
        return channelSum(tf.abs(attribution(phi, x, v, opts.integratedSteps)));
      case 'signed':
        return tf.relu(channelSum(attribution(phi, x, v, 0)));
      case 'gradientInput':
        return tf.relu(channelSum(tf.mul(attribution(phi, x, v, 0), tf.sub(x, BLANK))));
      case 'integrated':
        return tf.relu(channelSum(attribution(phi, x, v, Math.max(1, opts.integratedSteps))));
      case 'smoothgrad':
        return channelSum(tf.abs(smoothGradient(phi, x, v, opts.smoothSamples ?? 8, opts.smoothNoise ?? 0.1)));
      default:
        throw new Error(`unknown map method '${method as string}'`);
    }
  });
}

/** A 1 x H x W x 1 map convolved with a Gaussian of SD `sigmaPx` (separable, zero padding at the border). */
export function smoothMap(m: tf.Tensor4D, sigmaPx: number): tf.Tensor4D {
  if (sigmaPx <= 0) return tf.clone(m);
  return tf.tidy(() => {
    const r = Math.ceil(3 * sigmaPx);
    const k1 = Array.from({ length: 2 * r + 1 }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * sigmaPx * sigmaPx)));
    const total = k1.reduce((a, b) => a + b, 0);
    const k = tf.tensor1d(k1.map((x) => x / total));
    const rows = tf.conv2d(m, k.reshape([2 * r + 1, 1, 1, 1]) as tf.Tensor4D, 1, 'same');
    return tf.conv2d(rows, k.reshape([1, 2 * r + 1, 1, 1]) as tf.Tensor4D, 1, 'same');
  });
}

/** |S| summed over colour channels, optionally Gaussian-smoothed: H x W (the 'gradient' display). */
export function displayMap(s: tf.Tensor4D, sigmaPx: number): tf.Tensor2D {
  return tf.tidy(() => smoothMap(tf.sum(tf.abs(s), 3, true) as tf.Tensor4D, sigmaPx).squeeze([0, 3]) as tf.Tensor2D);
}

export interface SideMap {
  /** Display map (H x W), not yet normalised. */
  map: Float32Array;
  /** Sum of the unsmoothed map over pixels. */
  mass: number;
  /** cos(w (.) phi_o, w (.) phi_ref). */
  similarity: number;
}

/**
 * One side of a pair: the display map of the driver (`side` 'driver') or of the reference image. Both
 * sides need both forward passes (for v); the vector-Jacobian products of the two sides are independent,
 * so two workers can compute them at once.
 */
export function sideMap(
  phi: FeatureFn,
  xO: tf.Tensor4D,
  xRef: tf.Tensor4D,
  w: ArrayLike<number>,
  opts: MapOptions,
  side: 'driver' | 'reference',
  /** phi(x_o) and phi(x_ref) when already known (the cached stimulus features): saves two forward passes. */
  known?: { phiO: ArrayLike<number>; phiRef: ArrayLike<number> },
): SideMap {
  const read = (x: tf.Tensor4D) => {
    const t = phi(x);
    const out = t.dataSync() as Float32Array;
    t.dispose();
    return out;
  };
  const phiO = known?.phiO ?? read(xO);
  const phiRef = known?.phiRef ?? read(xRef);
  const v = tf.tensor1d(mapVector(w, phiO, phiRef, opts, side));
  try {
    const raw = rawMap(phi, side === 'driver' ? xO : xRef, v, opts);
    const m = smoothMap(raw, opts.smoothSigmaPx);
    const mass = tf.tidy(() => tf.sum(raw).dataSync()[0]);
    const map = m.dataSync() as Float32Array;
    tf.dispose([raw, m]);
    return { map, mass, similarity: weightedCosine(w, phiO, phiRef) };
  } finally {
    v.dispose();
  }
}

/**
 * Both display maps on one colour scale in [0, 1]: divided by the 99.5th percentile of the pair's values
 * and clipped, because raw gradient maps are dominated by a few pixels (with the plain maximum most of a
 * map rounded to 0 of 255 on screen).
 */
export function normalizePair(a: Float32Array, b: Float32Array): [Float32Array, Float32Array] {
  const all = new Float32Array(a.length + b.length);
  all.set(a);
  all.set(b, a.length);
  all.sort();
  const top = all[Math.min(all.length - 1, Math.floor(0.995 * all.length))] || all[all.length - 1];
  const scale = top > 0 ? 1 / top : 0;
  return [a.map((x) => Math.min(1, x * scale)), b.map((x) => Math.min(1, x * scale))];
}

/**
 * Both maps of one (driver, reference) pair for a neuron with readout weights w (length D), in this
 * thread: two forward passes per side and one vector-Jacobian product per side (times the
 * integrated-gradient steps or SmoothGrad samples).
 */
export function sharedFeatureMaps(phi: FeatureFn, xO: tf.Tensor4D, xRef: tf.Tensor4D, w: ArrayLike<number>, opts: MapOptions = gradientMapOptions): SharedFeatureMaps {
  const d = sideMap(phi, xO, xRef, w, opts, 'driver');
  const r = sideMap(phi, xO, xRef, w, opts, 'reference');
  const [driverMap, referenceMap] = normalizePair(d.map, r.map);
  return { driverMap, referenceMap, size: xO.shape[1], driverMass: d.mass, referenceMass: r.mass, similarity: d.similarity };
}
