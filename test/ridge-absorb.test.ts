/**
 * New stimuli absorbed into the ridge models one at a time (compute/ridge.ts addRow: the block inverse of
 * Kinv_a with the leave-one-out diagonal kept) give the models of an exact refit on all stimuli, and the
 * predictions, chosen regularisation and leave-one-out losses of scikit-learn RidgeCV refitted from scratch.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { addRow, buildBasis, chosenAlphas, createRidgeState, neuronModel, predict, updateRow } from '../server/src/compute/ridge.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { root } from './helpers.ts';

const S = 140;
const D = 90;
const N = 6;
const T = 6;
const alphas = [0.1, 1, 10, 100, 1000, 1e4, 1e5];

const gaussian = (r: () => number) => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());

test('stimuli absorbed one at a time equal an exact refit and scikit-learn RidgeCV', () => {
  const r = mulberry32(41);
  // ReLU-like non-negative features with a shared offset, as a CNN's pooled activations
  const features = Float64Array.from({ length: (S + T) * D }, () => Math.max(0, 0.5 + gaussian(r)));
  const trueW = Array.from({ length: N }, () => Float64Array.from({ length: D }, () => gaussian(r) * (r() < 0.3 ? 1 : 0)));
  const noise = [0.2, 1, 3, 10, 30, 100];
  const yOf = (i: number, t: number) => {
    let s = 5;
    for (let d = 0; d < D; d++) s += features[i * D + d] * trueW[t][d];
    return s + noise[t] * gaussian(r);
  };
  const first = 10;
  const y0 = new Float64Array(N * first);
  for (let t = 0; t < N; t++) for (let i = 0; i < first; i++) y0[t * first + i] = yOf(i, t);
  // room for 4 rows only: adding grows the basis too
  const state = createRidgeState(buildBasis(features, D, Array.from({ length: first }, (_, i) => i), alphas, 4), N, y0);
  for (let s = first; s < S; s++) {
    addRow(state, s, features.subarray(s * D, (s + 1) * D), Array.from({ length: N }, (_, t) => yOf(s, t)));
    // trials of stimuli already in the models between the new ones
    const row = Math.floor(r() * state.basis.n);
    updateRow(state, row, Array.from({ length: N }, (_, t) => 0.5 * state.y[t * state.basis.n + row] + 0.5 * yOf(state.basis.rows[row], t)));
  }
  assert.equal(state.basis.n, S);
  assert.deepEqual(state.basis.rows, Array.from({ length: S }, (_, i) => i));
  // against an exact refit on the same responses
  const exact = createRidgeState(buildBasis(features, D, state.basis.rows, alphas), N, state.y);
  let maxLoss = 0;
  exact.loss.forEach((v, i) => (maxLoss = Math.max(maxLoss, Math.abs(v - state.loss[i]) / v)));
  assert.ok(maxLoss < 1e-8, `leave-one-out losses vs the exact refit: max rel. diff ${maxLoss}`);
  let maxR = 0;
  exact.r.forEach((ra, a) => ra.forEach((v, i) => (maxR = Math.max(maxR, Math.abs(v - state.r[a][i]) / (Math.abs(v) + 1e-9 * Math.sqrt(exact.loss[a * N + Math.floor(i / S)] / S))))));
  assert.ok(maxR < 1e-6, `residuals vs the exact refit: max rel. diff ${maxR}`);
  // against scikit-learn on the final data
  const X = Array.from({ length: S }, (_, i) => Array.from(features.subarray(i * D, (i + 1) * D)));
  const Xtest = Array.from({ length: T }, (_, i) => Array.from(features.subarray((S + i) * D, (S + i + 1) * D)));
  const Y = Array.from({ length: S }, (_, i) => Array.from({ length: N }, (_, t) => state.y[t * S + i]));
  const py = spawnSync('/usr/bin/python3', [path.join(root, 'test/reference/ridge_cv.py')], { input: JSON.stringify({ X, Y, Xtest, alphas }), encoding: 'utf8', maxBuffer: 1 << 26 });
  assert.equal(py.status, 0, py.stderr);
  const ref = JSON.parse(py.stdout) as { alpha: number[]; pred: number[][]; looLoss: number[][] };
  assert.deepEqual(Array.from(chosenAlphas(state), (a) => alphas[a]), ref.alpha, 'chosen alphas agree with RidgeCV');
  assert.ok(new Set(ref.alpha).size >= 3, `the test spans several alphas: ${ref.alpha}`);
  let maxRel = 0;
  for (let t = 0; t < N; t++) {
    const m = neuronModel(state, t);
    Xtest.forEach((x, i) => (maxRel = Math.max(maxRel, Math.abs(predict(m, x) - ref.pred[i][t]) / Math.abs(ref.pred[i][t]))));
    for (let a = 0; a < alphas.length; a++) assert.ok(Math.abs(state.loss[a * N + t] - ref.looLoss[t][a]) <= 1e-6 * ref.looLoss[t][a], `LOO loss t${t} alpha ${alphas[a]}`);
  }
  assert.ok(maxRel < 1e-6, `predictions vs RidgeCV: max rel. diff ${maxRel}`);
});

test('encoding: new stimuli absorbed at their first trial while cheap, pending for the next fit above the budget; both give the exact models', async () => {
  const { addTrial, createNeuronStats } = await import('../server/src/compute/neuron-stats.ts');
  const { createEncoding, refit, stepEncoding } = await import('../server/src/compute/encoding.ts');
  const { computeStart } = await import('./helpers.ts');
  const r = mulberry32(8);
  const Sx = 40;
  const features = Float32Array.from({ length: Sx * D }, () => Math.max(0, gaussian(r)));
  const stimuli = Array.from({ length: Sx }, (_, i) => ({ id: `s${i}`, file: 'x.png', category: i % 2 ? 'a' : 'b' }));
  const featureSet = { features, dim: D, modelId: 'test', backend: 'none' };
  const run = (absorbInlineUnits: number) => {
    const stats = createNeuronStats(computeStart(N), stimuli, null);
    const enc = createEncoding(featureSet, Sx);
    const cfg = { alphas, refitEveryTrials: 5, minStimuli: 6, absorbInlineUnits };
    const r2 = mulberry32(9);
    let maxPending = 0;
    for (let k = 0; k < 160; k++) {
      const s = Math.floor(r2() * Math.min(Sx, 8 + k / 4));
      addTrial(stats, { kind: 'completed', trial: k, stimulusId: `s${s}`, onsetMs: k * 100, seq: k, responses: Float64Array.from({ length: N }, () => 10 * r2()) });
      stepEncoding(enc, stats, s, cfg);
      if (enc.ridge) maxPending = Math.max(maxPending, enc.pending);
    }
    return { enc, stats, cfg, maxPending };
  };
  const cheap = run(Infinity);
  const costly = run(0);
  assert.equal(cheap.maxPending, 0, 'every new stimulus absorbed at its first trial');
  assert.ok(costly.maxPending > 0, 'above the budget new stimuli wait for a fit');
  assert.ok(cheap.enc.refits < costly.enc.refits, `fewer exact refits when absorbing (${cheap.enc.refits} vs ${costly.enc.refits})`);
  for (const { enc, stats, cfg } of [cheap, costly]) {
    stepEncoding(enc, stats, undefined, cfg, true);
    const exact = refit(createEncoding(featureSet, Sx), stats, cfg);
    assert.deepEqual(enc.ridge!.basis.rows.slice().sort((a, b) => a - b), exact.ridge!.basis.rows);
    exact.ridge!.loss.forEach((v, i) => assert.ok(Math.abs(v - enc.ridge!.loss[i]) <= 1e-8 * v));
  }
});
