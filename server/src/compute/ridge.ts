/**
 * Per-neuron ridge regression from stimulus features to mean responses, with the regularisation chosen per
 * neuron by exact leave-one-stimulus-out error (a stimulus never scores a model fitted on it), refreshed
 * after each trial in O(alphas x neurons x stimuli) instead of refitted, and grown by one stimulus at a
 * time in O(alphas x stimuli^2 + alphas x neurons x stimuli) instead of refitted.
 *
 * The formulation is scikit-learn's RidgeCV(alphas, alpha_per_target=True, fit_intercept=True) in its
 * "gram" mode: with centred features Xc (S x D),
 *   K = Xc Xc^T + 1 1^T = Q diag(lambda) Q^T,  w_a = 1 / (lambda + a), and w_a = 0 on the intercept
 *   direction (the unpenalised intercept);  H_a = Q diag(w_a) Q^T,  g_a = diag(H_a),
 *   dual coefficients c = H_a y_c,  leave-one-out residuals r = c / g_a,  loss_a = |r|^2.
 * A trial moves one stimulus mean y_p by delta; then y_c moves by delta (e_p - 1/S) and r by
 * delta k_ap with k_ap = (H_a[:, p] - mean of H_a's columns) / g_a (the means are 0: H_a 1 = 0).
 * So each neuron's residuals and loss are updated with one dot product and one axpy per alpha.
 *
 * New stimuli: H_a is also P (Xc Xc^T + a I)^-1 P with P the centring projector, which equals
 *   H_a = Kinv_a - z_a z_a^T / gamma_a,  Kinv_a = (X0 X0^T + a I)^-1,  z_a = Kinv_a 1,  gamma_a = 1^T z_a
 * for features X0 centred by ANY fixed vector (the constant direction drops out). So the basis keeps
 * Kinv_a for X0 = X - xCenter (xCenter: the feature means at the exact fit) and a new stimulus borders it:
 * with k = X0 x0, v = Kinv k, s = |x0|^2 + a - k.v (block inverse),
 *   Kinv' = [[Kinv + v v^T / s, -v / s], [-v^T / s, 1 / s]],  z' = [z + v d; -d], d = (v.1 - 1) / s,
 *   gamma' = gamma + d^2 s,
 * and every neuron's dual coefficients follow from its old ones with two dot products (addRow).
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';

export interface RidgeBasis {
  /** Feature rows (indices into the caller's stimulus list) the basis was built on, in order. */
  rows: number[];
  n: number;
  D: number;
  alphas: number[];
  /** Rows allocated in xc and kinv: stimuli that can be added without reallocating. */
  cap: number;
  /** Rows of the exact fit (buildBasis); the rest were added (addRow). */
  exactN: number;
  /** Features of the rows minus xCenter, cap x D row-major (the first n rows are used). */
  xc: Float64Array;
  /** The fixed centring of xc (the feature means at the exact fit), and the feature means of the current rows. */
  xCenter: Float64Array;
  xMean: Float64Array;
  /**
   * Per alpha: (X0 X0^T + a I)^-1, symmetric, its lower triangle packed by rows (entry i, j <= i at
   * tri(i) + j = i (i + 1) / 2 + j; tri(cap) long: a sweep reads half the numbers), z = Kinv 1 (cap),
   * gamma = 1^T z; H = Kinv - z z^T / gamma.
   */
  kinv: Float64Array[];
  z: Float64Array[];
  gamma: number[];
  /** Per alpha: diag(H_a) (cap; the first n are used). */
  g: Float64Array[];
  /**
   * The last added row's rank-one term of Kinv, not yet written (addRow): the true Kinv's first `n` rows and
   * columns are the stored ones plus v v^T / sch per alpha. The next addRow writes it in the same sweep
   * that reads Kinv, so an added row costs one pass over each Kinv instead of three.
   */
  pendingBorder?: { n: number; v: Float64Array[]; sch: number[] };
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

/**
 * The eigendecomposition of a basis's kernel K = Xc Xc^T + 1 1^T (buildBasis): eigenvalues `lambda` (n) and
 * eigenvectors as the columns of `q` (n x n row-major). It depends on the rows' features only (not on the
 * responses or the alphas), and is most of a basis's cost (O(n^2 D + n^3)): clustered, a worker computes it
 * (cluster/refit-jobs.ts) and buildBasis takes it as given.
 */
