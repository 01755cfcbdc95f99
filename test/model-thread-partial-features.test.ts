/**
 * Models on the stimuli whose features are ready (issue 13): a set's features arrive in parts (the compute
 * threads' `rows` events, folded by sources/stimulus-features.ts); a session gets models before the last
 * part, covering exactly its observed stimuli with features, each part's observed stimuli join them as it
 * arrives, and at the end the models equal those fitted on the whole set at once (which
 * ridge-absorb.test.ts checks against scikit-learn). Over HTTP, GET /models answers once some features
 * exist, saying how many stimuli the models cover. Drivers come only from stimuli with features, and a
 * report rebuilds the per-category bases only when the models' rows changed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import express from 'express';
import { Subject } from 'rxjs';
import { sessionStartSchema, type Frame, type ModelSnapshot, type Stimulus } from '@sharedlens/shared';
import { addTrial, channelStats, createNeuronStats, type NeuronStatsState } from '../server/src/compute/neuron-stats.ts';
import { addFeatures, createEncoding, featuresComplete, refit, type EncodingConfig, type EncodingState, type FeatureSet } from '../server/src/compute/encoding.ts';
import { categoryBasisCounts, modelReport } from '../server/src/compute/model-report.ts';
import { neuronModel, predict } from '../server/src/compute/ridge.ts';
import { encodingModels } from '../server/src/pipeline/encoding-models.ts';
import type { StatsUpdate } from '../server/src/pipeline/neuron-statistics.ts';
import { stimulusFeatures } from '../server/src/sources/stimulus-features.ts';
import { createGuard } from '../server/src/sources/ingest-guard.ts';
import { SessionStore } from '../server/src/sinks/session-store.ts';
import { modelsRouter } from '../server/src/http/models.ts';
import type { FeatureEvent } from '../server/src/workers/compute-client.ts';
import { ModelRefresher } from '../server/src/workers/refresh-client.ts';
import { ModelReports } from '../server/src/workers/report-client.ts';
import { RidgeWorker } from '../server/src/workers/ridge-client.ts';
import { mulberry32, poisson } from '../server/src/sim/synthetic-neurons.ts';
import { loadConfig } from '../server/src/config.ts';
import { computeStart, root, sessionStart } from './helpers.ts';

const C = 4;
const D = 32;
const S = 48;
const cats = ['body', 'face', 'object', 'scene'];
const stimuli: Stimulus[] = Array.from({ length: S }, (_, i) => ({ id: `s${i}`, file: `s${i}.png`, category: cats[i % 4] }));
const cfg: EncodingConfig = { alphas: [0.1, 1, 10, 100, 1000], refitEveryTrials: 5, minStimuli: 6 };
const r = mulberry32(17);
const gauss = () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
const whole: FeatureSet = { features: Float32Array.from({ length: S * D }, () => Math.max(0, gauss())), dim: D, modelId: 'test', backend: 'cpu' };
const trueW = Array.from({ length: C }, () => Float64Array.from({ length: D }, gauss));
const respond = (s: number) => Float64Array.from({ length: C }, (_, c) => trueW[c].reduce((a, w, d) => a + w * whole.features[s * D + d], 0) + gauss());
const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

/** A `rows` event of the compute threads for stimuli `rows`. */
function rowsEvent(rows: number[]): FeatureEvent {
  const features = new Float32Array(rows.length * D);
  rows.forEach((s, k) => features.set(whole.features.subarray(s * D, (s + 1) * D), k * D));
  return { type: 'rows', rows, features, dim: D, backend: 'cpu', modelId: 'test' };
}

/** The set's features through sources/stimulus-features.ts, from a feature stream this test drives. */
function featureSource() {
  const events = new Subject<FeatureEvent>();
  let ready = 0;
  const featuresFor = stimulusFeatures({
    client: { features$: () => events },
    sets: new Map([['x', { dir: '.', manifest: { id: 'x', stimuli } }]]),
    onProgress: () => {},
    onReady: () => void ready++,
    onError: (_id, message) => assert.fail(message),
  });
  // subscribed at once, as the server warms every registered set
  let latest: FeatureSet | null = null;
  featuresFor('x').subscribe((f) => (latest = f));
  return { events, featuresFor, readyCalls: () => ready, latest: () => latest };
}

