/**
 * The ridge sweeps' kernels (compute/ridge.ts dot, dotAxpy, moveResiduals, and symMulVec, pendingKinvTimes
 * (symRow, axpySymRow) on Kinv's packed lower triangle: four partial sums, unrolled by four) against plain loops on full
 * matrices, at every length around the unrolling (0 to 13) and at offsets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dot, dotAxpy, moveResiduals, pendingKinvTimes, symMulVec } from '../server/src/compute/ridge.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';

const r = mulberry32(17);
const vec = (n: number) => Float64Array.from({ length: n }, () => 2 * r() - 1);
const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-13 * (1 + Math.abs(b)), `${what}: ${a} vs ${b}`);

test('dot and dotAxpy equal plain loops at every length and offset', () => {
  for (let n = 0; n <= 13; n++) {
    for (const off of [0, 1, 3, 6]) {
      const x = vec(off + n + 2);
      const y = vec(off + n + 1);
      let plain = 0;
      for (let i = 0; i < n; i++) plain += x[off + i] * y[1 + i];
      close(dot(x, off, y, 1, n), plain, `dot n=${n} off=${off}`);
      // dotAxpy: the old x's product, then x += d y (elements outside [off, off + n) untouched)
      const d = 0.37;
      const x2 = x.slice();
      const yy = vec(n);
      let p2 = 0;
      for (let i = 0; i < n; i++) p2 += x[off + i] * yy[i];
      close(dotAxpy(x2, off, yy, n, d), p2, `dotAxpy n=${n}`);
      x2.forEach((v, k) => close(v, k >= off && k < off + n ? x[k] + d * yy[k - off] : x[k], `dotAxpy x[${k}]`));
    }
  }
});

test('moveResiduals: every neuron moved to the wider layout in place, last first, equals the plain formula', () => {
  for (let n = 0; n <= 13; n++) {
    const N = 5;
    const m = n + 1;
    const buf = vec(N * m);
    const old = buf.slice(0, N * n);
    const fr = vec(n);
    const fa = vec(n);
    const fb = vec(n);
    const a = 0.8;
    const b = -2.1;
    const sums: number[] = [];
    for (let t = N - 1; t >= 0; t--) sums[t] = moveResiduals(buf, t * n, t * m, n, fr, fa, a, fb, b);
    for (let t = 0; t < N; t++) {
      let ss = 0;
      for (let i = 0; i < n; i++) {
        const want = old[t * n + i] * fr[i] + a * fa[i] + b * fb[i];
        close(buf[t * m + i], want, `n=${n} t=${t} i=${i}`);
        ss += want * want;
      }
      close(sums[t], ss, `sum of squares n=${n} t=${t}`);
    }
  }
});

/** A random symmetric n x n matrix, full (row-major) and as its lower triangle packed by rows. */
function symmetric(n: number): { full: Float64Array; packed: Float64Array } {
  const full = new Float64Array(n * n);
  const packed = new Float64Array((n * (n + 1)) / 2);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      const v = 2 * r() - 1;
      full[i * n + j] = v;
      full[j * n + i] = v;
      packed[(i * (i + 1)) / 2 + j] = v;
    }
  }
  return { full, packed };
}

test('packed symmetric kernels: symMulVec, and pendingKinvTimes with its rank-one term written, equal K w on the full matrix', () => {
  for (let n = 0; n <= 13; n++) {
    const { full, packed } = symmetric(n);
    const w = vec(n);
    const want = new Float64Array(n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) want[i] += full[i * n + j] * w[j];
    const out = vec(n); // not zero: symMulVec clears it
    symMulVec(packed, w, n, out);
    out.forEach((v, i) => close(v, want[i], `symMulVec n=${n} i=${i}`));
    // addRow's sweep: rows and columns below pn get the rank-one term p_i p_j / sc written in the same pass
    const pn = Math.floor(n / 2) + (n % 3 === 0 ? 0 : 1);
    const p = vec(n);
    const sc = 0.7;
    const updated = full.slice();
    for (let i = 0; i < pn; i++) for (let j = 0; j < pn; j++) updated[i * n + j] += (p[i] / sc) * p[j];
    const want2 = new Float64Array(n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) want2[i] += updated[i * n + j] * w[j];
    const k = packed.slice();
    const s = vec(n); // not zero: cleared
    pendingKinvTimes(k, p, sc, pn, w, n, s);
    s.forEach((v, i) => close(v, want2[i], `sweep n=${n} i=${i}`));
    for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) close(k[(i * (i + 1)) / 2 + j], updated[i * n + j], `written term n=${n} (${i}, ${j})`);
  }
});
