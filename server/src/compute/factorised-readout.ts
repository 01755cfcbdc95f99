/**
 * A spatially resolved readout on a mid-level convolutional layer, factorised into space x feature (the
 * compact models of V4; Klindt et al., NeurIPS 2017), and the shared-feature map it gives (issue 15; a
 * candidate of `bench/maps-quality.ts`, docs/compute.md):
 *   r(x) = b + sum_{s,c} m_s w_c A_{s,c}(x)        A: the layer's activation (h x w cells s, C channels)
 * m a spatial mask over the cells, w feature weights over the channels (a rank-one S x C weight matrix).
 *
 * Fit: alternating ridge regressions on centred data (each step closed form, exact): with m fixed the model is
 * linear in w on the mask-pooled features g_c = sum_s m_s A_{s,c}; with w fixed, linear in m on the
 * channel-weighted maps z_s = sum_c w_c A_{s,c}. Objective
 *   |y_c - sum_{s,c} m_s w_c A_c|^2 + alphaMask |m|^2 + alphaWeights |w|^2 + smoothness m^T L m
 * (L the Laplacian of the grid's 4-neighbour graph); each step lowers it, so it converges (to a stationary
 * point: the problem is not convex). With alphaMask = alphaWeights = lambda / 2 the two L2 terms at the optimum
 * equal lambda |m w^T|_F, ridge on the full S x C weight matrix restricted to rank one.
 *
 * Map of a pair (the shared-feature analogue of the pooled formulation, shared-feature-maps.ts): with
 * g(x) = sum_s m_s A_s(x) and mu its mean over the stimulus set,
 *   v_c    = w_c (g_c(x_o) - mu_c) (g_c(x_ref) - mu_c)                 (signed, as the default's centred v)
 *   map_s  = m_s sum_c v_c (A_{s,c}(x) - A_{s,c}(blank))               x the driver or the reference
 * so sum_s map_s = <v, g(x)> - <v, g(blank)> exactly (an additive decomposition, no occlusion, no gradient:
 * one forward pass to the layer per image). 'contribution': v = w (the neuron's own response, no reference).
 */
import { CholeskyDecomposition, Matrix } from 'ml-matrix';
import { tf } from './backend.ts';
import { blankActivation, smoothMap, type FeatureFn } from './shared-feature-maps.ts';

export interface FactorisedReadout {
  /** Spatial mask over the layer's cells (height x width, row-major). */
  mask: Float64Array;
  /** Weights over the layer's channels. */
  weights: Float64Array;
  intercept: number;
  height: number;
  width: number;
  channels: number;
  /** Penalised objective (on centred data) at the fit, and the alternating steps it took. */
  objective: number;
  iterations: number;
}

export interface FactorisedFitOptions {
  /** L2 penalties on the mask and on the feature weights. */
  alphaMask: number;
  alphaWeights: number;
  /** Penalty on the mask's differences between 4-neighbour cells (m^T L m); default 0. */
  smoothness?: number;
  /** Most alternating steps (one w-step and one m-step each; default 200). */
  maxIterations?: number;
  /** Stop when a step lowers the objective by less than this share of it (default 1e-9). */
  tolerance?: number;
}

/** Solves (A + diag) x = b for a symmetric positive definite A (k x k, row-major), by Cholesky (ml-matrix). */
function solveSpd(a: Float64Array, b: Float64Array, k: number): Float64Array {
  const m = new Matrix(k, k);
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) m.set(i, j, a[i * k + j]);
  const x = new CholeskyDecomposition(m).solve(Matrix.columnVector(Array.from(b)));
  return Float64Array.from(x.getColumn(0));
}

/** X^T X (+ alpha on the diagonal) and X^T y for X n x k row-major. */
function normalEquations(x: Float64Array, y: Float64Array, n: number, k: number, alpha: number): { a: Float64Array; b: Float64Array } {
  const a = new Float64Array(k * k);
  const b = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    const o = i * k;
    const yi = y[i];
    for (let p = 0; p < k; p++) {
      const xp = x[o + p];
      if (xp === 0) continue;
      b[p] += xp * yi;
      const row = p * k;
      for (let q = p; q < k; q++) a[row + q] += xp * x[o + q];
    }
  }
  for (let p = 0; p < k; p++) {
    a[p * k + p] += alpha;
    for (let q = 0; q < p; q++) a[p * k + q] = a[q * k + p];
  }
  return { a, b };
}

/** The 4-neighbour grid Laplacian (S x S, row-major) times `s`, added into `a`. */
function addLaplacian(a: Float64Array, height: number, width: number, s: number): void {
  if (s === 0) return;
  const S = height * width;
  const link = (p: number, q: number) => {
    a[p * S + p] += s;
    a[q * S + q] += s;
    a[p * S + q] -= s;
    a[q * S + p] -= s;
  };
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      if (x + 1 < width) link(y * width + x, y * width + x + 1);
      if (y + 1 < height) link(y * width + x, (y + 1) * width + x);
    }
}

