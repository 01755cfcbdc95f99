/** Kinv's rank-one term of an absorb left pending (ridge.ts addRow) and written by the next absorb's sweep. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addRow, buildBasis, createRidgeState, neuronModel, recomputeResiduals, ridgeSnapshot, updateRow, type RidgeState } from '../server/src/compute/ridge.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';

const D = 24;
const N = 37;
const alphas = [0.01, 1, 100, 1e4];

function gaussian(r: () => number) {
  return Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
}

/** Max relative difference of every residual of `a` against `b`'s. */
function residualDiff(a: RidgeState, b: RidgeState): number {
  const { n } = b.basis;
  let max = 0;
  for (let al = 0; al < alphas.length; al++) {
    for (let t = 0; t < N; t++) {
      const scale = Math.sqrt(b.loss[al * N + t] / n) + 1e-12;
      for (let i = 0; i < n; i++) max = Math.max(max, Math.abs(a.r[al][t * n + i] - b.r[al][t * n + i]) / scale);
    }
  }
  return max;
}

test('two absorbs in a row: the pending rank-one term of Kinv is written by the second one', () => {
  const r = mulberry32(8);
  const S = 20;
  const features = Float64Array.from({ length: (S + 3) * D }, () => gaussian(r));
  const y = (s: number, t: number) => Math.sin(s + t) * 3 + gaussian(r);
  const y0 = Float64Array.from({ length: N * S }, (_, k) => y(k % S, Math.floor(k / S)));
  const state = createRidgeState(buildBasis(features, D, Array.from({ length: S }, (_, i) => i), alphas, S + 3), N, y0);
  for (let s = S; s < S + 3; s++) addRow(state, s, features.subarray(s * D, (s + 1) * D), Array.from({ length: N }, (_, t) => y(s, t)));
  assert.equal(state.basis.n, S + 3);
  assert.ok(state.basis.pendingBorder, 'the last row\'s term is pending');
  // trials of an old row read Kinv's row with the pending term
  updateRow(state, 3, Array.from({ length: N }, (_, t) => state.y[t * (S + 3) + 3] + 1));
  const refit = createRidgeState(buildBasis(features, D, state.basis.rows, alphas), N, state.y.slice());
  let maxLoss = 0;
  refit.loss.forEach((v, i) => (maxLoss = Math.max(maxLoss, Math.abs(v - state.loss[i]) / v)));
  assert.ok(maxLoss < 1e-8, `losses vs exact refit: ${maxLoss}`);
  assert.ok(residualDiff(state, refit) < 1e-7, 'residuals vs exact refit');
  const snap = ridgeSnapshot(state);
  for (let t = 0; t < N; t++) {
    const a = neuronModel(snap, t);
    const b = neuronModel(refit, t);
    assert.equal(a.alpha, b.alpha);
    a.weights.forEach((v, d) => assert.ok(Math.abs(v - b.weights[d]) <= 1e-7 * (1 + Math.abs(b.weights[d])), `t${t} weight ${d}`));
  }
  // recomputing from the responses (which writes the pending term first) changes nothing
  const before = Float64Array.from(state.loss);
  recomputeResiduals(state);
  assert.equal(state.basis.pendingBorder, undefined);
  before.forEach((v, i) => assert.ok(Math.abs(v - state.loss[i]) <= 1e-8 * v, `loss ${i}`));
});