/** Observed stimuli with features in `f` (all: whole). */
function expectedRows(stats: NeuronStatsState, f: FeatureSet): number[] {
  return range(0, S).filter((s) => stats.nStim[s] > 0 && (!f.ready || f.ready[s] === 1));
}

/**
 * The models read on the main thread are on exactly the observed stimuli with features, and give the same
 * predictions and regularisation as an exact refit on those (from a copy of the features as they are now).
 */
function assertExact(enc: EncodingState, stats: NeuronStatsState, f: FeatureSet, what: string): void {
  const rows = expectedRows(stats, f);
  assert.deepEqual([...enc.ridge!.basis.rows].sort((a, b) => a - b), rows, `${what}: the models hold exactly the observed stimuli with features`);
  const copy: FeatureSet = { ...f, features: f.features.slice(), ...(f.ready ? { ready: f.ready.slice() } : {}) };
  const exact = refit(createEncoding(copy, S), stats, cfg);
  for (let c = 0; c < C; c++) {
    const a = neuronModel(enc.ridge!, c);
    const b = neuronModel(exact.ridge!, c);
    assert.equal(a.alpha, b.alpha, `${what}: channel ${c} alpha`);
    for (const s of range(0, S)) {
      const x = whole.features.subarray(s * D, (s + 1) * D);
      assert.ok(Math.abs(predict(a, x) - predict(b, x)) <= 1e-6 * (1 + Math.abs(predict(b, x))), `${what}: channel ${c} stimulus ${s}: ${predict(a, x)} vs ${predict(b, x)}`);
    }
  }
}

for (const threaded of [true, false]) {
  test(`features in parts (${threaded ? 'models in their thread, refits in the worker' : 'inline'}): models before the last part on exactly the stimuli with features, equal at the end to the whole set's fit`, async () => {
    const src = featureSource();
    const refresher = threaded ? new ModelRefresher({ snapshotMs: 20, onError: (m) => assert.fail(m) }) : null;
    const fits = threaded ? new RidgeWorker() : null;
    const stats = createNeuronStats(computeStart(C), stimuli, null);
    const updates = new Subject<StatsUpdate>();
    let last: EncodingState | null = null;
    const done = new Promise<void>((resolve, reject) =>
      updates
        .pipe(encodingModels({ features$: src.featuresFor('x'), config: cfg, ...(threaded ? { offload: { fit$: (job, latest) => fits!.fit$(job, latest), fromStimuli: 1000 }, thread: refresher! } : {}) }))
        .subscribe({ next: (m) => (last = m.encoding), error: reject, complete: resolve }),
    );
    updates.next({ state: stats, cause: 'start' });
    let k = 0;
    const trial = (s: number) => {
      addTrial(stats, { kind: 'completed', trial: k, stimulusId: `s${s}`, onsetMs: k * 400, seq: k, responses: respond(s) });
      updates.next({ state: stats, cause: 'trial', stimulusId: `s${s}`, trial: k++ });
    };
    const settled = async (what: string, rows: number) => {
      for (let waited = 0; waited < 30_000; waited += 10) {
        if (last?.ridge && last.ridge.basis.n === rows && (!refresher || (last.shape && refresher.idle(last)))) return last;
        await new Promise((res) => setTimeout(res, 10));
      }
      assert.fail(`${what}: the models never settled on ${rows} stimuli (${last?.ridge?.basis.n ?? 'none'})`);
    };
    // trials of 24 stimuli before any features: statistics only
    for (const s of [...range(0, 24), ...range(0, 24)]) trial(s);
    assert.equal(last, null, 'no features, no models');
    // the first part (the cached rows, say): models on its 12 observed stimuli, fitted at once
    src.events.next(rowsEvent(range(0, 12)));
    const f = src.latest()!;
    assert.equal(f.readyCount, 12);
    let enc = await settled('first part', 12);
    assertExact(enc, stats, f, 'first part');
    if (!threaded) assert.deepEqual(modelReport('x', stats, enc, channelStats(stats), cfg, loadConfig(root, {}).compute.drivers).coverage, { inModels: 12, withFeatures: 12, total: S });
    // new stimuli without features wait; trials of modelled ones refresh them
    for (const s of [...range(24, 36), ...range(0, 6)]) trial(s);
    enc = await settled('stimuli without features', 12);
    assertExact(enc, stats, f, 'trials while features are computed');
    // a second part: its observed stimuli (12-29) join the models, the unobserved ones (none here) wait for a trial
    src.events.next(rowsEvent(range(12, 30)));
    enc = await settled('second part', 30);
    assertExact(enc, stats, f, 'second part');
    // the last stimuli, then more rows and the final event with the whole set (fills the rest)
    for (const s of range(36, 48)) trial(s);
    src.events.next(rowsEvent(range(30, 41)));
    assert.equal(src.readyCalls(), 0, 'not complete before the last part');
    enc = await settled('third part', 41);
    assertExact(enc, stats, f, 'third part, before the last');
    src.events.next({ type: 'features', features: whole.features.slice(), dim: D, backend: 'cpu', modelId: 'test' });
    assert.ok(featuresComplete(f) && src.readyCalls() === 1, 'complete once, after the last part');
    enc = await settled('whole set', S);
    assert.equal(enc.withFeatures, null, 'the models know every stimulus has features');
    assertExact(enc, stats, whole, 'all features, mid-session (the whole set fitted at once)');
    for (const s of range(0, 10)) trial(s);
    updates.next({ state: stats, cause: 'end' });
    updates.complete();
    await done;
    assertExact(last!, stats, whole, 'at the end');
    await refresher?.close();
    await fits?.close();
  });
}

