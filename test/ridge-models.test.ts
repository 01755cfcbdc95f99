/**
 * Batched models for reports: neuronModels (four neurons per pass over the features) against neuronModel,
 * and a report's generalisation score (category kernel and dual coefficients) against scikit-learn RidgeCV
 * fitted on the preferred category and predicting the other stimuli.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import type { Stimulus } from '@sharedlens/shared';
import { loadConfig } from '../server/src/config.ts';
import { createEncoding, refit } from '../server/src/compute/encoding.ts';
import { modelReport } from '../server/src/compute/model-report.ts';
import { addTrial, channelStats, createNeuronStats, pearson } from '../server/src/compute/neuron-stats.ts';
import { buildBasis, chosenAlphas, createRidgeState, neuronModel, neuronModels } from '../server/src/compute/ridge.ts';
import { mulberry32, poisson } from '../server/src/sim/synthetic-neurons.ts';
import { computeStart, root } from './helpers.ts';

test('neuronModels equals neuronModel for every neuron (including a last block of fewer than four)', () => {
  const r = mulberry32(3);
  const S = 30;
  const D = 17;
  const N = 11;
  const features = Float64Array.from({ length: S * D }, () => r() - 0.2);
  const y = Float64Array.from({ length: N * S }, () => 3 * r());
  const state = createRidgeState(buildBasis(features, D, Array.from({ length: S }, (_, i) => i), [0.1, 1, 10, 100]), N, y);
  const alphaIdx = chosenAlphas(state);
  assert.ok(new Set(alphaIdx).size >= 1);
  const all = neuronModels(state, alphaIdx);
  assert.equal(all.length, N);
  all.forEach((m, t) => assert.deepEqual(m, neuronModel(state, t, alphaIdx[t]), `neuron ${t}`));
});

test('a report\'s generalisation score equals scikit-learn RidgeCV fitted on the preferred category', () => {
  const S = 64;
  const D = 12;
  const C = 5;
  const cats = ['a', 'b'];
  const stimuli: Stimulus[] = Array.from({ length: S }, (_, i) => ({ id: `s${i}`, file: 'x.png', category: cats[i % 2] }));
  const r = mulberry32(12);
  const features = Float32Array.from({ length: S * D }, () => Math.max(0, r() - 0.3));
  const stats = createNeuronStats(computeStart(C), stimuli, null);
  // category-a preferring channels whose responses follow the features
  const w = Array.from({ length: C }, () => Float64Array.from({ length: D }, () => 4 * r()));
  const rate = (s: number, c: number) => (stimuli[s].category === 'a' ? 6 : 1) + w[c].reduce((acc, v, d) => acc + v * features[s * D + d], 0);
  let k = 0;
  for (let rep = 0; rep < 5; rep++) for (let s = 0; s < S; s++) addTrial(stats, { kind: 'completed', trial: k, stimulusId: `s${s}`, onsetMs: k * 100, seq: k++, responses: Float64Array.from({ length: C }, (_, c) => poisson(r, rate(s, c))) });
  const cfg = loadConfig(root, {}).compute;
  const ecfg = { alphas: cfg.alphas, refitEveryTrials: 10, minStimuli: 6 };
  const enc = refit(createEncoding({ features, dim: D, modelId: 'test', backend: 'none' }, S), stats, ecfg);
  const channels = channelStats(stats);
  const report = modelReport('s', stats, enc, channels, ecfg, { ...cfg.drivers, minReliability: cfg.minReliability });
  const rows = enc.ridge!.basis.rows;
  let checked = 0;
  report.channels.forEach((ch, c) => {
    const pref = channels[c].preferredCategory;
    if (!pref) return;
    const kk = stats.categories.indexOf(pref);
    const inCat = rows.filter((s) => stats.catOfStim[s] === kk);
    const out = rows.filter((s) => stats.catOfStim[s] !== kk);
    const X = inCat.map((s) => Array.from(features.subarray(s * D, (s + 1) * D)));
    const Y = inCat.map((s) => [stats.mean[s * C + c]]);
    const Xtest = out.map((s) => Array.from(features.subarray(s * D, (s + 1) * D)));
    const py = spawnSync('/usr/bin/python3', [path.join(root, 'test/reference/ridge_cv.py')], { input: JSON.stringify({ X, Y, Xtest, alphas: ecfg.alphas }), encoding: 'utf8' });
    assert.equal(py.status, 0, py.stderr);
    const ref = JSON.parse(py.stdout) as { pred: number[][] };
    const expected = pearson(ref.pred.map((p) => p[0]), out.map((s) => stats.mean[s * C + c]))!;
    const got = ch.scores!.generalisationR!;
    assert.ok(Math.abs(got - expected) < 1e-6, `channel ${c}: generalisation r ${got} vs scikit-learn ${expected}`);
    assert.equal(ch.scores!.generalisationStimuli, out.length);
    checked++;
  });
  assert.ok(checked >= 3, `channels with a preferred category checked: ${checked}`);
});
