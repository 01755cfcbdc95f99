import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BehaviorSubject, NEVER, Subject, map, of } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import type { SessionStart, Stimulus } from '@sharedlens/shared';
import { addTrial, createNeuronStats } from '../server/src/compute/neuron-stats.ts';
import { createEncoding, fitJob, refit, stepEncoding, type EncodingState, type FeatureSet, type RefitJob } from '../server/src/compute/encoding.ts';
import { referenceImage, weightedCosine } from '../server/src/compute/drivers.ts';
import { neuronModel, predict } from '../server/src/compute/ridge.ts';
import { encodingModels } from '../server/src/pipeline/encoding-models.ts';
import type { StatsUpdate } from '../server/src/pipeline/neuron-statistics.ts';
import { createFeatureNeurons, mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { pearson } from '../server/src/compute/neuron-stats.ts';
import { computeStart } from './helpers.ts';

const C = 3;
const D = 40;
const S = 30;
const stimuli: Stimulus[] = Array.from({ length: S }, (_, i) => ({ id: `s${i}`, file: 'x.png', category: i < 10 ? 'body' : i < 20 ? 'face' : 'object' }));
const start: SessionStart = computeStart(C);
const cfg = { alphas: [0.1, 1, 10, 100, 1000], refitEveryTrials: 5, minStimuli: 6 };
const r = mulberry32(4);
const gauss = () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
const featureSet: FeatureSet = { features: Float32Array.from({ length: S * D }, () => Math.max(0, gauss())), dim: D, modelId: 'test', backend: 'cpu' };
const trueW = Array.from({ length: C }, () => Float64Array.from({ length: D }, gauss));
const respond = (s: number) => Float64Array.from({ length: C }, (_, c) => trueW[c].reduce((a, w, d) => a + w * featureSet.features[s * D + d], 0) + gauss());

test('models refreshed trial by trial (with stimuli appearing on the way) equal an exact refit on the final data', () => {
  const stats = createNeuronStats(start, stimuli, null);
  const enc = createEncoding(featureSet, S);
  for (let k = 0; k < 400; k++) {
    const s = Math.floor(r() * (k < 100 ? 15 : S)); // half the set appears later
    addTrial(stats, { kind: 'completed', trial: k, stimulusId: `s${s}`, onsetMs: k * 400, seq: k, responses: respond(s) });
    stepEncoding(enc, stats, s, cfg);
  }
  stepEncoding(enc, stats, undefined, cfg, true);
  assert.ok(enc.refits >= 2, `refits ${enc.refits}`);
  assert.equal(enc.ridge!.basis.n, S);
  const exact = refit(createEncoding(featureSet, S), stats, cfg);
  for (let c = 0; c < C; c++) {
    const a = neuronModel(enc.ridge!, c);
    const b = neuronModel(exact.ridge!, c);
    assert.equal(a.alpha, b.alpha);
    for (let s = 0; s < S; s++) {
      const x = featureSet.features.subarray(s * D, (s + 1) * D);
      assert.ok(Math.abs(predict(a, x) - predict(b, x)) <= 1e-6 * (1 + Math.abs(predict(b, x))));
    }
  }
});

test('reference image: highest readout-weighted cosine similarity', () => {
  const w = Float64Array.of(1, 1, 0, 0);
  // the driver shares dimensions 0 and 1 with candidate 2; candidate 1 matches only on unweighted dimensions
  const features = Float32Array.from([1, 0, 5, 5, /* driver */ 0, 1, 1, 1, /* 1 */ 2, 0.1, 0, 0, /* 2 */ 0, 0, 5, 5 /* 3 */]);
  const ref = referenceImage(w, features, 4, 0, [1, 2, 3]);
  assert.equal(ref!.stimulus, 2);
  assert.ok(Math.abs(ref!.similarity - weightedCosine(w, [1, 0, 5, 5], [2, 0.1, 0, 0])) < 1e-6);
  assert.equal(weightedCosine(w, [1, 0, 0, 0], [0, 0, 3, 3]), 0, 'no weighted overlap');
});

const view = (m: { stats: StatsUpdate; encoding: { refits: number } | null }) => `${m.stats.cause}:${m.encoding ? m.encoding.refits : '-'}`;

test('encodingModels: late features fit the models on arrival, even with no trial after', () => {
  const stats = createNeuronStats(start, stimuli, null);
  for (let s = 0; s < 12; s++) addTrial(stats, { kind: 'completed', trial: s, stimulusId: `s${s}`, onsetMs: 0, seq: s, responses: respond(s) });
  new TestScheduler((a, b) => assert.deepStrictEqual(a, b)).run(({ cold, expectObservable }) => {
    const u = { s: { state: stats, cause: 'start' } as StatsUpdate, t: { state: stats, cause: 'trial', stimulusId: 's3' } as StatsUpdate, e: { state: stats, cause: 'end' } as StatsUpdate };
    const features$ = cold('-----f', { f: featureSet });
    const out = cold('s-t-e--', u).pipe(encodingModels({ features$, config: cfg }), map(view));
    expectObservable(out).toBe('s-t-ef-', { s: 'start:-', t: 'trial:-', e: 'end:-', f: 'end:1' });
  });
});

test('encodingModels: empty, error, null features, early unsubscribe', () => {
  new TestScheduler((a, b) => assert.deepStrictEqual(a, b)).run(({ cold, expectObservable, expectSubscriptions }) => {
    const stats = createNeuronStats(start, stimuli, null);
    const u = { s: { state: stats, cause: 'start' } as StatsUpdate };
    expectObservable(cold<StatsUpdate>('|').pipe(encodingModels({ features$: NEVER, config: cfg }))).toBe('|');
    expectObservable(cold('s-#', u).pipe(encodingModels({ features$: NEVER, config: cfg }), map(view))).toBe('s-#', { s: 'start:-' });
    expectObservable(cold('s-s|', u).pipe(encodingModels({ features$: of(null), config: cfg }), map(view))).toBe('s-s|', { s: 'start:-' });
    const src = cold('s-s-s|', u);
    expectObservable(src.pipe(encodingModels({ features$: new BehaviorSubject<FeatureSet | null>(null), config: cfg }), map(view)), '^-!').toBe('s-', { s: 'start:-' });
    expectSubscriptions(src.subscriptions).toBe('^-!');
  });
});

test('encodingModels with offloaded refits: refreshes go on while a fit runs, the stream waits for the last fit', () => {
  const stats = createNeuronStats(start, stimuli, null);
  for (let s = 0; s < 12; s++) addTrial(stats, { kind: 'completed', trial: s, stimulusId: `s${s}`, onsetMs: 0, seq: s, responses: respond(s) });
  new TestScheduler((a, b) => assert.deepStrictEqual(a, b)).run(({ cold, expectObservable }) => {
    const u = { s: { state: stats, cause: 'start' } as StatsUpdate, t: { state: stats, cause: 'trial', stimulusId: 's3' } as StatsUpdate, e: { state: stats, cause: 'end' } as StatsUpdate };
    const jobs: number[] = [];
    // a fit takes 4 frames; the first is posted when the features arrive (12 stimuli seen, none in a model)
    const fit$ = (job: RefitJob) => (jobs.push(job.rows.length), cold('----r|', { r: fitJob(job) }));
    const offload = { fit$, fromStimuli: 10 };
    const out = cold('s-t-t---e|', u).pipe(encodingModels({ features$: of(featureSet), config: cfg, offload }), map(view));
    // trials go on with no model while the fit runs; it is installed at frame 4 as an update of its own
    expectObservable(out).toBe('s-t-(tf)e|', { s: 'start:0', t: 'trial:0', f: 'trial:1', e: 'end:1' });
    // the source ends before the fit returns: the stream waits for it (the fit completes at frame 5)
    const early = cold('s-e|', u).pipe(encodingModels({ features$: of(featureSet), config: cfg, offload }), map(view));
    expectObservable(early).toBe('s-e-f|', { s: 'start:0', e: 'end:0', f: 'end:1' });
    // below the threshold the refit runs inline
    const small = cold('s|', u).pipe(encodingModels({ features$: of(featureSet), config: cfg, offload: { fit$, fromStimuli: 13 } }), map(view));
    expectObservable(small).toBe('s|', { s: 'start:1' });
  });
});

test('refits in the worker thread equal inline refits, including the trials that arrived during the fit', async () => {
  const { RidgeWorker } = await import('../server/src/workers/ridge-client.ts');
  const worker = new RidgeWorker();
  const stats = createNeuronStats(start, stimuli, null);
  const updates = new Subject<StatsUpdate>();
  const seen: { cause: string; refits: number; version: number }[] = [];
  let last: EncodingState | null = null;
  const done = new Promise<void>((resolve, reject) =>
    updates
      .pipe(encodingModels({ features$: of(featureSet), config: cfg, offload: { fit$: (job, latest) => worker.fit$(job, latest), fromStimuli: cfg.minStimuli } }))
      .subscribe({ next: (m) => (seen.push({ cause: m.stats.cause, refits: m.encoding!.refits, version: m.encoding!.version }), (last = m.encoding)), error: reject, complete: resolve }),
  );
  updates.next({ state: stats, cause: 'start' });
  const trial = (k: number, s: number) => {
    addTrial(stats, { kind: 'completed', trial: k, stimulusId: `s${s}`, onsetMs: k * 400, seq: k, responses: respond(s) });
    updates.next({ state: stats, cause: 'trial', stimulusId: `s${s}`, trial: k });
  };
  for (let k = 0; k < 60; k++) trial(k, k % 20);
  // all of these ran while the first fit (posted at the 6th new stimulus) was in the worker
  assert.equal(seen.at(-1)!.refits, 0, 'no refit ran inline');
  for (let waited = 0; seen.at(-1)!.refits === 0 && waited < 60_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
  assert.ok(seen.at(-1)!.refits >= 1, 'the worker fit was installed');
  for (let k = 60; k < 200; k++) trial(k, k % 30);
  updates.next({ state: stats, cause: 'end' });
  updates.complete();
  await done;
  await worker.close();
  const enc = last as EncodingState | null;
  assert.ok(enc?.ridge && enc.ridge.basis.n === S && enc.pending === 0, 'the final fit covers every stimulus');
  const exact = refit(createEncoding(featureSet, S), stats, cfg);
  for (let c = 0; c < C; c++) {
    const a = neuronModel(enc.ridge, c);
    const b = neuronModel(exact.ridge!, c);
    assert.equal(a.alpha, b.alpha);
    for (let s = 0; s < S; s++) {
      const x = featureSet.features.subarray(s * D, (s + 1) * D);
      assert.ok(Math.abs(predict(a, x) - predict(b, x)) <= 1e-6 * (1 + Math.abs(predict(b, x))), `channel ${c} stimulus ${s}`);
    }
  }
});

test('simulated mixed-tuning neurons: rates stay a monotone function of w . x, less of the drive follows the category', () => {
  const catDir = (n: { weights: Float32Array; trueRateHz: Float64Array }, cat: string) => {
    // correlation of the true rates with the preferred category's indicator
    const ind = stimuli.map((s) => (s.category === cat ? 1 : 0));
    return pearson(Array.from(n.trueRateHz), ind) ?? 0;
  };
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const summary = (spread: number) => {
    const ns = createFeatureNeurons(12, stimuli, featureSet.features, D, 9, { spread });
    for (const n of ns) {
      const drive = Array.from({ length: S }, (_, s) => n.weights.reduce((a, w, d) => a + w * featureSet.features[s * D + d], 0));
      const order = (xs: ArrayLike<number>) => Array.from({ length: xs.length }, (_, i) => i).sort((a, b) => xs[a] - xs[b] || a - b);
      assert.deepEqual(order(n.trueRateHz), order(drive), 'rates are a monotone function of the drive');
    }
    return mean(ns.map((n) => catDir(n, n.preferredCategory)));
  };
  const category = summary(0);
  const mixed = summary(0.9);
  assert.ok(category > 0.3 && mixed < category - 0.2, `correlation of the rates with the preferred category: ${category.toFixed(2)} (spread 0) vs ${mixed.toFixed(2)} (spread 0.9)`);
});