export interface KernelEigen {
  lambda: Float64Array;
  q: Float64Array;
}

/** The features of `rows` minus their means, in cap x D rows (the first n filled), and the means. */
function centredRows(features: Float64Array | Float32Array, D: number, rows: number[], cap: number): { xc: Float64Array; xMean: Float64Array } {
  const n = rows.length;
  const xMean = new Float64Array(D);
  for (const r of rows) for (let d = 0; d < D; d++) xMean[d] += features[r * D + d] / n;
  const xc = new Float64Array(cap * D);
  rows.forEach((r, i) => {
    for (let d = 0; d < D; d++) xc[i * D + d] = features[r * D + d] - xMean[d];
  });
  return { xc, xMean };
}

/** KernelEigen of the basis on the feature rows `rows` of `features` (S x D row-major): what buildBasis computes first. */
export function basisEigen(features: Float64Array | Float32Array, D: number, rows: number[]): KernelEigen {
  return kernelEigen(centredRows(features, D, rows, rows.length).xc, D, rows.length);
}

/** KernelEigen of K = Xc Xc^T + 1 1^T for the first n rows of xc (n x D). */
function kernelEigen(xc: Float64Array, D: number, n: number): KernelEigen {
  const km = new Matrix(n, n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      const s = 1 + dot(xc, i * D, xc, j * D, D); // 1 + : the 1 1^T term, the intercept direction
      km.set(i, j, s);
      km.set(j, i, s);
    }
  }
  const eig = new EigenvalueDecomposition(km, { assumeSymmetric: true });
  const qm = eig.eigenvectorMatrix;
  const q = new Float64Array(n * n);
  for (let i = 0; i < n; i++) q.set(qm.getRow(i), i * n);
  return { lambda: Float64Array.from(eig.realEigenvalues), q };
}

/**
 * Ridge basis on the feature rows `rows` of `features` (S x D row-major), with room for `cap` rows
 * (default: just these). O(n^2 D + n^3 + alphas x n^3 / 2); `eigen` given (basisEigen of the same rows,
 * e.g. from a cluster worker), O(n D + alphas x n^3 / 2).
 */
export function buildBasis(features: Float64Array | Float32Array, D: number, rows: number[], alphas: number[], cap = rows.length, eigen?: KernelEigen): RidgeBasis {
  const n = rows.length;
  cap = Math.max(cap, n);
  const { xc, xMean } = centredRows(features, D, rows, cap);
  if (eigen && (eigen.lambda.length !== n || eigen.q.length !== n * n)) throw new Error(`kernel eigendecomposition of ${eigen.lambda.length} rows given for a basis of ${n}`);
  const { lambda, q } = eigen ?? kernelEigen(xc, D, n);
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
  const g: Float64Array[] = [];
  const kinv: Float64Array[] = [];
  const z: Float64Array[] = [];
  const gamma: number[] = [];
  const qs = new Float64Array(n * n);
  for (const a of alphas) {
    // H = (Q sqrt(W)) (Q sqrt(W))^T
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) qs[i * n + j] = j === interceptDim ? 0 : q[i * n + j] / Math.sqrt(lambda[j] + a);
    }
    const ha = rowGram(qs, n);
    // Kinv = (Xc Xc^T + a I)^-1 = H + 1 1^T / (n a): the intercept direction is Xc Xc^T's null direction
    const ka = new Float64Array(tri(cap));
    const za = new Float64Array(cap);
    const ga = new Float64Array(cap);
    let gm = 0;
    for (let i = 0; i < n; i++) {
      let zi = 0;
      for (let j = 0; j < n; j++) {
        const v = ha[i * n + j] + 1 / (n * a);
        if (j <= i) ka[tri(i) + j] = v;
        zi += v;
      }
      za[i] = zi;
      gm += zi;
      ga[i] = ha[i * n + i];
    }
    g.push(ga);
    kinv.push(ka);
    z.push(za);
    gamma.push(gm);
  }
  return { rows, n, D, alphas, cap, exactN: n, xc, xCenter: Float64Array.from(xMean), xMean, kinv, z, gamma, g };
}

