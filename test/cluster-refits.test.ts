/**
 * Exact refits through BullMQ (cluster/refit-jobs.ts) with `npm run worker` processes on a real Redis: the
 * basis kernel's eigendecomposition is a job; a worker killed mid-job loses it to a second worker; the models
 * built from it equal a refit in one process (compute/encoding.ts fitJob); the same features asked for twice
 * are one job, kept on the node and on the worker; a job that times out leaves the refit to the node's own
 * thread, saying why; with no worker, the node refits itself.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lastValueFrom } from 'rxjs';
import { fitJob, type RefitJob } from '../server/src/compute/encoding.ts';
import type { RidgeState } from '../server/src/compute/ridge.ts';
import { RefitQueue } from '../server/src/cluster/refit-jobs.ts';
import { RidgeWorker } from '../server/src/workers/ridge-client.ts';
import { until } from './helpers.ts';
import { clusterConfigFile, startRedis, startWorker, type WorkerProcess } from './cluster-support.ts';

/** A refit job of n stimuli with D features and N neurons, from a seeded generator (responses linear in the features plus noise). */
function syntheticJob(n: number, D: number, N: number, seed: number): RefitJob {
  let s = seed;
  const u = () => (s = (s * 16807) % 2147483647) / 2147483647 - 0.5;
  const features = Float32Array.from({ length: n * D }, u);
  const w = Float64Array.from({ length: N * D }, u);
  const y = new Float64Array(N * n);
  for (let c = 0; c < N; c++) for (let i = 0; i < n; i++) {
    let v = u();
    for (let d = 0; d < D; d++) v += w[c * D + d]! * features[i * D + d]!;
    y[c * n + i] = v;
  }
  return { rows: Array.from({ length: n }, (_, i) => 3 * i), features, D, alphas: [1, 100], N, y, cap: 3 * n };
}

/** Largest absolute difference between two fitted states (responses, residuals, losses, and the basis's Kinv, z, g, gamma). */
function stateDifference(a: RidgeState, b: RidgeState): number {
  assert.deepEqual(a.basis.rows, b.basis.rows);
  assert.equal(a.basis.n, b.basis.n);
  let worst = 0;
  const cmp = (x: ArrayLike<number>, y: ArrayLike<number>) => {
    assert.equal(x.length, y.length);
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  };
  cmp(a.y, b.y);
  cmp(a.loss, b.loss);
  cmp(a.basis.gamma, b.basis.gamma);
  cmp(a.basis.xc, b.basis.xc);
  a.basis.alphas.forEach((_, k) => {
    cmp(a.r[k]!, b.r[k]!);
    cmp(a.basis.kinv[k]!, b.basis.kinv[k]!);
    cmp(a.basis.z[k]!, b.basis.z[k]!);
    cmp(a.basis.g[k]!, b.basis.g[k]!);
  });
  return worst;
}

test('refit jobs: a killed worker\'s job done by a second, the models equal one process\'s refit, kept on node and worker; a timeout refits on the node, saying why', async () => {
  const redis = await startRedis();
  const configFile = clusterConfigFile();
  const local = new RidgeWorker();
  const fallbacks: string[] = [];
  const queue = (timeoutMs: number) => new RefitQueue({ redisUrl: redis.url, prefix: 'sharedlens:', timeoutMs, fromStimuli: 50, local, onFallback: (m) => fallbacks.push(m), log: () => {} });
  const q = queue(120_000);
  const queues = [q];
  const workers: WorkerProcess[] = [];
  try {
    // big enough that the worker's eigendecomposition takes seconds (killed while it runs)
    const job = syntheticJob(500, 48, 12, 11);
    const own = fitJob(job);
    // no worker connected: the node's own thread refits
    const alone = await lastValueFrom(q.fit$(job));
    assert.equal(q.localFits, 1);
    assert.equal(q.counts.submitted, 0);
    assert.ok(stateDifference(alone, own) <= 1e-9);
    // too few stimuli: on the node, no job (a worker connected or not)
    const w1 = await startWorker({ redisUrl: redis.url, name: 'rw1', configFile });
    workers.push(w1);
    const small = syntheticJob(30, 8, 3, 5);
    assert.ok(stateDifference(await lastValueFrom(q.fit$(small)), fitJob(small)) <= 1e-9);
    assert.equal(q.localFits, 2);
    assert.equal(q.counts.submitted, 0);
    // asked twice at once: one job; rw1 takes it and is killed while it runs
    const first = lastValueFrom(q.fit$(job));
    const again = lastValueFrom(q.fit$(job));
    await until(async () => (await q.queue.getActiveCount()) === 1, 'the refit job active on rw1', 1200);
    w1.child.kill('SIGKILL');
    const w2 = await startWorker({ redisUrl: redis.url, name: 'rw2', configFile });
    workers.push(w2);
    const [a, b] = await Promise.all([first, again]);
    assert.equal(q.counts.submitted, 1, 'one job');
    assert.equal(q.counts.deduplicated, 1, 'the second request joined it');
    assert.equal(q.lastBy, 'rw2');
    assert.match(w2.output(), /refit job done/);
    assert.doesNotMatch(w1.output(), /refit job done/);
    assert.equal(q.localFits, 2, 'no fallback');
    for (const s of [a!, b!]) {
      const d = stateDifference(s, own);
      assert.ok(d <= 1e-9, `largest difference from one process's refit ${d}`);
    }
    // asked again: the node kept the eigendecomposition (no job)
    assert.ok(stateDifference(await lastValueFrom(q.fit$(job)), own) <= 1e-9);
    assert.equal(q.cacheHits, 1);
    assert.equal(q.counts.submitted, 1);
    // another node (no copy of its own) after the finished job was dropped: a new job, answered from rw2's cache
    await q.queue.clean(0, 100, 'completed');
    const q2 = queue(120_000);
    queues.push(q2);
    assert.ok(stateDifference(await lastValueFrom(q2.fit$(job)), own) <= 1e-9);
    assert.equal(q2.counts.submitted, 1);
    assert.match(w2.output(), /refit job answered from this worker's cache/);
    // a worker connected that does not answer (stopped): the job times out, the node refits itself and says why
    const q3 = queue(1500);
    queues.push(q3);
    const other = syntheticJob(120, 16, 4, 99);
    w2.child.kill('SIGSTOP');
    try {
      const fallback = await lastValueFrom(q3.fit$(other));
      assert.ok(stateDifference(fallback, fitJob(other)) <= 1e-9);
    } finally {
      w2.child.kill('SIGCONT');
    }
    assert.equal(q3.localFits, 1);
    assert.equal(fallbacks.length, 1);
    assert.match(fallbacks[0]!, /^exact refit of 120 stimuli: refit job [0-9a-f]{12} did not finish within 2 s .*is a worker running\? npm run worker.*the models stay as they are until this node's own refit thread has refitted them$/);
    const status = (await q3.status()) as { thisNode: { timedOut: number; lastError: { message: string } } };
    assert.equal(status.thisNode.timedOut, 1);
    assert.match(status.thisNode.lastError.message, /did not finish within 2 s/);
  } finally {
    for (const w of workers) await w.stop();
    for (const x of queues) await x.close();
    await local.close();
    await redis.stop();
  }
});
