/**
 * The ridge sweeps' kernels (compute/ridge.ts dot, dotAxpy, axpyDot, moveResiduals: four partial sums,
 * unrolled by four) against plain loops, at every length around the unrolling (0 to 13) and at offsets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { axpyDot, dot, dotAxpy, moveResiduals } from '../server/src/compute/ridge.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';

const r = mulberry32(17);
const vec = (n: number) => Float64Array.from({ length: n }, () => 2 * r() - 1);
const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-13 * (1 + Math.abs(b)), `${what}: ${a} vs ${b}`);

test('dot, dotAxpy and axpyDot equal plain loops at every length and offset', () => {
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
      // axpyDot: k += c p, then the new k's product with w
      const k0 = x.slice();
      const p = vec(n);
      const w = vec(n);
      const c = -1.9;
      let p3 = 0;
      for (let i = 0; i < n; i++) p3 += (x[off + i] + c * p[i]) * w[i];
      close(axpyDot(k0, off, c, p, w, n), p3, `axpyDot n=${n}`);
      k0.forEach((v, k) => close(v, k >= off && k < off + n ? x[k] + c * p[k - off] : x[k], `axpyDot k[${k}]`));
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