/** Frames of one trial of stimulus `s` (binned, 400 ms from `t0`, C channels), responses planted from the features. */
function trialFrames(id: string, trial: number, s: number, seq: number, rand: () => number): Frame[] {
  const t0 = trial * 400;
  const counts = new Uint16Array(400 * C);
  const rate = respond(s).map((v) => Math.max(0, 2 + 0.5 * v));
  for (let b = 0; b < 400; b++) for (let c = 0; c < C; c++) counts[b * C + c] = b >= 150 && b < 250 ? poisson(rand, rate[c] / 20) : poisson(rand, 0.05);
  return [
    { type: 'stim:onset', sessionId: id, seq: seq + 1, trial, stimulusId: `s${s}`, tMs: t0 + 100 },
    { type: 'counts:binned', sessionId: id, seq: seq + 2, startMs: t0, binWidthMs: 1, nBins: 400, counts },
    { type: 'stim:offset', sessionId: id, seq: seq + 3, trial, stimulusId: `s${s}`, tMs: t0 + 300 },
  ] as Frame[];
}

test('GET /models: 409 before any features, then the models on the stimuli with features and how many of the set they cover', async () => {
  const src = featureSource();
  const compute = loadConfig(root, {}).compute;
  const refresher = new ModelRefresher({ snapshotMs: 20, onError: (m) => assert.fail(m) });
  const fits = new RidgeWorker();
  const reports = new ModelReports({ minIntervalMs: 20, minWeightCosine: compute.maps.minWeightCosine, onError: (m) => assert.fail(m) });
  const store = new SessionStore({
    psthBinMs: 10,
    models: { featuresFor: src.featuresFor, encoding: cfg, drivers: { ...compute.drivers, minReliability: compute.minReliability }, offload: { fit$: (job, latest) => fits.fit$(job, latest), fromStimuli: 1000 }, thread: refresher, reports },
  });
  const app = express();
  app.use('/api/sessions', modelsRouter({ store, modelsOn: true, minStimuli: cfg.minStimuli, computeStatus: { features: {} }, explanations: null }));
  const server = http.createServer(app);
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  try {
    const id = 'partial-features';
    const start = sessionStartSchema.parse(sessionStart(C, { stimulusSetId: 'x', countsMode: 'binned' }));
    const rt = store.startLive({ type: 'session:start', sessionId: id, startedAt: new Date().toISOString(), start, stimuli } as Extract<Frame, { type: 'session:start' }>, createGuard(id, start, stimuli));
    const rand = mulberry32(5);
    let seq = 0;
    let trial = 0;
    const run = (list: number[]) => {
      for (const s of list) {
        for (const fr of trialFrames(id, trial++, s, seq, rand)) store.feed(rt, fr);
        seq += 3;
      }
    };
    const models = async () => {
      const res = await fetch(`${url}/api/sessions/${id}/models`);
      return { status: res.status, body: (await res.json()) as ModelSnapshot & { error?: { code: string } } };
    };
    run([...range(0, 20), ...range(0, 20)]);
    await new Promise((res) => setTimeout(res, 100));
    const before = await models();
    assert.equal(before.status, 409, 'no features yet');
    // a first part: 200 with models on its observed stimuli, before the rest of the set
    src.events.next(rowsEvent(range(0, 16)));
    run(range(0, 20));
    let partial: ModelSnapshot | null = null;
    for (let i = 0; i < 400 && !partial; i++) {
      const m = await models();
      if (m.status === 200 && m.body.channels.some((c) => c.scores)) partial = m.body;
      else await new Promise((res) => setTimeout(res, 25));
    }
    assert.ok(partial, 'models before the last part');
    assert.deepEqual(partial.coverage, { inModels: 16, withFeatures: 16, total: S });
    for (const c of partial.channels) if (c.scores) assert.equal(c.scores.nStimuli, 16);
    // the rest of the set: the models cover every observed stimulus
    src.events.next({ type: 'features', features: whole.features.slice(), dim: D, backend: 'cpu', modelId: 'test' });
    run(range(20, 30));
    let all: ModelSnapshot | null = null;
    for (let i = 0; i < 400 && !all; i++) {
      const m = await models();
      if (m.status === 200 && m.body.coverage?.inModels === 30) all = m.body;
      else await new Promise((res) => setTimeout(res, 25));
    }
    assert.ok(all, 'models on all observed stimuli once the set is complete');
    assert.deepEqual(all.coverage, { inModels: 30, withFeatures: S, total: S });
    store.remove(rt);
  } finally {
    server.close();
    store.close();
    await reports.close();
    await refresher.close();
    await fits.close();
  }
});

