/**
 * Model reports off the event loop (workers/report-worker.ts) with reference images cached per (channel,
 * driver) (compute/reference-cache.ts): the cached and incremental reference images equal the plain
 * per-driver search of compute/drivers.ts, and at a realistic size (hundreds of stimuli in four categories,
 * planted drivers) a repeated report, a GET /models and a snapshot recompute no reference image of a
 * channel whose readout did not change.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Stimulus } from '@sharedlens/shared';
import { referenceImage } from '../server/src/compute/drivers.ts';
import { bestReferences, createReferenceCache, referenceImages } from '../server/src/compute/reference-cache.ts';
import { addTrial, createNeuronStats, type NeuronStatsState } from '../server/src/compute/neuron-stats.ts';
import { createEncoding, refit, type EncodingState } from '../server/src/compute/encoding.ts';
import { modelReport } from '../server/src/compute/model-report.ts';
import { channelStats } from '../server/src/compute/neuron-stats.ts';
import { mulberry32, poisson } from '../server/src/sim/synthetic-neurons.ts';
import { ModelReports, reportJob } from '../server/src/workers/report-client.ts';
import { AnalysisGate } from '../server/src/workers/analysis-gate.ts';
import { loadConfig } from '../server/src/config.ts';
import { computeStart, root } from './helpers.ts';

const D = 48;

function randomFeatures(S: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: S * D }, () => Math.max(0, r() * 2 - 0.6));
}

test('batched reference images equal the per-driver search; added candidates give the from-scratch result', () => {
  const S = 120;
  const features = randomFeatures(S, 1);
  const r = mulberry32(2);
  const w = Float64Array.from({ length: D }, () => r() - 0.3);
  const drivers = [3, 17, 40, 99];
  const candidates = Array.from({ length: 60 }, (_, i) => 60 + i);
  const batched = bestReferences(w, features, D, drivers, candidates);
  drivers.forEach((d, k) => {
    const plain = referenceImage(w, features, D, d, candidates)!;
    assert.equal(batched[k]!.stimulus, plain.stimulus);
    assert.ok(Math.abs(batched[k]!.similarity - plain.similarity) < 1e-12);
  });
  // the cache first sees half the candidates, then all: same answer as a search over all
  const cache = createReferenceCache(0.98);
  referenceImages(cache, 0, w, features, D, drivers, candidates.slice(0, 30));
  assert.equal(cache.recomputed, 4);
  const grown = referenceImages(cache, 0, w, features, D, drivers, candidates);
  assert.equal(cache.recomputed, 4, 'new candidates only: no recomputation');
  assert.equal(cache.extended, 4);
  assert.deepEqual(grown.map((x) => x!.stimulus), batched.map((x) => x!.stimulus));
  // a materially different readout: recomputed, equal to the plain search with the new weights
  const w2 = Float64Array.from({ length: D }, () => r() - 0.5);
  const again = referenceImages(cache, 0, w2, features, D, drivers, candidates);
  assert.equal(cache.recomputed, 8);
  drivers.forEach((d, k) => assert.equal(again[k]!.stimulus, referenceImage(w2, features, D, d, candidates)!.stimulus));
});

/** A session of S stimuli in 4 categories, C channels preferring 'a' with planted out-of-category drivers, 6 repeats. */
function session(S: number, C: number): { stats: NeuronStatsState; enc: EncodingState; features: Float32Array } {
  const cats = ['a', 'b', 'c', 'd'];
  const stimuli: Stimulus[] = Array.from({ length: S }, (_, i) => ({ id: `s${i}`, file: 'x.png', category: cats[i % 4] }));
  const features = randomFeatures(S, 3);
  const stats = createNeuronStats(computeStart(C), stimuli, null);
  const r = mulberry32(4);
  const rate = Array.from({ length: C }, (_, c) => Float64Array.from(stimuli, (s, i) => (s.category === 'a' ? 6 : 2) + ((i + c) % 23 === 0 ? 14 : 0) + r()));
  let k = 0;
  for (let rep = 0; rep < 6; rep++) {
    for (let s = 0; s < S; s++) addTrial(stats, { kind: 'completed', trial: k, stimulusId: `s${s}`, onsetMs: k * 100, seq: k++, responses: Float64Array.from({ length: C }, (_, c) => poisson(r, rate[c][s])) });
  }
  const cfg = loadConfig(root, {}).compute;
  const enc = refit(createEncoding({ features, dim: D, modelId: 'test', backend: 'none' }, S), stats, { alphas: cfg.alphas, refitEveryTrials: 10, minStimuli: 6 });
  return { stats, enc, features };
}

