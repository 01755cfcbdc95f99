/**
 * Per-neuron ridge regression from stimulus features to mean responses, with the regularisation chosen per
 * neuron by exact leave-one-stimulus-out error (a stimulus never scores a model fitted on it), refreshed
 * after each trial in O(alphas x neurons x stimuli) instead of refitted.
 *
 * The formulation is scikit-learn's RidgeCV(alphas, alpha_per_target=True, fit_intercept=True) in its
 * "gram" mode: with centred features Xc (S x D),
 *   K = Xc Xc^T + 1 1^T = Q diag(lambda) Q^T,  w_a = 1 / (lambda + a), and w_a = 0 on the intercept
 *   direction (the unpenalised intercept);  H_a = Q diag(w_a) Q^T,  g_a = diag(H_a),
 *   dual coefficients c = H_a y_c,  leave-one-out residuals r = c / g_a,  loss_a = |r|^2.
 * A trial moves one stimulus mean y_p by delta; then y_c moves by delta (e_p - 1/S) and r by
 * delta k_ap with k_ap = (H_a[:, p] - mean of H_a's columns) / g_a, precomputed per (alpha, stimulus).
 * So each neuron's residuals and loss are updated with one dot product and one axpy per alpha.
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
  /** Per alpha: diag(H_a) (n) and k_a (n x n, row p = k_ap). */
  g: Float64Array[];
  k: Float64Array[];
  /** Per alpha: |k_ap|^2 per row p. */
  kk: Float64Array[];
  /** Per alpha: H_a (n x n), for rebuilding residuals from responses. */
  h: Float64Array[];
}

export interface RidgeState {
  basis: RidgeBasis;
  /** Number of neurons. */
  N: number;
  /** Mean response per (neuron, basis row): N x n. */
  y: Float64Array;
  /** Leave-one-out residuals per alpha: A arrays of N x n. */
  r: Float64Array[];
  /** Leave-one-out squared-error sums per (alpha, neuron): A x N. */
  loss: Float64Array;
}

/** Ridge basis on the feature rows `rows` of `features` (S x D row-major). O(n^2 D + n^3 + alphas x n^3 / 2). */
export function buildBasis(features: Float64Array | Float32Array, D: number, rows: number[], alphas: number[]): RidgeBasis {
  const n = rows.length;
  const xMean = new Float64Array(D);
  for (const r of rows) for (let d = 0; d < D; d++) xMean[d] += features[r * D + d] / n;
  const xc = new Float64Array(n * D);
  rows.forEach((r, i) => {
    for (let d = 0; d < D; d++) xc[i * D + d] = features[r * D + d] - xMean[d];
  });
  const km = new Matrix(n, n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 1; // the 1 1^T term: the intercept direction
      const oi = i * D;
      const oj = j * D;
      for (let d = 0; d < D; d++) s += xc[oi + d] * xc[oj + d];
      km.set(i, j, s);
      km.set(j, i, s);
    }
  }
  const eig = new EigenvalueDecomposition(km, { assumeSymmetric: true });
  const lambda = eig.realEigenvalues;
  const qm = eig.eigenvectorMatrix;
  // the intercept direction: the eigenvector closest to the normalised ones vector (as scikit-learn does)
  let interceptDim = 0;
  let best = -1;
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += qm.get(i, j);
    if (Math.abs(s) > best) {
      best = Math.abs(s);
      interceptDim = j;
    }
  }
  const g: Float64Array[] = [];
  const k: Float64Array[] = [];
  const kk: Float64Array[] = [];
  const h: Float64Array[] = [];
  const qs = new Float64Array(n * n);
  for (const a of alphas) {
    // H = (Q sqrt(W)) (Q sqrt(W))^T
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) qs[i * n + j] = j === interceptDim ? 0 : qm.get(i, j) / Math.sqrt(lambda[j] + a);
    }
    const ha = rowGram(qs, n);
    const ga = Float64Array.from({ length: n }, (_, i) => ha[i * n + i]);
    const mean = new Float64Array(n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) mean[i] += ha[i * n + j] / n;
    const ka = new Float64Array(n * n);
    const kka = new Float64Array(n);
    for (let p = 0; p < n; p++) {
      let s = 0;
      for (let i = 0; i < n; i++) {
        const v = (ha[i * n + p] - mean[i]) / ga[i];
        ka[p * n + i] = v;
        s += v * v;
      }
      kka[p] = s;
    }
    g.push(ga);
    k.push(ka);
    kk.push(kka);
    h.push(ha);
  }
  return { rows, n, D, alphas, xc, xMean, g, k, kk, h };
}