/** A session of S2 stimuli in 4 categories, C2 channels preferring 'body' with planted out-of-category drivers, 6 repeats. */
function plantedSession(S2: number, C2: number): { stats: NeuronStatsState; features: Float32Array; stimuli: Stimulus[] } {
  const st: Stimulus[] = Array.from({ length: S2 }, (_, i) => ({ id: `p${i}`, file: 'x.png', category: cats[i % 4] }));
  const rr = mulberry32(3);
  const features = Float32Array.from({ length: S2 * D }, () => Math.max(0, rr() * 2 - 0.6));
  const stats = createNeuronStats(computeStart(C2), st, null);
  const rate = Array.from({ length: C2 }, (_, c) => Float64Array.from(st, (s, i) => (s.category === 'body' ? 6 : 2) + ((i + c) % 11 === 0 ? 14 : 0) + rr()));
  let k = 0;
  for (let rep = 0; rep < 6; rep++) for (let s = 0; s < S2; s++) addTrial(stats, { kind: 'completed', trial: k, stimulusId: `p${s}`, onsetMs: k * 100, seq: k++, responses: Float64Array.from({ length: C2 }, (_, c) => poisson(rr, rate[c][s])) });
  return { stats, features, stimuli: st };
}

test('drivers only among stimuli with features; category bases rebuilt once per change of the models\' rows, not per report', () => {
  const S2 = 96;
  const C2 = 6;
  const { stats, features } = plantedSession(S2, C2);
  const rule = { ...loadConfig(root, {}).compute.drivers, minReliability: 0 };
  const full = refit(createEncoding({ features, dim: D, modelId: 'test', backend: 'none' }, S2), stats, cfg);
  const fullReport = modelReport('p', stats, full, channelStats(stats), cfg, rule);
  const allDrivers = fullReport.channels.flatMap((c) => c.drivers.map((d) => `${c.id}:${d.stimulusId}`));
  assert.ok(allDrivers.length >= 6, `planted drivers found (${allDrivers.length})`);
  // two thirds of the set with features
  const ready = Uint8Array.from({ length: S2 }, (_, s) => (s % 3 === 2 ? 0 : 1));
  const fs: FeatureSet = { features: features.map((v, i) => (ready[Math.floor(i / D)] ? v : 0)), dim: D, modelId: 'test', backend: 'none', ready, readyCount: ready.reduce((a, v) => a + v, 0) };
  const enc = refit(createEncoding(fs, S2), stats, cfg);
  const partial = modelReport('p', stats, enc, channelStats(stats), cfg, rule);
  assert.deepEqual(partial.coverage, { inModels: fs.readyCount, withFeatures: fs.readyCount, total: S2 });
  const withFeatures = new Set(range(0, S2).filter((s) => ready[s]).map((s) => `p${s}`));
  const drivers = partial.channels.flatMap((c) => c.drivers.map((d) => `${c.id}:${d.stimulusId}`));
  assert.deepEqual(drivers, allDrivers.filter((d) => withFeatures.has(d.split(':')[1]!)), 'the drivers with features, the same tests');
  assert.ok(drivers.length < allDrivers.length, 'some drivers wait for their features');
  for (const c of partial.channels) for (const d of c.drivers) assert.ok(d.referenceId === null || withFeatures.has(d.referenceId), 'reference images have features');
  // a second report of the same models builds no category basis
  const built0 = categoryBasisCounts.built;
  modelReport('p', stats, enc, channelStats(stats), cfg, rule);
  assert.equal(categoryBasisCounts.built, built0, 'same rows: the bases are reused');
  // more features: their stimuli absorbed, the next report rebuilds the bases once, equal to a fresh fit's report
  for (let s = 0; s < S2; s++) {
    if (s % 3 === 2 && s < 48) {
      fs.features.set(features.subarray(s * D, (s + 1) * D), s * D);
      ready[s] = 1;
      fs.readyCount!++;
    }
  }
  addFeatures(enc, stats, Infinity);
  assert.equal(enc.ridge!.basis.n, fs.readyCount, 'absorbed');
  const after = modelReport('p', stats, enc, channelStats(stats), cfg, rule);
  const rebuilt = categoryBasisCounts.built - built0;
  assert.ok(rebuilt > 0 && rebuilt <= 4, `bases rebuilt after the absorb (${rebuilt})`);
  modelReport('p', stats, enc, channelStats(stats), cfg, rule);
  assert.equal(categoryBasisCounts.built - built0, rebuilt, 'and not again while the rows stay');
  const fresh = modelReport('p', stats, refit(createEncoding({ ...fs, features: fs.features.slice(), ready: ready.slice() }, S2), stats, cfg), channelStats(stats), cfg, rule);
  after.channels.forEach((c, i) => {
    const g = fresh.channels[i]!.scores!;
    assert.equal(c.scores!.generalisationStimuli, g.generalisationStimuli, `channel ${c.id}: generalisation on the models' stimuli now`);
    if (g.generalisationR !== null) assert.ok(Math.abs(c.scores!.generalisationR! - g.generalisationR) < 1e-6, `channel ${c.id}: ${c.scores!.generalisationR} vs ${g.generalisationR}`);
  });
});
