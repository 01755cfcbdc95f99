import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addRow, buildBasis, createRidgeState, LAZY_TRIALS, neuronModel, recomputeResiduals, residualRow, ridgeSnapshot, settleResiduals, updateRow, type RidgeState } from '../server/src/compute/ridge.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';

const D = 24;
const N = 37; // not a multiple of LAZY_TRIALS: the fold shares are uneven
const alphas = [0.01, 1, 100, 1e4];

function gaussian(r: () => number) {
  return Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
}

/** Max relative difference of every residual of `a` (read through residualRow) against `b`'s stored ones. */
function residualDiff(a: RidgeState, b: RidgeState): number {
  const { n } = b.basis;
  let max = 0;
  for (let al = 0; al < alphas.length; al++) {
    for (let t = 0; t < N; t++) {
      const row = residualRow(a, al, t);
      const scale = Math.sqrt(b.loss[al * N + t] / n) + 1e-12;
      for (let i = 0; i < n; i++) max = Math.max(max, Math.abs(row[i] - b.r[al][t * n + i]) / scale);
    }
  }
  return max;
}

test('deferred residual writes: residuals, losses, snapshots and an absorb equal the exact recomputation', () => {
  const r = mulberry32(21);
  const S = 30;
  const features = Float64Array.from({ length: (S + 1) * D }, () => Math.max(0, 0.3 + gaussian(r)));
  const y0 = Float64Array.from({ length: N * S }, () => 3 + 2 * gaussian(r));
  const state = createRidgeState(buildBasis(features, D, Array.from({ length: S }, (_, i) => i), alphas, S + 1), N, y0);
  // more trials than the fold period, with neurons whose means did not move (delta 0) in some trials
  for (let k = 0; k < 3 * LAZY_TRIALS + 5; k++) {
    const row = Math.floor(r() * S);
    updateRow(state, row, Array.from({ length: N }, (_, t) => (r() < 0.3 ? state.y[t * S + row] : state.y[t * S + row] + gaussian(r))));
  }
  assert.ok(state.lazy, 'some residual writes are pending');
  const pending = Array.from({ length: N }, (_, t) => state.lazy!.applied[t] < state.lazy!.seq - 1).filter(Boolean).length;
  assert.ok(pending > N / 2, `most neurons have pending trials: ${pending} of ${N}`);
  const exact = createRidgeState(state.basis, N, state.y.slice());
  exact.lazy = undefined;
  recomputeResiduals(exact);
  let maxLoss = 0;
  exact.loss.forEach((v, i) => (maxLoss = Math.max(maxLoss, Math.abs(v - state.loss[i]) / v)));
  assert.ok(maxLoss < 1e-9, `losses vs recomputation: ${maxLoss}`);
  assert.ok(residualDiff(state, exact) < 1e-9, 'residuals read with their pending trials');
  // the snapshot (main thread) and a neuron's model read the pending trials too
  const snap = ridgeSnapshot(state);
  for (let t = 0; t < N; t++) {
    const a = neuronModel(snap, t);
    const b = neuronModel(exact, t);
    assert.equal(a.alpha, b.alpha);
    a.looPredictions.forEach((v, i) => assert.ok(Math.abs(v - b.looPredictions[i]) <= 1e-9 * (1 + Math.abs(b.looPredictions[i])), `snapshot t${t} row ${i}`));
    const c = neuronModel(state, t);
    c.weights.forEach((v, d) => assert.ok(Math.abs(v - b.weights[d]) <= 1e-9 * (1 + Math.abs(b.weights[d])), `model t${t} weight ${d}`));
  }
  // an absorb with trials pending, then settled: equal to an exact fit on all rows
  addRow(state, S, features.subarray(S * D, (S + 1) * D), Array.from({ length: N }, () => 3 + gaussian(r)));
  assert.equal(state.lazy, undefined, 'the absorb folded the pending trials');
  for (let k = 0; k < LAZY_TRIALS + 3; k++) {
    const row = Math.floor(r() * (S + 1));
    updateRow(state, row, Array.from({ length: N }, (_, t) => state.y[t * (S + 1) + row] + gaussian(r)));
  }
  const refit = createRidgeState(buildBasis(features, D, state.basis.rows, alphas), N, state.y.slice());
  let maxLoss2 = 0;
  refit.loss.forEach((v, i) => (maxLoss2 = Math.max(maxLoss2, Math.abs(v - state.loss[i]) / v)));
  assert.ok(maxLoss2 < 1e-8, `losses vs exact refit after the absorb: ${maxLoss2}`);
  assert.ok(residualDiff(state, refit) < 1e-7, 'residuals vs exact refit after the absorb');
  settleResiduals(state);
  assert.equal(state.lazy, undefined);
  assert.ok(residualDiff(state, refit) < 1e-7, 'settled residuals vs exact refit');
});

test('two absorbs in a row: the pending rank-one term of Kinv is written by the second one', () => {
  const r = mulberry32(8);
  const S = 20;
  const features = Float64Array.from({ length: (S + 3) * D }, () => gaussian(r));
  const y = (s: number, t: number) => Math.sin(s + t) * 3 + gaussian(r);
  const y0 = Float64Array.from({ length: N * S }, (_, k) => y(k % S, Math.floor(k / S)));
  const state = createRidgeState(buildBasis(features, D, Array.from({ length: S }, (_, i) => i), alphas, S + 3), N, y0);
  for (let s = S; s < S + 3; s++) addRow(state, s, features.subarray(s * D, (s + 1) * D), Array.from({ length: N }, (_, t) => y(s, t)));
  assert.ok(state.basis.pendingBorder, 'the last row\'s term is pending');
  // trials of an old row read Kinv's row with the pending term
  updateRow(state, 3, Array.from({ length: N }, (_, t) => state.y[t * (S + 3) + 3] + 1));
  const refit = createRidgeState(buildBasis(features, D, state.basis.rows, alphas), N, state.y.slice());
  let maxLoss = 0;
  refit.loss.forEach((v, i) => (maxLoss = Math.max(maxLoss, Math.abs(v - state.loss[i]) / v)));
  assert.ok(maxLoss < 1e-8, `losses vs exact refit: ${maxLoss}`);
  assert.ok(residualDiff(state, refit) < 1e-7, 'residuals vs exact refit');
  // recomputing from the responses (which writes the pending term first) changes nothing
  const before = Float64Array.from(state.loss);
  recomputeResiduals(state);
  assert.equal(state.basis.pendingBorder, undefined);
  before.forEach((v, i) => assert.ok(Math.abs(v - state.loss[i]) <= 1e-8 * v, `loss ${i}`));
});
