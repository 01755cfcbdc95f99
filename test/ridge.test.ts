import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { buildBasis, chosenAlphas, createRidgeState, neuronModel, predict, recomputeResiduals, updateRow } from '../server/src/compute/ridge.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { root } from './helpers.ts';

const S = 48;
const D = 80;
const N = 7;
const alphas = [0.01, 0.1, 1, 10, 100, 1000, 1e4];

function gaussian(r: () => number) {
  return Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
}

function sklearn(X: number[][], Y: number[][], Xtest: number[][]) {
  const py = spawnSync('/usr/bin/python3', [path.join(root, 'test/reference/ridge_cv.py')], { input: JSON.stringify({ X, Y, Xtest, alphas }), encoding: 'utf8', maxBuffer: 1 << 26 });
  assert.equal(py.status, 0, py.stderr);
  return JSON.parse(py.stdout) as { alpha: number[]; pred: number[][]; coef: number[][]; intercept: number[]; looLoss: number[][] };
}

test('ridge refreshed trial by trial equals scikit-learn RidgeCV refitted on the final data', () => {
  const r = mulberry32(99);
  const features = Float64Array.from({ length: (S + 5) * D }, () => gaussian(r));
  const X = Array.from({ length: S }, (_, i) => Array.from(features.subarray(i * D, (i + 1) * D)));
  const Xtest = Array.from({ length: 5 }, (_, i) => Array.from(features.subarray((S + i) * D, (S + i + 1) * D)));
  // neurons with different signal-to-noise, so different alphas win
  const trueW = Array.from({ length: N }, () => Float64Array.from({ length: D }, () => gaussian(r)));
  const noise = [0.1, 1, 3, 10, 30, 100, 300];
  const yOf = (i: number, t: number) => X[i].reduce((s, x, d) => s + x * trueW[t][d], 0) + noise[t] * gaussian(r);
  const y0 = new Float64Array(N * S);
  for (let t = 0; t < N; t++) for (let i = 0; i < S; i++) y0[t * S + i] = yOf(i, t);
  const basis = buildBasis(features, D, Array.from({ length: S }, (_, i) => i), alphas);
  const state = createRidgeState(basis, N, y0);
  // 200 trials, each moving one stimulus mean for every neuron
  for (let k = 0; k < 200; k++) {
    const row = Math.floor(r() * S);
    updateRow(state, row, Array.from({ length: N }, (_, t) => yOf(row, t)));
  }
  const Y = Array.from({ length: S }, (_, i) => Array.from({ length: N }, (_, t) => state.y[t * S + i]));
  const ref = sklearn(X, Y, Xtest);
  const chosen = chosenAlphas(state);
  assert.deepEqual(Array.from(chosen, (a) => alphas[a]), ref.alpha, 'chosen alphas agree with RidgeCV');
  assert.ok(new Set(ref.alpha).size >= 3, `the test spans several alphas: ${ref.alpha}`);
  let maxRel = 0;
  for (let t = 0; t < N; t++) {
    const m = neuronModel(state, t);
    Xtest.forEach((x, i) => {
      const rel = Math.abs(predict(m, x) - ref.pred[i][t]) / Math.max(1e-12, Math.abs(ref.pred[i][t]));
      maxRel = Math.max(maxRel, rel);
    });
    for (let a = 0; a < alphas.length; a++) {
      const ours = state.loss[a * N + t];
      assert.ok(Math.abs(ours - ref.looLoss[t][a]) <= 1e-6 * ref.looLoss[t][a], `LOO loss t${t} alpha ${alphas[a]}: ${ours} vs ${ref.looLoss[t][a]}`);
    }
  }
  assert.ok(maxRel < 1e-4, `max relative difference of predictions ${maxRel}`);
  // the incremental losses equal an exact recomputation from the responses
  const inc = Float64Array.from(state.loss);
  recomputeResiduals(state);
  inc.forEach((v, i) => assert.ok(Math.abs(v - state.loss[i]) <= 1e-8 * Math.abs(state.loss[i]), `drift at ${i}`));
});

test('leave-one-out predictions never use the left-out stimulus', () => {
  const r = mulberry32(5);
  const n = 20;
  const d = 30;
  const features = Float64Array.from({ length: n * d }, () => gaussian(r));
  const y = Float64Array.from({ length: n }, () => gaussian(r));
  const basis = buildBasis(features, d, Array.from({ length: n }, (_, i) => i), [1]);
  const m = neuronModel(createRidgeState(basis, 1, y), 0, 0);
  // refit without stimulus 3 and predict it: must equal the closed-form leave-one-out prediction
  const rows = Array.from({ length: n }, (_, i) => i).filter((i) => i !== 3);
  const b2 = buildBasis(features, d, rows, [1]);
  const m2 = neuronModel(createRidgeState(b2, 1, Float64Array.from(rows, (i) => y[i])), 0, 0);
  const direct = predict(m2, features.subarray(3 * d, 4 * d));
  assert.ok(Math.abs(direct - m.looPredictions[3]) < 1e-9, `${direct} vs ${m.looPredictions[3]}`);
});