/** A A^T for a square n x n row-major A (dot products of rows; symmetric, computed once per half). */
function rowGram(a: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const oi = i * n;
    for (let j = 0; j <= i; j++) {
      const oj = j * n;
      let s = 0;
      for (let l = 0; l < n; l++) s += a[oi + l] * a[oj + l];
      out[oi + j] = s;
      out[oj + i] = s;
    }
  }
  return out;
}

/** Fresh state for N neurons with mean responses y (N x n, basis row order). O(alphas x N x n^2). */
export function createRidgeState(basis: RidgeBasis, N: number, y: Float64Array): RidgeState {
  const state: RidgeState = {
    basis,
    N,
    y: Float64Array.from(y),
    r: basis.alphas.map(() => new Float64Array(N * basis.n)),
    loss: new Float64Array(basis.alphas.length * N),
  };
  recomputeResiduals(state);
  return state;
}

/** Rebuilds every residual and loss exactly from the responses (clears accumulated rounding). */
export function recomputeResiduals(state: RidgeState): void {
  const { n, h, g } = state.basis;
  const yc = new Float64Array(n);
  for (let t = 0; t < state.N; t++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += state.y[t * n + i] / n;
    for (let i = 0; i < n; i++) yc[i] = state.y[t * n + i] - mean;
    h.forEach((ha, a) => {
      const r = state.r[a];
      let loss = 0;
      for (let i = 0; i < n; i++) {
        let s = 0;
        const o = i * n;
        for (let j = 0; j < n; j++) s += ha[o + j] * yc[j];
        const ri = s / g[a][i];
        r[t * n + i] = ri;
        loss += ri * ri;
      }
      state.loss[a * state.N + t] = loss;
    });
  }
}

/** Recomputes the losses from the residuals. */
export function recomputeLoss(state: RidgeState): void {
  const { n } = state.basis;
  state.r.forEach((r, a) => {
    for (let t = 0; t < state.N; t++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += r[t * n + i] * r[t * n + i];
      state.loss[a * state.N + t] = s;
    }
  });
}

/**
 * Refresh after one trial: the mean response of basis row `row` moved to `yNew` (length N). Updates every
 * residual and loss exactly (up to rounding). Mutates and returns `state`.
 */
export function updateRow(state: RidgeState, row: number, yNew: ArrayLike<number>): RidgeState {
  const { n, k, kk } = state.basis;
  const N = state.N;
  const delta = new Float64Array(N);
  for (let t = 0; t < N; t++) {
    delta[t] = yNew[t] - state.y[t * n + row];
    state.y[t * n + row] = yNew[t];
  }
  k.forEach((ka, a) => {
    const kp = ka.subarray(row * n, (row + 1) * n);
    const kkp = kk[a][row];
    const r = state.r[a];
    const loss = state.loss;
    for (let t = 0; t < N; t++) {
      const d = delta[t];
      if (d === 0) continue;
      const o = t * n;
      let dot = 0;
      for (let i = 0; i < n; i++) {
        dot += r[o + i] * kp[i];
        r[o + i] += d * kp[i];
      }
      loss[a * N + t] += 2 * d * dot + d * d * kkp;
    }
  });
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

/** Weights, intercept and leave-one-out predictions of neuron `t` at its chosen (or a given) alpha. O(n D). */
export function neuronModel(state: RidgeState, t: number, alphaIndex = chosenAlphas(state)[t]): NeuronModel {
  const { n, D, xc, xMean, g } = state.basis;
  const r = state.r[alphaIndex].subarray(t * n, (t + 1) * n);
  const weights = new Float64Array(D);
  for (let i = 0; i < n; i++) {
    const ci = r[i] * g[alphaIndex][i]; // dual coefficient
    if (ci === 0) continue;
    const o = i * D;
    for (let d = 0; d < D; d++) weights[d] += ci * xc[o + d];
  }
  let yMean = 0;
  for (let i = 0; i < n; i++) yMean += state.y[t * n + i] / n;
  let xw = 0;
  for (let d = 0; d < D; d++) xw += xMean[d] * weights[d];
  const looPredictions = Float64Array.from({ length: n }, (_, i) => state.y[t * n + i] - r[i]);
  return { alpha: state.basis.alphas[alphaIndex], weights, intercept: yMean - xw, looPredictions };
}

/** Prediction of a model for one feature vector. */
export function predict(model: NeuronModel, x: ArrayLike<number>): number {
  let s = model.intercept;
  for (let d = 0; d < x.length; d++) s += model.weights[d] * x[d];
  return s;
}
