/**
 * Encoding models in their own thread (workers/refresh-client.ts): the per-trial refresh and new stimuli's
 * absorbs run there, coalesced (one batch in flight, each stimulus once with its latest means), and what
 * the main thread reads is the thread's snapshot. Checked against an exact refit of the same statistics
 * (which ridge-absorb.test.ts checks against scikit-learn), mid-session and at the end.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Subject, of } from 'rxjs';
import type { Stimulus } from '@sharedlens/shared';
import { addTrial, createNeuronStats, type NeuronStatsState } from '../server/src/compute/neuron-stats.ts';
import { createEncoding, refit, type EncodingState, type FeatureSet } from '../server/src/compute/encoding.ts';
import { neuronModel, predict } from '../server/src/compute/ridge.ts';
import { encodingModels } from '../server/src/pipeline/encoding-models.ts';
import type { StatsUpdate } from '../server/src/pipeline/neuron-statistics.ts';
import { ModelRefresher } from '../server/src/workers/refresh-client.ts';
import { RidgeWorker } from '../server/src/workers/ridge-client.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { computeStart } from './helpers.ts';

const C = 4;
const D = 32;
const S = 40;
const stimuli: Stimulus[] = Array.from({ length: S }, (_, i) => ({ id: `s${i}`, file: 'x.png', category: ['body', 'face', 'object', 'scene'][i % 4] }));
const cfg = { alphas: [0.1, 1, 10, 100, 1000], refitEveryTrials: 5, minStimuli: 6 };
const r = mulberry32(7);
const gauss = () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
const featureSet: FeatureSet = { features: Float32Array.from({ length: S * D }, () => Math.max(0, gauss())), dim: D, modelId: 'test', backend: 'cpu' };
const trueW = Array.from({ length: C }, () => Float64Array.from({ length: D }, gauss));
const respond = (s: number) => Float64Array.from({ length: C }, (_, c) => trueW[c].reduce((a, w, d) => a + w * featureSet.features[s * D + d], 0) + gauss());

/** The models read on the main thread give the same predictions (and alphas) as an exact refit now. */
function assertExact(enc: EncodingState, stats: NeuronStatsState, what: string): void {
  const exact = refit(createEncoding(featureSet, S), stats, cfg);
  const observed = stats.nStim.reduce((a, n) => a + (n > 0 ? 1 : 0), 0);
  assert.equal(enc.ridge!.basis.n, observed, `${what}: every observed stimulus is in the models`);
  for (let c = 0; c < C; c++) {
    const a = neuronModel(enc.ridge!, c);
    const b = neuronModel(exact.ridge!, c);
    assert.equal(a.alpha, b.alpha, `${what}: channel ${c} alpha`);
    for (let s = 0; s < S; s++) {
      const x = featureSet.features.subarray(s * D, (s + 1) * D);
      assert.ok(Math.abs(predict(a, x) - predict(b, x)) <= 1e-6 * (1 + Math.abs(predict(b, x))), `${what}: channel ${c} stimulus ${s}: ${predict(a, x)} vs ${predict(b, x)}`);
    }
  }
}

test('models in their own thread: coalesced batches, never the last trial dropped, equal to an exact refit mid-session and at the end', async () => {
  const refresher = new ModelRefresher({ snapshotMs: 20, onError: (m) => assert.fail(m) });
  const fits = new RidgeWorker();
  const stats = createNeuronStats(computeStart(C), stimuli, null);
  const updates = new Subject<StatsUpdate>();
  let last: EncodingState | null = null;
  let emitted = 0;
  const done = new Promise<void>((resolve, reject) =>
    updates.pipe(encodingModels({ features$: of(featureSet), config: cfg, offload: { fit$: (job, latest) => fits.fit$(job, latest), fromStimuli: 1000 }, thread: refresher })).subscribe({
      next: (m) => {
        last = m.encoding;
        emitted++;
      },
      error: reject,
      complete: resolve,
    }),
  );
  updates.next({ state: stats, cause: 'start' });
  let k = 0;
  const trial = (s: number) => {
    addTrial(stats, { kind: 'completed', trial: k, stimulusId: `s${s}`, onsetMs: k * 400, seq: k, responses: respond(s) });
    updates.next({ state: stats, cause: 'trial', stimulusId: `s${s}`, trial: k++ });
  };
  const settled = async (what: string) => {
    for (let waited = 0; waited < 30_000; waited += 10) {
      if (last && last.shape && refresher.idle(last)) return last;
      await new Promise((res) => setTimeout(res, 10));
    }
    assert.fail(`${what}: the model thread never settled`);
  };
  // the first stimuli: the first fit runs inline and moves to the thread
  for (let i = 0; i < 8; i++) trial(i);
  let enc = await settled('first fit');
  assert.ok(enc.thread, 'the models live in the thread');
  assert.equal(enc.ridge!.basis.kinv.length, 0, 'the main thread holds a snapshot, no operators');
  assertExact(enc, stats, 'after the first fit');
  // a burst in one tick: refreshes of known stimuli and new stimuli, the same stimulus several times
  const before = refresher.counts.stimuli;
  for (let i = 0; i < 60; i++) trial(i % 20);
  trial(3);
  trial(3);
  enc = await settled('burst');
  assert.ok(refresher.counts.stimuli - before <= 40, `coalesced: ${refresher.counts.stimuli - before} stimuli sent for 62 trials`);
  assertExact(enc, stats, 'after a burst (stimulus 3 last seen twice in a row)');
  // trials one at a time, some new stimuli, waiting a little between them
  for (let i = 0; i < 30; i++) {
    trial((i * 7) % 32);
    if (i % 5 === 0) await new Promise((res) => setTimeout(res, 5));
  }
  enc = await settled('paced');
  assertExact(enc, stats, 'paced trials, mid-session');
  // trials of stimuli already in the models, a snapshot after each: the rows' centred features are not sent again
  const kept = refresher.counts.xcKept;
  for (let i = 0; i < 6; i++) {
    trial(i);
    await new Promise((res) => setTimeout(res, 40));
  }
  enc = await settled('known stimuli');
  assert.ok(refresher.counts.xcKept - kept >= 3, `snapshots without the features: ${refresher.counts.xcKept - kept}`);
  assertExact(enc, stats, 'snapshots reusing the rows\' features');
  const emittedBefore = emitted;
  updates.next({ state: stats, cause: 'end' });
  updates.complete();
  await done;
  assert.ok(emitted > emittedBefore, 'the final models are an update of their own');
  assertExact(last!, stats, 'at the end');
  await refresher.close();
  await fits.close();
});