/** A A^T for a square n x n row-major A (dot products of rows; symmetric, computed once per half). */
function rowGram(a: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const oi = i * n;
    for (let j = 0; j <= i; j++) {
      const oj = j * n;
      const s = dot(a, oi, a, oj, n);
      out[oi + j] = s;
      out[oj + i] = s;
    }
  }
  return out;
}

/** Fresh state for N neurons with mean responses y (N x n, basis row order). O(alphas x N x n^2). */
export function createRidgeState(basis: RidgeBasis, N: number, y: Float64Array): RidgeState {
  // y and r as views of buffers with room for cap rows per neuron: addRow widens them in place
  const room = () => new Float64Array(new ArrayBuffer(8 * N * basis.cap), 0, N * basis.n);
  const yv = room();
  yv.set(y.subarray(0, N * basis.n));
  const state: RidgeState = { basis, N, y: yv, r: basis.alphas.map(room), loss: new Float64Array(basis.alphas.length * N) };
  recomputeResiduals(state);
  return state;
}

/** Rebuilds every residual and loss exactly from the responses (clears accumulated rounding). */
export function recomputeResiduals(state: RidgeState): void {
  settleBorder(state.basis);
  const { n, kinv, z, gamma, g } = state.basis;
  const yc = new Float64Array(n);
  const kyc = new Float64Array(n);
  for (let t = 0; t < state.N; t++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += state.y[t * n + i] / n;
    for (let i = 0; i < n; i++) yc[i] = state.y[t * n + i] - mean;
    kinv.forEach((ka, a) => {
      const za = z[a];
      let zy = 0;
      for (let i = 0; i < n; i++) zy += za[i] * yc[i];
      zy /= gamma[a];
      const r = state.r[a];
      symMulVec(ka, yc, n, kyc);
      let loss = 0;
      for (let i = 0; i < n; i++) {
        const ri = (kyc[i] - za[i] * zy) / g[a][i];
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
  const { n, alphas } = state.basis;
  const N = state.N;
  const delta = new Float64Array(N);
  for (let t = 0; t < N; t++) {
    delta[t] = yNew[t] - state.y[t * n + row];
    state.y[t * n + row] = yNew[t];
  }
  const kp = new Float64Array(n);
  for (let a = 0; a < alphas.length; a++) {
    const kkp = leaveOneOutRow(state.basis, a, row, kp);
    const r = state.r[a];
    const loss = state.loss;
    for (let t = 0; t < N; t++) {
      const d = delta[t];
      if (d === 0) continue;
      loss[a * N + t] += 2 * d * dotAxpy(r, t * n, kp, n, d) + d * d * kkp;
    }
  }
  return state;
}

/** k_ap = H_a[p, :] / g_a into `kp` (H_a's row p from Kinv's, with the last absorb's pending rank-one term); returns |k_ap|^2. */
function leaveOneOutRow(b: RidgeBasis, a: number, row: number, kp: Float64Array): number {
  const { n } = b;
  const ka = b.kinv[a];
  const za = b.z[a];
  const ga = b.g[a];
  const zp = za[row] / b.gamma[a];
  // Kinv's row p: the packed row up to the diagonal, then down column p
  const o = tri(row);
  for (let i = 0; i <= row; i++) kp[i] = ka[o + i] - zp * za[i];
  for (let i = row + 1; i < n; i++) kp[i] = ka[tri(i) + row] - zp * za[i];
  const pb = b.pendingBorder;
  if (pb && row < pb.n) {
    const v = pb.v[a];
    const c = v[row] / pb.sch[a];
    for (let i = 0; i < pb.n; i++) kp[i] += c * v[i];
  }
  let kkp = 0;
  for (let i = 0; i < n; i++) {
    kp[i] /= ga[i];
    kkp += kp[i] * kp[i];
  }
  return kkp;
}

/** Doubles the room of a basis (xc, Kinv, z, g) so that more rows can be added. */
function grow(b: RidgeBasis, cap: number): void {
  settleBorder(b);
  const xc = new Float64Array(cap * b.D);
  xc.set(b.xc.subarray(0, b.n * b.D));
  b.xc = xc;
  b.kinv = b.kinv.map((k) => {
    const out = new Float64Array(tri(cap));
    out.set(k.subarray(0, tri(b.n)));
    return out;
  });
  const widen = (x: Float64Array) => {
    const out = new Float64Array(cap);
    out.set(x.subarray(0, b.n));
    return out;
  };
  b.z = b.z.map(widen);
  b.g = b.g.map(widen);
  b.cap = cap;
}

/** Writes the pending rank-one term of Kinv (addRow) into the stored Kinv. O(alphas x n^2). */
export function settleBorder(b: RidgeBasis): void {
  const pb = b.pendingBorder;
  if (!pb) return;
  b.kinv.forEach((K, a) => {
    const v = pb.v[a];
    for (let i = 0; i < pb.n; i++) {
      const c = v[i] / pb.sch[a];
      const o = tri(i);
      for (let j = 0; j <= i; j++) K[o + j] += c * v[j];
    }
  });
  b.pendingBorder = undefined;
}

/**
 * An N x m view of the N x n data `a` holds (row layout t n + i), on the same buffer when it has room
 * (the caller then moves the rows in place, last first), else on a new buffer with room for twice as
 * many rows holding a copy in the old layout.
 */
function widen(a: Float64Array, N: number, n: number, m: number): Float64Array {
  if (a.byteOffset === 0 && a.buffer.byteLength >= 8 * N * m) return new Float64Array(a.buffer, 0, N * m);
  const out = new Float64Array(new ArrayBuffer(8 * N * Math.max(2 * m, 8)), 0, N * m);
  out.set(a.subarray(0, N * n));
  return out;
}

/**
 * Adds stimulus `stimulus` with features `x` (length D) and mean responses `yNew` (length N) to the
 * models as basis row n: Kinv bordered (block inverse), every neuron's leave-one-out residuals and losses
 * updated from its old dual coefficients. Equal to a refit on all rows up to rounding. Mutates and
 * returns `state`. O(n D + alphas x n^2 + alphas x N x n).
 */
export function addRow(state: RidgeState, stimulus: number, x: ArrayLike<number>, yNew: ArrayLike<number>): RidgeState {
  const b = state.basis;
  if (b.n + 1 > b.cap) grow(b, Math.max(8, 2 * b.cap));
  const { n, D } = b;
  const N = state.N;
  const m = n + 1;
  // the new row of X0 and its products with the others
  const xc = b.xc; // read once: a property read in the inner loop made this n x D product as slow as an n^2 one
  const o0 = n * D;
  for (let d = 0; d < D; d++) xc[o0 + d] = x[d] - b.xCenter[d];
  const kappa = dot(xc, o0, xc, o0, D);
  const kv = new Float64Array(n);
  for (let i = 0; i < n; i++) kv[i] = dot(xc, i * D, xc, o0, D);
  for (let d = 0; d < D; d++) b.xMean[d] += (x[d] - b.xMean[d]) / m;
  const yOld = state.y;
  const pb = b.pendingBorder;
  // per alpha: v = Kinv k, s = kappa + a - k.v (the Schur complement), d = (v.1 - 1) / s, the new z, gamma,
  // diag(H), and the factors that turn a neuron's old residuals into its new ones (no division per element)
  const per = b.alphas.map((a, ai) => {
    const K = b.kinv[ai];
    const z = b.z[ai];
    const gOld = b.g[ai];
    const v = new Float64Array(n);
    if (pb) pendingKinvTimes(K, pb.v[ai], pb.sch[ai], pb.n, kv, n, v);
    else symMulVec(K, kv, n, v);
    let kvv = 0;
    let v1 = 0;
    for (let i = 0; i < n; i++) {
      kvv += kv[i] * v[i];
      v1 += v[i];
    }
    const sch = kappa + a - kvv;
    const dd = (v1 - 1) / sch;
    const gamma = b.gamma[ai];
    const gammaNew = gamma + dd * dd * sch;
    const zNew = new Float64Array(m);
    for (let i = 0; i < n; i++) zNew[i] = z[i] + v[i] * dd;
    zNew[n] = -dd;
    const gNew = new Float64Array(m);
    for (let i = 0; i < n; i++) gNew[i] = K[tri(i) + i] + (v[i] * v[i]) / sch - (zNew[i] * zNew[i]) / gammaNew;
    gNew[n] = 1 / sch - (zNew[n] * zNew[n]) / gammaNew;
    // r'_i = (c_i + z_i (z.y) / gamma + v_i beta - z'_i mu) / g'_i with c = r g and z'_i = z_i + v_i d:
    // r'_i = r_i fr_i + (z.y / gamma - mu) fz_i + (beta - mu d) fv_i, three products per element
    const fr = new Float64Array(n);
    const fz = new Float64Array(n);
    const fv = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      fr[i] = gOld[i] / gNew[i];
      fz[i] = z[i] / gNew[i];
      fv[i] = v[i] / gNew[i];
    }
    return { v, sch, dd, gamma, gammaNew, zNew, gNew, fr, fz, fv, z, r: widen(state.r[ai], N, n, m) };
  });
  const sc = Float64Array.from(per.flatMap((q) => [q.sch, q.dd, q.gamma, q.gammaNew, q.zNew[n], q.gNew[n]]));
  const terms = (k: 'z' | 'v' | 'r' | 'fr' | 'fz' | 'fv') => per.map((q) => q[k]);
  absorbResiduals(terms('z'), terms('v'), terms('r'), terms('fr'), terms('fz'), terms('fv'), sc, yOld, Float64Array.from({ length: N }, (_, t) => yNew[t]), N, n, state.loss);
  per.forEach((q, ai) => {
    state.r[ai] = q.r;
    // Kinv bordered: row n (-v / s, 1 / s) now; Kinv + v v^T / s left pending (the next addRow's sweep writes it)
    const K = b.kinv[ai];
    const { v, sch } = q;
    const o = tri(n);
    for (let i = 0; i < n; i++) K[o + i] = -v[i] / sch;
    K[o + n] = 1 / sch;
    b.z[ai].set(q.zNew);
    b.g[ai].set(q.gNew);
    b.gamma[ai] = q.gammaNew;
  });
  const y = widen(yOld, N, n, m);
  for (let t = N - 1; t >= 0; t--) {
    for (let i = n - 1; i >= 0; i--) y[t * m + i] = y[t * n + i];
    y[t * m + n] = yNew[t];
  }
  state.y = y;
  b.pendingBorder = { n, v: per.map((q) => q.v), sch: per.map((q) => q.sch) };
  b.rows = [...b.rows, stimulus];
  b.n = m;
  return state;
}

/**
 * addRow's residuals and losses, neuron by neuron (its responses read once for every alpha), the rows
 * rewritten in place in the wider layout: neuron t moves from t n to t (n + 1), last neuron first, last
 * element first, nothing overwritten unread. Per alpha a: z, v, the residuals' N x (n + 1) view r, the
 * factors fr, fz, fv, and sc[6a ..]: the Schur complement s, d, gamma, the new gamma, z'_n, g'_n. Arrays
 * and numbers only: compiled once, whatever objects the state came in (a structured clone's differ).
 */
function absorbResiduals(z: Float64Array[], v: Float64Array[], r: Float64Array[], fr: Float64Array[], fz: Float64Array[], fv: Float64Array[], sc: Float64Array, yOld: Float64Array, yNew: Float64Array, N: number, n: number, loss: Float64Array): void {
  const A = z.length;
  const m = n + 1;
  const zv = new Float64Array(2);
  for (let t = N - 1; t >= 0; t--) {
    const ot = t * n;
    const on = t * m;
    const yn = yNew[t];
    for (let ai = 0; ai < A; ai++) {
      const sch = sc[6 * ai];
      const dd = sc[6 * ai + 1];
      dot2(z[ai], v[ai], yOld, ot, n, zv);
      const zy = zv[0];
      const beta = (zv[1] - yn) / sch;
      const mu = (zy + dd * beta * sch) / sc[6 * ai + 3];
      const rn = (-beta - sc[6 * ai + 4] * mu) / sc[6 * ai + 5];
      const ra = r[ai];
      ra[on + n] = rn;
      loss[ai * N + t] = rn * rn + moveResiduals(ra, ot, on, n, fr[ai], fz[ai], zy / sc[6 * ai + 2] - mu, fv[ai], beta - mu * dd);
    }
  }
}

/**
 * A read-only copy of the models for the main thread (compute/encoding.ts `ridge` of models in a thread): rows, centred features, diag(H) per alpha, the
 * responses, the losses, and for each neuron the residuals at its chosen regularisation only (the others
 * are not read there); no operators. O(N n + n D) copied; `withXc` false: the centred features left empty
 * (the reader has them from an earlier snapshot of the same rows), O(N n).
 */
export function ridgeSnapshot(st: RidgeState, withXc = true): RidgeState {
  const b = st.basis;
  const { n, D } = b;
  const N = st.N;
  const chosen = chosenAlphas(st);
  const r = b.alphas.map(() => new Float64Array(0));
  for (let t = 0; t < N; t++) {
    const a = chosen[t];
    if (!r[a].length) r[a] = new Float64Array(N * n);
    r[a].set(st.r[a].subarray(t * n, (t + 1) * n), t * n);
  }
  return {
    basis: { rows: b.rows.slice(), n, D, alphas: b.alphas.slice(), cap: n, exactN: b.exactN, xc: withXc ? b.xc.slice(0, n * D) : new Float64Array(0), xCenter: b.xCenter.slice(), xMean: b.xMean.slice(), kinv: [], z: [], gamma: [], g: b.g.map((g) => g.slice(0, n)) },
    N,
    y: st.y.slice(0, N * n),
    r,
    loss: st.loss.slice(),
  };
}

/** Every buffer of a state (for a transfer without a copy); Kinv's pending term is written first. */
export function ridgeBuffers(s: RidgeState): ArrayBuffer[] {
  settleBorder(s.basis);
  const b = s.basis;
  const all = [b.xc, b.xCenter, b.xMean, ...b.g, ...b.kinv, ...b.z, s.y, ...s.r, s.loss].map((a) => a.buffer as ArrayBuffer);
  return [...new Set(all)].filter((x) => x.byteLength > 0);
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

/**
 * neuronModel of every neuron at the given alphas, the weights of four neurons per pass over the centred
 * features (one pass per neuron read rows x features numbers per neuron: 10 MB each at 1,000 stimuli, out
 * of the cache for every neuron of a report). The same sums in the same order as neuronModel. O(N n D).
 */
export function neuronModels(state: RidgeState, alphaIdx = chosenAlphas(state)): NeuronModel[] {
  const { n, D, xc, xMean, g } = state.basis;
  const N = state.N;
  const out: NeuronModel[] = [];
  const B = 4;
  for (let t0 = 0; t0 < N; t0 += B) {
    const m = Math.min(B, N - t0);
    const w = Array.from({ length: B }, (_, k) => new Float64Array(k < m ? D : 0));
    const coef = (k: number, i: number) => {
      const t = t0 + k;
      const a = alphaIdx[t];
      return state.r[a][t * n + i] * g[a][i]; // dual coefficient
    };
    for (let i = 0; i < n; i++) {
      const o = i * D;
      if (m === B) {
        const [w0, w1, w2, w3] = w;
        const c0 = coef(0, i);
        const c1 = coef(1, i);
        const c2 = coef(2, i);
        const c3 = coef(3, i);
        for (let d = 0; d < D; d++) {
          const x = xc[o + d];
          w0[d] += c0 * x;
          w1[d] += c1 * x;
          w2[d] += c2 * x;
          w3[d] += c3 * x;
        }
      } else {
        for (let k = 0; k < m; k++) {
          const ck = coef(k, i);
          const wk = w[k];
          for (let d = 0; d < D; d++) wk[d] += ck * xc[o + d];
        }
      }
    }
    for (let k = 0; k < m; k++) {
      const t = t0 + k;
      const a = alphaIdx[t];
      const weights = w[k];
      let yMean = 0;
      for (let i = 0; i < n; i++) yMean += state.y[t * n + i] / n;
      let xw = 0;
      for (let d = 0; d < D; d++) xw += xMean[d] * weights[d];
      const r = state.r[a];
      const looPredictions = Float64Array.from({ length: n }, (_, i) => state.y[t * n + i] - r[t * n + i]);
      out.push({ alpha: state.basis.alphas[a], weights, intercept: yMean - xw, looPredictions });
    }
  }
  return out;
}

/** Prediction of a model for one feature vector. */
export function predict(model: NeuronModel, x: ArrayLike<number>): number {
  let s = model.intercept;
  for (let d = 0; d < x.length; d++) s += model.weights[d] * x[d];
  return s;
}

/** Start of row i of a lower triangle packed by rows (RidgeBasis.kinv). */
function tri(i: number): number {
  return (i * (i + 1)) / 2;
}

/** out = K w for a symmetric n x n K given by its packed lower triangle (one pass over it). */
export function symMulVec(k: Float64Array, w: Float64Array, n: number, out: Float64Array): void {
  out.fill(0, 0, n);
  for (let i = 0; i < n; i++) {
    const o = tri(i);
    out[i] += symRow(k, o, w, out, i) + k[o + i] * w[i];
  }
}

/**
 * out = Kinv w while the pending rank-one term (v v^T / s on rows and columns < pn) is written into the
 * packed Kinv, in one pass over it: each number is used for its row's product and for its column's.
 */
export function pendingKinvTimes(k: Float64Array, pv: Float64Array, ps: number, pn: number, w: Float64Array, n: number, out: Float64Array): void {
  out.fill(0, 0, n);
  for (let i = 0; i < n; i++) {
    const o = tri(i);
    if (i < pn) {
      const c = pv[i] / ps;
      const kii = k[o + i] + c * pv[i];
      k[o + i] = kii;
      out[i] += axpySymRow(k, o, c, pv, w, out, i) + kii * w[i];
    } else out[i] += symRow(k, o, w, out, i) + k[o + i] * w[i];
  }
}

/*
 * Kernels of the sweeps above. Each keeps four partial sums: with one, every addition waits for the previous
 * one (about 4 cycles), which bound these loops rather than their multiply-adds or memory. The sums are
 * taken in a different order than a single running sum: equal up to rounding.
 */

/** x[xo, xo + n) . y[yo, yo + n). */
export function dot(x: Float64Array, xo: number, y: Float64Array, yo: number, n: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    s0 += x[xo + i] * y[yo + i];
    s1 += x[xo + i + 1] * y[yo + i + 1];
    s2 += x[xo + i + 2] * y[yo + i + 2];
    s3 += x[xo + i + 3] * y[yo + i + 3];
  }
  for (; i < n; i++) s0 += x[xo + i] * y[yo + i];
  return s0 + s1 + (s2 + s3);
}

/** a[0, n) . y[yo, yo + n) and b[0, n) . y[yo, yo + n) into out[0] and out[1] (one pass over y). */
export function dot2(a: Float64Array, b: Float64Array, y: Float64Array, yo: number, n: number, out: Float64Array): void {
  let s0 = 0;
  let s1 = 0;
  let t0 = 0;
  let t1 = 0;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    const y0 = y[yo + i];
    const y1 = y[yo + i + 1];
    s0 += a[i] * y0;
    s1 += a[i + 1] * y1;
    t0 += b[i] * y0;
    t1 += b[i + 1] * y1;
  }
  if (i < n) {
    s0 += a[i] * y[yo + i];
    t0 += b[i] * y[yo + i];
  }
  out[0] = s0 + s1;
  out[1] = t0 + t1;
}

/** x[xo, xo + n) . y[0, n), then x[xo, xo + n) += d y[0, n) (one pass); returns the dot product of the old x. */
export function dotAxpy(x: Float64Array, xo: number, y: Float64Array, n: number, d: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    const o = xo + i;
    const x0 = x[o];
    const x1 = x[o + 1];
    const x2 = x[o + 2];
    const x3 = x[o + 3];
    const y0 = y[i];
    const y1 = y[i + 1];
    const y2 = y[i + 2];
    const y3 = y[i + 3];
    s0 += x0 * y0;
    s1 += x1 * y1;
    s2 += x2 * y2;
    s3 += x3 * y3;
    x[o] = x0 + d * y0;
    x[o + 1] = x1 + d * y1;
    x[o + 2] = x2 + d * y2;
    x[o + 3] = x3 + d * y3;
  }
  for (; i < n; i++) {
    s0 += x[xo + i] * y[i];
    x[xo + i] += d * y[i];
  }
  return s0 + s1 + (s2 + s3);
}

/**
 * addRow's residual rewrite of one neuron at one alpha: r'_i = r[ro + i] fr_i + a fa_i + b fb_i written to
 * r[wo + i] (wo >= ro: the same buffer's wider layout; last element first, each block read before it is
 * written, so nothing is overwritten unread); returns the sum of r'_i^2.
 */
export function moveResiduals(r: Float64Array, ro: number, wo: number, n: number, fr: Float64Array, fa: Float64Array, a: number, fb: Float64Array, b: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = n - 1;
  for (; i >= 3; i -= 4) {
    const x0 = r[ro + i];
    const x1 = r[ro + i - 1];
    const x2 = r[ro + i - 2];
    const x3 = r[ro + i - 3];
    const y0 = x0 * fr[i] + a * fa[i] + b * fb[i];
    const y1 = x1 * fr[i - 1] + a * fa[i - 1] + b * fb[i - 1];
    const y2 = x2 * fr[i - 2] + a * fa[i - 2] + b * fb[i - 2];
    const y3 = x3 * fr[i - 3] + a * fa[i - 3] + b * fb[i - 3];
    r[wo + i] = y0;
    r[wo + i - 1] = y1;
    r[wo + i - 2] = y2;
    r[wo + i - 3] = y3;
    s0 += y0 * y0;
    s1 += y1 * y1;
    s2 += y2 * y2;
    s3 += y3 * y3;
  }
  for (; i >= 0; i--) {
    const y0 = r[ro + i] * fr[i] + a * fa[i] + b * fb[i];
    r[wo + i] = y0;
    s0 += y0 * y0;
  }
  return s0 + s1 + (s2 + s3);
}

/**
 * Row i of a packed symmetric matrix below its diagonal, k[ko, ko + i): returns its product with w[0, i)
 * (the row's part of (K w)_i) and adds w_i times it to s[0, i) (the columns' parts of (K w)_j, j < i).
 */
function symRow(k: Float64Array, ko: number, w: Float64Array, s: Float64Array, i: number): number {
  const wi = w[i];
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let j = 0;
  for (; j + 3 < i; j += 4) {
    const o = ko + j;
    const k0 = k[o];
    const k1 = k[o + 1];
    const k2 = k[o + 2];
    const k3 = k[o + 3];
    s0 += k0 * w[j];
    s1 += k1 * w[j + 1];
    s2 += k2 * w[j + 2];
    s3 += k3 * w[j + 3];
    s[j] += wi * k0;
    s[j + 1] += wi * k1;
    s[j + 2] += wi * k2;
    s[j + 3] += wi * k3;
  }
  for (; j < i; j++) {
    const kj = k[ko + j];
    s0 += kj * w[j];
    s[j] += wi * kj;
  }
  return s0 + s1 + (s2 + s3);
}

/** symRow after k[ko, ko + i) += c p[0, i) (the row's pending rank-one term written in the same pass). */
function axpySymRow(k: Float64Array, ko: number, c: number, p: Float64Array, w: Float64Array, s: Float64Array, i: number): number {
  const wi = w[i];
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let j = 0;
  for (; j + 3 < i; j += 4) {
    const o = ko + j;
    const k0 = k[o] + c * p[j];
    const k1 = k[o + 1] + c * p[j + 1];
    const k2 = k[o + 2] + c * p[j + 2];
    const k3 = k[o + 3] + c * p[j + 3];
    k[o] = k0;
    k[o + 1] = k1;
    k[o + 2] = k2;
    k[o + 3] = k3;
    s0 += k0 * w[j];
    s1 += k1 * w[j + 1];
    s2 += k2 * w[j + 2];
    s3 += k3 * w[j + 3];
    s[j] += wi * k0;
    s[j + 1] += wi * k1;
    s[j + 2] += wi * k2;
    s[j + 3] += wi * k3;
  }
  for (; j < i; j++) {
    const kj = k[ko + j] + c * p[j];
    k[ko + j] = kj;
    s0 += kj * w[j];
    s[j] += wi * kj;
  }
  return s0 + s1 + (s2 + s3);
}
