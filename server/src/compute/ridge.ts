/**
 * Per-neuron ridge regression from stimulus features to mean responses, with the regularisation chosen per
 * neuron by exact leave-one-stimulus-out error (a stimulus never scores a model fitted on it), and an
 * O(alphas x (S^2 + N x S)) refresh after each trial instead of a refit.
 *
 * The formulation is scikit-learn's RidgeCV(alphas, alpha_per_target=True, fit_intercept=True) in its
 * "gram" mode (n_samples <= n_features): with centred features Xc (S x D),
 *   K = Xc Xc^T + 1 1^T = Q diag(lambda) Q^T,   w_a = 1 / (lambda + a), with w_a = 0 on the intercept
 *   direction (the unpenalised intercept), z = Q^T y_c,
 *   dual coefficients c = Q (w_a * z),  G^-1 diagonal g_i = sum_j Q_ij^2 w_aj,
 *   leave-one-out residuals e_i = c_i / g_i,  loss_a = sum_i e_i^2 = z^T M_a z  with  M_a = B_a^T B_a,
 *   B_a = diag(1/g) Q diag(w_a).
 * A trial changes one stimulus mean per neuron, so z moves along one known vector u and each loss is
 * updated with M_a u (S^2 per alpha, shared by all neurons) and one dot product per neuron.
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';

export interface RidgeBasis {
  /** Feature rows (indices into the caller's stimulus list) the basis was built on, in order. */
  rows: number[];
  n: number;
  D: number;
  alphas: number[];
  /** Centred features, n x D row-major, and the feature means. */
  xc: Float64Array;
  xMean: Float64Array;
  /** Eigenvectors, n x n row-major (column j is eigenvector j). */
  q: Float64Array;
  /** Per alpha: w (n), and M (n x n). */
  w: Float64Array[];
  m: Float64Array[];
  /** Per row i: Q[i, :] - mean over rows of Q (the direction z moves when y_i changes). */
  u: Float64Array[];
}

export interface RidgeState {
  basis: RidgeBasis;
  /** Number of neurons. */
  N: number;
  /** Mean response per (neuron, basis row): N x n. */
  y: Float64Array;
  /** z = Q^T y_c per neuron: N x n. */
  z: Float64Array;
  /** Leave-one-out squared-error sums per (alpha, neuron): A x N. */
  loss: Float64Array;
}

/** Ridge basis on the feature rows `rows` of `features` (S x D row-major). O(n^3 + alphas x n^3 / 2). */
export function buildBasis(features: Float64Array | Float32Array, D: number, rows: number[], alphas: number[]): RidgeBasis {
  const n = rows.length;
  const xMean = new Float64Array(D);
  for (const r of rows) for (let d = 0; d < D; d++) xMean[d] += features[r * D + d] / n;
  const xc = new Float64Array(n * D);
  rows.forEach((r, i) => {
    for (let d = 0; d < D; d++) xc[i * D + d] = features[r * D + d] - xMean[d];
  });
  const k = new Matrix(n, n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 1; // the 1 1^T term: the intercept direction
      for (let d = 0; d < D; d++) s += xc[i * D + d] * xc[j * D + d];
      k.set(i, j, s);
      k.set(j, i, s);
    }
  }
  const eig = new EigenvalueDecomposition(k, { assumeSymmetric: true });
  const lambda = eig.realEigenvalues;
  const qm = eig.eigenvectorMatrix;
  const q = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) q[i * n + j] = qm.get(i, j);
  // the intercept direction: the eigenvector closest to the normalised ones vector (as scikit-learn does)
  let interceptDim = 0;
  let best = -1;
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += q[i * n + j];
    if (Math.abs(s) > best) {
      best = Math.abs(s);
      interceptDim = j;
    }
  }
  const colMean = new Float64Array(n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) colMean[j] += q[i * n + j] / n;
  const u = rows.map((_, i) => Float64Array.from({ length: n }, (_, j) => q[i * n + j] - colMean[j]));
  const w: Float64Array[] = [];
  const m: Float64Array[] = [];
  for (const a of alphas) {
    const wa = Float64Array.from(lambda, (l) => 1 / (l + a));
    wa[interceptDim] = 0;
    const b = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      let g = 0;
      for (let j = 0; j < n; j++) g += q[i * n + j] * q[i * n + j] * wa[j];
      for (let j = 0; j < n; j++) b[i * n + j] = (q[i * n + j] * wa[j]) / g;
    }
    w.push(wa);
    m.push(gram(b, n));
  }
  return { rows, n, D, alphas, xc, xMean, q, w, m, u };
}

/** B^T B for a square n x n row-major B (symmetric result, computed once per half). */
function gram(b: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const row = k * n;
    for (let i = 0; i < n; i++) {
      const bi = b[row + i];
      if (bi === 0) continue;
      const o = i * n;
      for (let j = i; j < n; j++) out[o + j] += bi * b[row + j];
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) out[i * n + j] = out[j * n + i];
  return out;
}

