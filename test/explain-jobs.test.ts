/**
 * Map jobs (server/src/sinks/explain-jobs.ts): the strongest k drivers per channel, maps on request, each
 * tied to the model version that made it, marked stale when the channel's readout changes materially and
 * then recomputed (or retired when no longer wanted). The session store and the compute workers are the
 * outer edges here: a store holding one model snapshot and readouts the test sets, and a compute client
 * that answers with constant maps.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { of, Subject, VirtualTimeScheduler } from 'rxjs';
import type { DriverInfo, Explanation, ModelSnapshot } from '@sharedlens/shared';
import { scheduleExplanations } from '../server/src/sinks/explain-jobs.ts';
import type { Runtime, SessionStore } from '../server/src/sinks/session-store.ts';
import type { ComputeClient } from '../server/src/workers/compute-client.ts';
import { gradientMapOptions } from '../server/src/compute/shared-feature-maps.ts';

const D = 8;
const driver = (id: string, ref: string): DriverInfo => ({ stimulusId: id, category: 'object', meanResponse: 5, nTrials: 4, preferredMean: 2, statistic: 4, df: 6, p: 0.001, q: 0.01, referenceId: ref, similarity: 0.5, referenceResponse: 3 });

function setup(perChannel = 2) {
  const rt = { id: 's1', start: { stimulusSetId: 'demo' }, encoding: null, latest: null } as unknown as Runtime;
  const updates$ = new Subject<{ runtime: Runtime; update: unknown }>();
  let version = 1;
  let drivers = [driver('d1', 'r1'), driver('d2', 'r2'), driver('d3', 'r3')];
  let weights: Float32Array = Float32Array.from({ length: D }, (_, i) => (i === 0 ? 1 : 0));
  const snapshot = (): ModelSnapshot => ({ sessionId: 's1', version, featureModel: 'm', backend: 'wasm', refits: 1, channels: [{ id: 'ch1', drivers }] }) as unknown as ModelSnapshot;
  const store = { updates$, modelsReady$: new Subject<Runtime>(), models: () => snapshot(), readout: () => weights, get: (id: string) => (id === 's1' ? rt : undefined) } as unknown as SessionStore;
  const calls: string[] = [];
  const client = {
    explain$: (driverFile: string) => {
      calls.push(driverFile);
      return of({ driverMap: new Uint8Array(4), referenceMap: new Uint8Array(4), size: 2, similarity: 0.5, driverMass: 1, referenceMass: 1, ms: 1, backend: 'wasm' });
    },
  } as unknown as ComputeClient;
  const emitted: Explanation[] = [];
  // virtual time: each update below is looked at, the throttle window flushed after it
  const scheduler = new VirtualTimeScheduler();
  const logs: Record<string, unknown>[] = [];
  const jobs = scheduleExplanations({
    store,
    client,
    imageFile: (_set, id) => `${id}.png`,
    emit: (e) => emitted.push(e),
    log: (_level, msg, fields) => logs.push({ msg, ...fields }),
    options: gradientMapOptions,
    intervalMs: 1000,
    minWeightCosine: 0.98,
    maxQueue: 16,
    perChannel,
    scheduler,
  });
  return {
    jobs,
    emitted,
    logs,
    calls,
    update: () => {
      updates$.next({ runtime: rt, update: {} });
      scheduler.flush();
    },
    setWeights: (w: Float32Array) => (weights = w),
    setDrivers: (d: DriverInfo[]) => (drivers = d),
    bump: () => version++,
  };
}

test('maps for the strongest k drivers of a channel, each with the model version that made it', () => {
  const t = setup(2);
  t.update();
  assert.deepEqual(t.calls, ['d1.png', 'd2.png']);
  assert.deepEqual(
    t.emitted.map((e) => [e.driverId, e.modelVersion, e.stale]),
    [
      ['d1', 1, false],
      ['d2', 1, false],
    ],
  );
  t.jobs.sub.unsubscribe();
});

test('a readout that changes materially marks the maps stale at once, then recomputes them with the new version', () => {
  const t = setup(1);
  t.update();
  assert.equal(t.emitted.length, 1);
  // a small change (cosine 0.995) keeps the maps
  t.setWeights(Float32Array.from({ length: D }, (_, i) => (i === 0 ? 1 : i === 1 ? 0.1 : 0)));
  t.update();
  assert.equal(t.emitted.length, 1, 'no recompute below the threshold');
  // a material change (cosine 0.71)
  t.bump();
  t.setWeights(Float32Array.from({ length: D }, (_, i) => (i < 2 ? 1 : 0)));
  t.update();
  assert.deepEqual(
    t.emitted.slice(1).map((e) => [e.driverId, e.modelVersion, e.stale]),
    [
      ['d1', 1, true],
      ['d1', 2, false],
    ],
  );
  assert.equal([...t.jobs.results.get('s1')!.values()][0].stale, false);
  t.jobs.sub.unsubscribe();
});

test('a stale pair that is neither among the strongest drivers nor asked for is retired', () => {
  const t = setup(1);
  t.update();
  t.setDrivers([driver('d2', 'r2'), driver('d1', 'r1')]);
  t.setWeights(Float32Array.from({ length: D }, (_, i) => (i === 3 ? 1 : 0)));
  t.update();
  const keys = [...t.jobs.results.get('s1')!.keys()];
  assert.deepEqual(keys, ['s1|ch1|d2|r2']);
  assert.ok(t.emitted.some((e) => e.driverId === 'd1' && e.stale), 'marked stale before it was retired');
  t.jobs.sub.unsubscribe();
});

test('maps of any driver on request; asked-for pairs are kept fresh; bad requests are refused with a counted log line', () => {
  const t = setup(1);
  t.update();
  const r = t.jobs.request('s1', 'ch1', 'd3');
  assert.equal(r.status, 'queued');
  assert.ok(t.emitted.some((e) => e.driverId === 'd3'));
  assert.equal(t.jobs.request('s1', 'ch1', 'd3').status, 'ready');
  // the readout moves: the asked-for pair is recomputed although it is not among the strongest
  t.bump();
  t.setWeights(Float32Array.from({ length: D }, (_, i) => (i === 5 ? 1 : 0)));
  t.update();
  const d3 = t.emitted.filter((e) => e.driverId === 'd3');
  assert.deepEqual(
    d3.map((e) => [e.modelVersion, e.stale]),
    [
      [1, false],
      [1, true],
      [2, false],
    ],
  );
  const bad = [t.jobs.request('s1', 'nope', 'd1'), t.jobs.request('s1', 'ch1', 'not-a-driver'), t.jobs.request('s2', 'ch1', 'd1')];
  assert.deepEqual(
    bad.map((b) => (b.status === 'rejected' ? b.code : b.status)),
    ['unknown-channel', 'unknown-driver', 'no-models'],
  );
  assert.deepEqual(
    t.logs.map((l) => l.rejectedRequests),
    [1, 2, 3],
  );
  t.jobs.sub.unsubscribe();
});