test('reports in the worker: the same report as inline; no reference image recomputed while readouts stay', async () => {
  const { stats, enc, features } = session(320, 24);
  const cfg = loadConfig(root, {}).compute;
  const ecfg = { alphas: cfg.alphas, refitEveryTrials: 10, minStimuli: 6 };
  const rule = { ...cfg.drivers, minReliability: cfg.minReliability };
  const reports = new ModelReports({ minIntervalMs: 0, minWeightCosine: 0.98, onError: (m) => assert.fail(m) });
  const done = async () => {
    while (reports.pending('s')) await new Promise((r) => setTimeout(r, 20));
  };
  try {
    reports.request('s', features, () => reportJob('s', stats, enc, ecfg, rule, 0.98));
    await done();
    const first = reports.report('s')!;
    const inline = modelReport('s', stats, enc, channelStats(stats), ecfg, rule);
    // equal up to rounding (the batched similarity sums in another order)
    const rounded = (x: unknown) => JSON.parse(JSON.stringify(x, (_k, v) => (typeof v === 'number' ? Number(v.toPrecision(12)) : v)));
    assert.deepEqual(rounded(first), rounded(inline), 'the worker reports what the inline computation reports');
    const drivers = first.channels.reduce((a, c) => a + c.drivers.length, 0);
    assert.ok(drivers >= 24, `planted drivers found (${drivers})`);
    assert.ok(new Set(first.channels.flatMap((c) => c.drivers.map((d) => d.category))).size >= 3, 'drivers in several categories');
    assert.equal(reports.counts.referencesRecomputed, drivers);
    // reading the report (GET /models, dashboard snapshots, map jobs) computes nothing
    for (let i = 0; i < 5; i++) reports.report('s');
    assert.equal(reports.counts.reports, 1);
    // a new report with unchanged readouts recomputes no reference image
    reports.request('s', features, () => reportJob('s', stats, enc, ecfg, rule, 0.98));
    await done();
    assert.equal(reports.counts.reports, 2);
    assert.equal(reports.counts.referencesRecomputed, drivers, 'no readout changed: nothing recomputed');
    assert.deepEqual(reports.report('s')!.channels, first.channels);
    // channel 0's responses turned upside down: only its drivers are recomputed
    const C = stats.C;
    for (let s = 0; s < stats.stimuli.length; s++) stats.mean[s * C] = 20 - stats.mean[s * C];
    const changed = refit(createEncoding(enc.featureSet, stats.stimuli.length), stats, ecfg);
    reports.request('s', features, () => reportJob('s', stats, changed, ecfg, rule, 0.98));
    await done();
    const third = reports.report('s')!;
    const recomputed = reports.counts.referencesRecomputed - drivers;
    assert.ok(recomputed <= third.channels[0].drivers.length, `only channel 0's drivers recomputed (${recomputed})`);
    assert.deepEqual(third.channels.slice(1).map((c) => c.drivers), first.channels.slice(1).map((c) => c.drivers));
  } finally {
    await reports.close();
  }
});

test('reports after the first send only the changed statistics rows; the thread\'s report still equals the inline one', async () => {
  const { stats, enc, features } = session(120, 12);
  const cfg = loadConfig(root, {}).compute;
  const ecfg = { alphas: cfg.alphas, refitEveryTrials: 10, minStimuli: 6 };
  const rule = { ...cfg.drivers, minReliability: cfg.minReliability };
  const reports = new ModelReports({ minIntervalMs: 0, minWeightCosine: 0.98, onError: (m) => assert.fail(m) });
  const rounded = (x: unknown) => JSON.parse(JSON.stringify(x, (_k, v) => (typeof v === 'number' ? Number(v.toPrecision(12)) : v)));
  const done = async () => {
    while (reports.pending('s')) await new Promise((r) => setTimeout(r, 20));
  };
  const ask = () => reports.request('s', features, () => reportJob('s', stats, enc, ecfg, rule, 0.98));
  try {
    ask();
    await done();
    const r = mulberry32(9);
    // new trials of three stimuli, one of them a stimulus never seen before in that half
    for (const [k, s] of [[9000, 3], [9001, 50], [9002, 3], [9003, 117]]) addTrial(stats, { kind: 'completed', trial: k, stimulusId: `s${s}`, onsetMs: k * 100, seq: k, responses: Float64Array.from({ length: stats.C }, () => poisson(r, 8)) });
    ask();
    await done();
    assert.deepEqual(rounded(reports.report('s')), rounded(modelReport('s', stats, enc, channelStats(stats), ecfg, rule)), 'after a delta: the same report as inline');
    assert.equal(reports.counts.reports, 2);
    assert.equal(reports.counts.statsWhole, 1, 'the statistics went whole once');
    assert.equal(reports.counts.statsRows, 3, 'then only the rows of stimuli 3, 50 and 117');
    assert.equal(reports.reportJson('s'), JSON.stringify(reports.report('s')), 'GET /models sends the thread\'s JSON text of the same report');
  } finally {
    await reports.close();
  }
});

test('while a rig records, a report waits for the map pair holding the analysis turn, then starts with the latest statistics', async () => {
  const { stats, enc, features } = session(120, 12);
  const cfg = loadConfig(root, {}).compute;
  const ecfg = { alphas: cfg.alphas, refitEveryTrials: 10, minStimuli: 6 };
  const rule = { ...cfg.drivers, minReliability: cfg.minReliability };
  const gate = new AnalysisGate(() => 1);
  const reports = new ModelReports({ minIntervalMs: 0, minWeightCosine: 0.98, onError: (m) => assert.fail(m), gate });
  const rounded = (x: unknown) => JSON.parse(JSON.stringify(x, (_k, v) => (typeof v === 'number' ? Number(v.toPrecision(12)) : v)));
  let endPair = (): void => assert.fail('no pair started');
  gate.run((done) => (endPair = done)); // a pair's maps hold the only turn
  let built = 0;
  try {
    reports.request('s', features, () => (built++, reportJob('s', stats, enc, ecfg, rule, 0.98)));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(built, 0, 'no report job built while the pair runs');
    assert.ok(reports.pending('s'), 'the report is pending');
    // a trial meanwhile: the job, built when its turn comes, has it
    const r = mulberry32(12);
    addTrial(stats, { kind: 'completed', trial: 9100, stimulusId: 's7', onsetMs: 910_000, seq: 9100, responses: Float64Array.from({ length: stats.C }, () => poisson(r, 8)) });
    endPair();
    while (reports.pending('s')) await new Promise((r) => setTimeout(r, 20));
    assert.equal(built, 1);
    assert.equal(gate.busy, 0, 'the report gave its turn back');
    assert.deepEqual(rounded(reports.report('s')), rounded(modelReport('s', stats, enc, channelStats(stats), ecfg, rule)), 'the report of the statistics with the trial');
  } finally {
    await reports.close();
  }
});