/** Fresh state for N neurons with mean responses y (N x n, basis row order). O(N n^2 + A N n^2). */
export function createRidgeState(basis: RidgeBasis, N: number, y: Float64Array): RidgeState {
  const { n } = basis;
  const z = new Float64Array(N * n);
  for (let t = 0; t < N; t++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += y[t * n + i] / n;
    for (let i = 0; i < n; i++) {
      const yc = y[t * n + i] - mean;
      if (yc === 0) continue;
      for (let j = 0; j < n; j++) z[t * n + j] += basis.q[i * n + j] * yc;
    }
  }
  const state: RidgeState = { basis, N, y: Float64Array.from(y), z, loss: new Float64Array(basis.alphas.length * N) };
  recomputeLoss(state);
  return state;
}

/** Exact loss z^T M z for every (alpha, neuron); also used to clear accumulated rounding. */
export function recomputeLoss(state: RidgeState): void {
  const { n, m } = state.basis;
  const tmp = new Float64Array(n);
  m.forEach((ma, a) => {
    for (let t = 0; t < state.N; t++) {
      const zt = state.z.subarray(t * n, (t + 1) * n);
      tmp.fill(0);
      for (let i = 0; i < n; i++) {
        const zi = zt[i];
        if (zi === 0) continue;
        for (let j = 0; j < n; j++) tmp[j] += ma[i * n + j] * zi;
      }
      let s = 0;
      for (let j = 0; j < n; j++) s += tmp[j] * zt[j];
      state.loss[a * state.N + t] = s;
    }
  });
}

/**
 * Refresh after one trial: the mean response of basis row `row` moved to `yNew` (length N). Updates z and
 * every loss exactly (up to rounding). Mutates and returns `state`.
 */
export function updateRow(state: RidgeState, row: number, yNew: ArrayLike<number>): RidgeState {
  const { n, m, u: us } = state.basis;
  const u = us[row];
  const N = state.N;
  const delta = new Float64Array(N);
  for (let t = 0; t < N; t++) {
    delta[t] = yNew[t] - state.y[t * n + row];
    state.y[t * n + row] = yNew[t];
  }
  const mu = new Float64Array(n);
  m.forEach((ma, a) => {
    mu.fill(0);
    for (let i = 0; i < n; i++) {
      const ui = u[i];
      const o = i * n;
      for (let j = 0; j < n; j++) mu[j] += ma[o + j] * ui;
    }
    let umu = 0;
    for (let j = 0; j < n; j++) umu += u[j] * mu[j];
    const loss = state.loss.subarray(a * N, (a + 1) * N);
    for (let t = 0; t < N; t++) {
      const d = delta[t];
      if (d === 0) continue;
      const zt = state.z.subarray(t * n, (t + 1) * n);
      let s = 0;
      for (let j = 0; j < n; j++) s += mu[j] * zt[j];
      loss[t] += 2 * d * s + d * d * umu;
    }
  });
  for (let t = 0; t < N; t++) {
    const d = delta[t];
    if (d === 0) continue;
    const o = t * n;
    for (let j = 0; j < n; j++) state.z[o + j] += d * u[j];
  }
  return state;
}

/** Index of the alpha with the smallest leave-one-out error, per neuron (ties: the first, as numpy's argmin). */
export function chosenAlphas(state: RidgeState): Int32Array {
  const A = state.basis.alphas.length;
  const out = new Int32Array(state.N);
  for (let t = 0; t < state.N; t++) {
    let best = 0;
    for (let a = 1; a < A; a++) if (state.loss[a * state.N + t] < state.loss[best * state.N + t]) best = a;
    out[t] = best;
  }
  return out;
}

export interface NeuronModel {
  alpha: number;
  /** Readout weights on the features (length D) and intercept. */
  weights: Float64Array;
  intercept: number;
  /** Leave-one-out prediction for each basis row (the row never scored a model fitted on it). */
  looPredictions: Float64Array;
}

/** Weights, intercept and leave-one-out predictions of neuron `t` at its chosen (or a given) alpha. O(n^2 + n D). */
export function neuronModel(state: RidgeState, t: number, alphaIndex = chosenAlphas(state)[t]): NeuronModel {
  const { n, D, q, xc, xMean } = state.basis;
  const wa = state.basis.w[alphaIndex];
  const zt = state.z.subarray(t * n, (t + 1) * n);
  const c = new Float64Array(n);
  const g = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    let gi = 0;
    for (let j = 0; j < n; j++) {
      s += q[i * n + j] * wa[j] * zt[j];
      gi += q[i * n + j] * q[i * n + j] * wa[j];
    }
    c[i] = s;
    g[i] = gi;
  }
  const weights = new Float64Array(D);
  for (let i = 0; i < n; i++) {
    const ci = c[i];
    for (let d = 0; d < D; d++) weights[d] += ci * xc[i * D + d];
  }
  let yMean = 0;
  for (let i = 0; i < n; i++) yMean += state.y[t * n + i] / n;
  let xw = 0;
  for (let d = 0; d < D; d++) xw += xMean[d] * weights[d];
  const looPredictions = Float64Array.from({ length: n }, (_, i) => state.y[t * n + i] - c[i] / g[i]);
  return { alpha: state.basis.alphas[alphaIndex], weights, intercept: yMean - xw, looPredictions };
}

/** Prediction of a model for one feature vector. */
export function predict(model: NeuronModel, x: ArrayLike<number>): number {
  let s = model.intercept;
  for (let d = 0; d < x.length; d++) s += model.weights[d] * x[d];
  return s;
}
