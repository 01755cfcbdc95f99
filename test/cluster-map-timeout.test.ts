/**
 * Map jobs that time out (issue 18): the dashboard is told (explain-jobs' `fail`, sent as `explain:failed`),
 * and a timed-out pair goes back in the queue by itself, so a session with no next look (ended, or quiet)
 * still gets its maps once a worker runs; a failed job waits for the next look. The session store and the
 * map runner are the outer edges: a store with one model snapshot, a runner that answers as BullMQ's would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defer, of, Subject, throwError, VirtualTimeScheduler } from 'rxjs';
import type { DriverInfo, ExplainFailure, Explanation, ModelSnapshot } from '@sharedlens/shared';
import { scheduleExplanations } from '../server/src/sinks/explain-jobs.ts';
import { JobError } from '../server/src/cluster/job-queue.ts';
import type { Runtime, SessionStore } from '../server/src/sinks/session-store.ts';
import type { ComputeClient } from '../server/src/workers/compute-client.ts';
import { gradientMapOptions } from '../server/src/compute/shared-feature-maps.ts';

const driver = (id: string, ref: string): DriverInfo => ({ stimulusId: id, category: 'object', meanResponse: 5, nTrials: 4, preferredMean: 2, statistic: 4, df: 6, p: 0.001, q: 0.01, referenceId: ref, similarity: 0.5, referenceResponse: 3 });

/** One session, one channel, one driver; the runner's answers in order ('timeout', 'failed' or 'ok'). */
function setup(answers: ('timeout' | 'failed' | 'ok')[]) {
  const rt = { id: 's1', start: { stimulusSetId: 'demo' }, encoding: null, latest: null } as unknown as Runtime;
  let alive = true;
  const updates$ = new Subject<{ runtime: Runtime; update: unknown }>();
  const snapshot = { sessionId: 's1', version: 1, featureModel: 'm', backend: 'wasm', refits: 1, channels: [{ id: 'ch1', drivers: [driver('d1', 'r1')] }] } as unknown as ModelSnapshot;
  const store = { updates$, modelsReady$: new Subject<Runtime>(), models: () => snapshot, readout: () => Float32Array.of(1, 0, 0), get: (id: string) => (alive && id === 's1' ? rt : undefined) } as unknown as SessionStore;
  let calls = 0;
  const explain$: ComputeClient['explain$'] = () =>
    defer(() => {
      const a = answers[calls++] ?? 'ok';
      if (a === 'timeout') return throwError(() => new JobError('map job 0123456789ab did not finish within 3 s (1 jobs waiting; is a worker running? npm run worker)', 'timeout'));
      if (a === 'failed') return throwError(() => new JobError('map job 0123456789ab failed on the worker: out of memory', 'failed'));
      return of({ driverMap: new Uint8Array(4), referenceMap: new Uint8Array(4), size: 2, similarity: 0.5, driverMass: 1, referenceMass: 1, ms: 1, backend: 'wasm' });
    });
  const emitted: Explanation[] = [];
  const failed: ExplainFailure[] = [];
  const logs: string[] = [];
  const scheduler = new VirtualTimeScheduler();
  const jobs = scheduleExplanations({
    store,
    client: {} as ComputeClient,
    imageFile: (_set, id) => `${id}.png`,
    emit: (e) => emitted.push(e),
    fail: (f) => failed.push(f),
    log: (_level, msg) => logs.push(msg),
    options: gradientMapOptions,
    intervalMs: 1000,
    minWeightCosine: 0.98,
    maxQueue: 16,
    scheduler,
    runner: { explain$, inFlight: 2 },
  });
  return {
    jobs,
    emitted,
    failed,
    logs,
    calls: () => calls,
    end: () => (alive = false),
    /** One update of the session (a look), then nothing more. */
    look: () => {
      updates$.next({ runtime: rt, update: {} });
      scheduler.flush();
    },
  };
}

test('map jobs: a timeout reaches the dashboard with why, and the pair is asked again by itself until made', () => {
  const t = setup(['timeout', 'timeout', 'ok']);
  t.look();
  // one look only (the session went quiet): two timeouts, each told, then the maps
  assert.equal(t.calls(), 3);
  assert.deepEqual(
    t.failed.map((f) => [f.sessionId, f.channelId, f.driverId, f.referenceId, f.reason]),
    [
      ['s1', 'ch1', 'd1', 'r1', 'timeout'],
      ['s1', 'ch1', 'd1', 'r1', 'timeout'],
    ],
  );
  assert.match(t.failed[0]!.message, /did not finish within 3 s .*is a worker running\? npm run worker/);
  assert.ok(t.failed.every((f) => Number.isFinite(f.atMs)));
  assert.deepEqual(t.emitted.map((e) => [e.driverId, e.stale]), [['d1', false]]);
  assert.equal(t.logs.filter((m) => /shared-feature maps failed: map job .* did not finish/.test(m)).length, 2, 'each timeout logged');
  t.jobs.sub.unsubscribe();
});

test('map jobs: a failed job is told and waits for the next look; a gone session\'s timed-out pair is dropped', () => {
  const t = setup(['failed', 'ok']);
  t.look();
  assert.equal(t.calls(), 1, 'not retried by itself');
  assert.deepEqual(t.failed.map((f) => f.reason), ['failed']);
  assert.match(t.failed[0]!.message, /failed on the worker: out of memory/);
  assert.equal(t.emitted.length, 0);
  t.look();
  assert.equal(t.calls(), 2);
  assert.equal(t.emitted.length, 1, 'made at the next look');
  t.jobs.sub.unsubscribe();

  const gone = setup(['timeout', 'ok']);
  gone.end();
  gone.look();
  assert.equal(gone.calls(), 1, 'no retry for a session no longer in the store');
  assert.deepEqual(gone.failed.map((f) => f.reason), ['timeout']);
  gone.jobs.sub.unsubscribe();
});