/**
 * Fits r = b + sum m_s w_c A_{s,c} to responses `y` (n) of activations `features` (n x height x width x
 * channels, row-major) by alternating ridge regressions, from the mean-pooling mask (m = 1 / S). The sign
 * is fixed so that the mask sums to >= 0. An error for mismatched sizes or non-finite input.
 */
export function fitFactorisedReadout(features: ArrayLike<number>, y: ArrayLike<number>, grid: { height: number; width: number; channels: number }, opts: FactorisedFitOptions): FactorisedReadout {
  const { height, width, channels: C } = grid;
  const S = height * width;
  const P = S * C;
  const n = y.length;
  if (n < 2 || features.length !== n * P) throw new Error(`factorised readout: ${features.length} feature values for ${n} responses of ${height} x ${width} x ${C}`);
  if (!(opts.alphaMask > 0 && opts.alphaWeights > 0)) throw new Error('factorised readout: the L2 penalties must be positive');
  const fMean = new Float64Array(P);
  let yMean = 0;
  for (let i = 0; i < n; i++) {
    yMean += y[i] / n;
    for (let p = 0; p < P; p++) fMean[p] += features[i * P + p] / n;
  }
  const fc = new Float64Array(n * P);
  for (let i = 0; i < n; i++) for (let p = 0; p < P; p++) fc[i * P + p] = features[i * P + p] - fMean[p];
  const yc = Float64Array.from({ length: n }, (_, i) => y[i] - yMean);
  if (!fc.every(Number.isFinite) || !yc.every(Number.isFinite)) throw new Error('factorised readout: non-finite features or responses');
  const smooth = opts.smoothness ?? 0;
  let m: Float64Array = new Float64Array(S).fill(1 / S);
  let w: Float64Array = new Float64Array(C);
  const pooled = new Float64Array(n * C); // g_i = sum_s m_s A_i,s
  const weighted = new Float64Array(n * S); // z_i = sum_c w_c A_i,s,c
  const objectiveAt = () => {
    let sse = 0;
    for (let i = 0; i < n; i++) {
      let pred = 0;
      for (let s = 0; s < S; s++) pred += m[s] * weighted[i * S + s];
      sse += (yc[i] - pred) ** 2;
    }
    let mm = 0;
    let ww = 0;
    let lap = 0;
    for (let s = 0; s < S; s++) mm += m[s] * m[s];
    for (let c = 0; c < C; c++) ww += w[c] * w[c];
    if (smooth)
      for (let yy = 0; yy < height; yy++)
        for (let x = 0; x < width; x++) {
          const s = yy * width + x;
          if (x + 1 < width) lap += (m[s] - m[s + 1]) ** 2;
          if (yy + 1 < height) lap += (m[s] - m[s + width]) ** 2;
        }
    return sse + opts.alphaMask * mm + opts.alphaWeights * ww + smooth * lap;
  };
  const maxIt = opts.maxIterations ?? 200;
  const tol = opts.tolerance ?? 1e-9;
  let objective = Infinity;
  let it = 0;
  while (it < maxIt) {
    it++;
    pooled.fill(0);
    for (let i = 0; i < n; i++)
      for (let s = 0; s < S; s++) {
        const ms = m[s];
        if (ms === 0) continue;
        const o = i * P + s * C;
        for (let c = 0; c < C; c++) pooled[i * C + c] += ms * fc[o + c];
      }
    const ew = normalEquations(pooled, yc, n, C, opts.alphaWeights);
    w = solveSpd(ew.a, ew.b, C);
    weighted.fill(0);
    for (let i = 0; i < n; i++)
      for (let s = 0; s < S; s++) {
        const o = i * P + s * C;
        let z = 0;
        for (let c = 0; c < C; c++) z += w[c] * fc[o + c];
        weighted[i * S + s] = z;
      }
    const em = normalEquations(weighted, yc, n, S, opts.alphaMask);
    addLaplacian(em.a, height, width, smooth);
    m = solveSpd(em.a, em.b, S);
    const next = objectiveAt();
    const done = objective - next <= tol * next;
    objective = next;
    if (done) break;
  }
  if (m.reduce((a, b) => a + b, 0) < 0) {
    m = m.map((x) => -x);
    w = w.map((x) => -x);
  }
  let offset = 0;
  for (let s = 0; s < S; s++) for (let c = 0; c < C; c++) offset += m[s] * w[c] * fMean[s * C + c];
  return { mask: m, weights: w, intercept: yMean - offset, height, width, channels: C, objective, iterations: it };
}

