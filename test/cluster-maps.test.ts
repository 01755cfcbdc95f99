/**
 * Shared-feature maps and stimulus features as BullMQ jobs (cluster/map-jobs.ts, feature-jobs.ts) with `npm run
 * worker` processes on a real Redis: a worker killed mid-job loses it to a second worker, whose maps (and
 * features) equal the ones this process computes itself; the same pair asked for twice is one job; a map job
 * no worker takes times out with a clear message; with no worker, features are computed by the node.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { filter, lastValueFrom, tap } from 'rxjs';
import { gradientMapOptions } from '../server/src/compute/shared-feature-maps.ts';
import { MapQueue } from '../server/src/cluster/map-jobs.ts';
import { FeatureQueue, featureModelIdOf } from '../server/src/cluster/feature-jobs.ts';
import { ComputeClient, type FeatureEvent } from '../server/src/workers/compute-client.ts';
import { demoStimuli, root, tmpDir, until } from './helpers.ts';
import { clusterConfigFile, freePort, startRedis, startWorker } from './cluster-support.ts';

test('a killed worker\'s map job is done by a second worker, with the maps one process computes; duplicates are one job; no worker: a clear timeout', async () => {
  const redis = await startRedis();
  const cacheDir = path.join(os.tmpdir(), 'sharedlens-test-features');
  const configFile = clusterConfigFile({ compute: { cacheDir } });
  const logs: string[] = [];
  const q = new MapQueue({ redisUrl: redis.url, prefix: 'sharedlens:', timeoutMs: 120_000, modelId: featureModelIdOf(null), log: (_l, msg) => logs.push(msg) });
  const lonely = new MapQueue({ redisUrl: redis.url, prefix: 'nobody-works-here:', timeoutMs: 1000, modelId: featureModelIdOf(null), log: (_l, msg) => logs.push(msg) });
  const local = new ComputeClient({ cacheDir, dataDir: path.join(root, 'data'), backend: 'auto' });
  const workers: { stop(): Promise<void> }[] = [];
  try {
    const w1 = await startWorker({ redisUrl: redis.url, name: 'w1', configFile });
    workers.push(w1);
    const driver = path.join(root, 'stimuli/demo', demoStimuli[3]!.file);
    const reference = path.join(root, 'stimuli/demo', demoStimuli[40]!.file);
    let seed = 7;
    const weights = Float32Array.from({ length: 1792 }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647) - 0.5);
    const first = lastValueFrom(q.explain$(driver, reference, weights, gradientMapOptions));
    const again = lastValueFrom(q.explain$(driver, reference, weights, gradientMapOptions));
    // w1 takes the job (it loads the network first: seconds) and is killed while it runs
    await until(async () => (await q.queue.getActiveCount()) === 1, 'the job active on w1', 1200);
    w1.child.kill('SIGKILL');
    const w2 = await startWorker({ redisUrl: redis.url, name: 'w2', configFile });
    workers.push(w2);
    const [a, b] = (await Promise.all([first, again])) as (Awaited<typeof first> & { worker: string })[];
    assert.equal(a!.worker, 'w2');
    assert.equal(q.counts.submitted, 1, 'one job');
    assert.equal(q.counts.deduplicated, 1, 'the second request joined it');
    assert.deepEqual(b!.driverMap, a!.driverMap);
    assert.match(w2.output(), /goes back to the queue|map job done/);
    const own = await lastValueFrom(local.explain$(driver, reference, weights, gradientMapOptions));
    assert.equal(a!.size, own.size);
    assert.ok(Math.abs(a!.similarity - own.similarity) < 1e-6, `similarity ${a!.similarity} vs ${own.similarity}`);
    for (const side of ['driverMap', 'referenceMap'] as const) {
      let worst = 0;
      a![side].forEach((v, i) => (worst = Math.max(worst, Math.abs(v - own[side][i]!))));
      assert.ok(worst <= 1, `${side}: largest difference ${worst}/255`);
      assert.ok(own[side].some((v) => v > 0), `${side} is not blank`);
    }
    // asked again after it finished: answered from the kept result, no new job
    const third = await lastValueFrom(q.explain$(driver, reference, weights, gradientMapOptions));
    assert.deepEqual(third.referenceMap, a!.referenceMap);
    assert.equal(q.counts.submitted, 1);
    const status = (await q.status()) as { counts: Record<string, number>; workers: { name: string }[] };
    assert.equal(status.counts.completed, 1);
    assert.deepEqual(status.workers.map((w) => w.name), ['w2']);
    // a queue no worker takes from: the job fails after its timeout, saying why
    await assert.rejects(lastValueFrom(lonely.explain$(driver, reference, weights, gradientMapOptions)), /did not finish within 1 s \(1 jobs waiting; is a worker running\? npm run worker; only workers with feature model nsfwjs-\S+ \(compute\.model\) take these jobs\)/);
    const lonelyStatus = (await lonely.status()) as { counts: Record<string, number>; oldestWaitingAgeMs: number | null; thisNode: { timedOut: number; lastError: { message: string } } };
    // the job no worker took left the queue (a worker that starts later does not compute what nobody waits for)
    assert.equal(lonelyStatus.counts.waiting, 0);
    assert.equal(lonelyStatus.oldestWaitingAgeMs, null);
    assert.equal(lonelyStatus.thisNode.timedOut, 1);
    assert.match(lonelyStatus.thisNode.lastError.message, /did not finish within 1 s/);
  } finally {
    for (const w of workers) await w.stop();
    await Promise.all([q.close(), lonely.close(), local.close()]);
    await redis.stop();
  }
});

test('stimulus features as jobs: a set in parts over the workers, a killed worker\'s part redone by another, the features this process computes; no worker: computed here', async () => {
  const redis = await startRedis();
  // the workers start with an empty cache (they compute, not read); this process reads the tests' shared cache
  const configFile = clusterConfigFile({ compute: { cacheDir: tmpDir('sharedlens-worker-cache-') } });
  const local = new ComputeClient({ cacheDir: path.join(os.tmpdir(), 'sharedlens-test-features'), dataDir: path.join(root, 'data'), backend: 'auto', workers: 1 });
  const logs: string[] = [];
  // this node's own cache of workers' features: empty (the parts go to the workers; cluster-feature-cache tests keeping them)
  const q = new FeatureQueue({ redisUrl: redis.url, prefix: 'sharedlens:', timeoutMs: 120_000, chunk: 4, modelId: featureModelIdOf(null), local, cacheFolder: tmpDir('sharedlens-node-cache-'), log: (_l, msg) => logs.push(msg) });
  const workers: { stop(): Promise<void> }[] = [];
  const files = demoStimuli.slice(0, 12).map((s) => path.join(root, 'stimuli/demo', s.file));
  type Features = Extract<FeatureEvent, { type: 'features' }>;
  try {
    // no worker connected: this node's own threads, as without a cluster
    const own = (await lastValueFrom(q.features$(files).pipe(filter((e) => e.type === 'features')))) as Features;
    assert.equal(q.localParts, 1);
    assert.equal(q.counts.submitted, 0);
    assert.ok(logs.some((m) => /no worker takes feature jobs: this node computes/.test(m)), logs.join('\n'));
    const w1 = await startWorker({ redisUrl: redis.url, name: 'fw1', configFile });
    workers.push(w1);
    const progress: number[] = [];
    const viaWorkers = lastValueFrom(q.features$(files).pipe(tap((e) => e.type === 'progress' && progress.push(e.done)), filter((e) => e.type === 'features')));
    // fw1 takes the first part (loading the network first: seconds) and is killed while it runs
    await until(async () => (await q.queue.getActiveCount()) === 1, 'a feature job active on fw1', 1200);
    w1.child.kill('SIGKILL');
    const w2 = await startWorker({ redisUrl: redis.url, name: 'fw2', configFile });
    workers.push(w2);
    const r = (await viaWorkers) as Features;
    assert.equal(q.counts.submitted, 3, 'three parts of four images');
    assert.equal(q.localParts, 1, 'no part fell back to this node');
    assert.deepEqual(progress, [4, 8, 12]);
    assert.match(r.backendReason ?? '', /^computed by fw2 \(/);
    assert.equal(r.modelId, own.modelId);
    assert.equal(r.dim, own.dim);
    let worst = 0;
    r.features.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - own.features[i]!))));
    assert.ok(worst < 1e-4, `largest difference from this process's features ${worst}`);
    assert.match(w2.output(), /feature job done/);
    const status = (await q.status()) as { counts: Record<string, number>; workers: { name: string }[] };
    assert.equal(status.counts.completed, 3);
    assert.deepEqual(status.workers.map((w) => w.name), ['fw2']);
  } finally {
    for (const w of workers) await w.stop();
    await Promise.all([q.close(), local.close()]);
    await redis.stop();
  }
});

test('npm run worker: --help, a wrong option, no Redis named, an unreachable Redis: each a clear message and exit status, no stack trace', async () => {
  const worker = (args: string[], env: Record<string, string> = {}) => spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'server/src/cluster/worker-cli.ts'), ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, REDIS_URL: '', ...env }, timeout: 60_000 });
  const help = worker(['--help']);
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /npm run worker -- \[--redis URL\][\s\S]*--lock-ms MS/);
  const bad = worker(['--no-such-option']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /Unknown option '--no-such-option'[\s\S]*--help lists the options/);
  const none = worker([]);
  assert.equal(none.status, 2);
  assert.match(none.stderr, /no Redis to take jobs from: pass --redis/);
  const port = await freePort();
  const away = worker(['--redis', `redis://:secret@127.0.0.1:${port}`]);
  assert.equal(away.status, 4);
  assert.match(away.stderr, new RegExp(`cannot reach Redis at redis://\\*\\*\\*@127\\.0\\.0\\.1:${port}`));
  for (const r of [bad, none, away]) assert.ok(!/\n\s+at /.test(r.stderr) && !r.stderr.includes('secret'), r.stderr);
});

test('Redis URLs: options for BullMQ (user, password, database, TLS) and the form shown in logs (no password)', async () => {
  const { redisOptions } = await import('../server/src/cluster/job-queue.ts');
  const { redactUrl } = await import('../server/src/cluster/cluster-node.ts');
  assert.deepEqual(redisOptions('redis://127.0.0.1:6390'), { host: '127.0.0.1', port: 6390, maxRetriesPerRequest: null });
  assert.deepEqual(redisOptions('rediss://lab:p%40ss@redis.lab:6380/2'), { host: 'redis.lab', port: 6380, username: 'lab', password: 'p@ss', db: 2, tls: {}, maxRetriesPerRequest: null });
  assert.deepEqual(redisOptions('redis://:only-password@[::1]'), { host: '::1', port: 6379, password: 'only-password', maxRetriesPerRequest: null });
  assert.equal(redactUrl('rediss://lab:p%40ss@redis.lab:6380/2'), 'rediss://***@redis.lab:6380/2');
  assert.equal(redactUrl('redis://127.0.0.1:6390'), 'redis://127.0.0.1:6390');
});