/** The readout's prediction for one activation (height x width x channels, row-major). */
export function predictFactorised(r: FactorisedReadout, a: ArrayLike<number>): number {
  return r.intercept + dotPooled(r.weights, maskPooled(r, a));
}

/** g_c = sum_s m_s A_{s,c}: the activation pooled by the readout's mask (length channels). */
export function maskPooled(r: FactorisedReadout, a: ArrayLike<number>): Float64Array {
  const g = new Float64Array(r.channels);
  for (let s = 0; s < r.mask.length; s++) for (let c = 0; c < r.channels; c++) g[c] += r.mask[s] * a[s * r.channels + c];
  return g;
}

const dotPooled = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

/**
 * The map's channel weights: 'shared' v_c = w_c (g_c(o) - mu_c) (g_c(ref) - mu_c) with mu = the mask-pooled
 * mean activation of the stimulus set; 'contribution' v = w.
 */
export function factorisedVector(r: FactorisedReadout, kind: 'shared' | 'contribution', aO: ArrayLike<number>, aRef: ArrayLike<number>, aMean: ArrayLike<number>): Float64Array {
  if (kind === 'contribution') return Float64Array.from(r.weights);
  const [gO, gRef, mu] = [maskPooled(r, aO), maskPooled(r, aRef), maskPooled(r, aMean)];
  return Float64Array.from(r.weights, (w, c) => w * (gO[c] - mu[c]) * (gRef[c] - mu[c]));
}

/** map_s = m_s sum_c v_c (A_{s,c} - A0_{s,c}) over the layer's cells (height x width). Sums to <v, g(A)> - <v, g(A0)>. */
export function factorisedCellMap(r: FactorisedReadout, v: ArrayLike<number>, a: ArrayLike<number>, a0: ArrayLike<number>): Float64Array {
  const C = r.channels;
  return Float64Array.from(r.mask, (ms, s) => {
    let z = 0;
    for (let c = 0; c < C; c++) z += v[c] * (a[s * C + c] - a0[s * C + c]);
    return ms * z;
  });
}

/** A layer's activation to an image (1 x H x W x 3) through a splittable feature function, as a flat array and its shape. */
export function layerActivation(phi: FeatureFn, layer: string, x: tf.Tensor4D): { a: Float32Array; height: number; width: number; channels: number } {
  if (!phi.split) throw new Error('a factorised readout needs a feature function that can be split at a layer');
  const { lower } = phi.split(layer);
  return tf.tidy(() => {
    const t = lower(x);
    if (t.rank !== 4) throw new Error(`layer ${layer} is not 4-D (${t.shape.join(' x ')})`);
    const [, height, width, channels] = t.shape;
    return { a: t.dataSync() as Float32Array, height, width, channels };
  });
}

/** The blank screen's activation at the layer (kept per feature function and layer, as the occlusion maps keep it). */
export function blankLayerActivation(phi: FeatureFn, layer: string, size: number): Float32Array {
  if (!phi.split) throw new Error('a factorised readout needs a feature function that can be split at a layer');
  return blankActivation(phi, layer, phi.split(layer).lower, [1, size, size, 3]).dataSync() as Float32Array;
}

/**
 * One side's display map for a fitted factorised readout: the cell map of `side` resized to the image
 * (bilinear, half-pixel centres, as the layer maps), positive part, smoothed `smoothSigmaPx`; H x W, not yet
 * normalised (normalizePair), and the unsmoothed map's sum.
 */
export function factorisedSideMap(
  phi: FeatureFn,
  layer: string,
  xO: tf.Tensor4D,
  xRef: tf.Tensor4D,
  r: FactorisedReadout,
  aMean: ArrayLike<number>,
  opts: { kind: 'shared' | 'contribution'; smoothSigmaPx: number },
  side: 'driver' | 'reference',
): { map: Float32Array; mass: number } {
  const aO = layerActivation(phi, layer, xO).a;
  const aRef = layerActivation(phi, layer, xRef).a;
  const a0 = blankLayerActivation(phi, layer, xO.shape[1]);
  const v = factorisedVector(r, opts.kind, aO, aRef, aMean);
  const cells = factorisedCellMap(r, v, side === 'driver' ? aO : aRef, a0);
  const [raw, smoothed] = tf.tidy(() => {
    const m = tf.relu(tf.image.resizeBilinear(tf.tensor4d(Float32Array.from(cells), [1, r.height, r.width, 1]), [xO.shape[1], xO.shape[2]], false, true)) as tf.Tensor4D;
    return [m, smoothMap(m, opts.smoothSigmaPx)];
  });
  const mass = tf.tidy(() => tf.sum(raw).dataSync()[0]);
  const map = smoothed.dataSync() as Float32Array;
  tf.dispose([raw, smoothed]);
  return { map, mass };
}
