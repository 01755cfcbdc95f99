/**
 * Map and feature jobs go to the queues of the node's feature model (compute.model): a worker configured with
 * another model never takes them (before: it took a map job, refused it and took it again about once a
 * second), a worker with the node's model computes them, and with none the node's timeout names the model
 * (feature jobs: the node computes itself at once). The worker's image cache, bounded below one image,
 * deletes a job's images once it is done (cluster/image-cache.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { filter, lastValueFrom } from 'rxjs';
import { gradientMapOptions } from '../server/src/compute/shared-feature-maps.ts';
import { ensureDefaultModel } from '../server/src/compute/feature-model.ts';
import { MapQueue } from '../server/src/cluster/map-jobs.ts';
import { FeatureQueue, featureModelIdOf } from '../server/src/cluster/feature-jobs.ts';
import { ComputeClient } from '../server/src/workers/compute-client.ts';
import { demoStimuli, root, tmpDir, until } from './helpers.ts';
import { clusterConfigFile, startRedis, startWorker } from './cluster-support.ts';

test('a worker with another feature model never takes the node\'s map or feature jobs: with no other worker a map job times out naming the model, features are computed by the node; a worker with the node\'s model computes the maps', async () => {
  const redis = await startRedis();
  const cacheDir = path.join(os.tmpdir(), 'sharedlens-test-features');
  // the same network files under another id: what matters is the id the worker's config names
  const spec = ensureDefaultModel(tmpDir('sharedlens-other-model-'));
  const otherConfig = clusterConfigFile({ compute: { cacheDir, model: { id: 'other-model', dir: spec.dir, layer: spec.layer, inputSize: spec.inputSize } } });
  // w1's image cache holds less than one image (cluster.workerCacheMB): each job's images are deleted after it
  const w1Cache = tmpDir('sharedlens-worker-cache-');
  const sameConfig = clusterConfigFile({ compute: { cacheDir: w1Cache }, cluster: { heartbeatMs: 200, ttlS: 3, workerCacheMB: 0.001 } });
  const modelId = featureModelIdOf(null);
  const quick = new MapQueue({ redisUrl: redis.url, prefix: 'sharedlens:', timeoutMs: 8000, modelId, log: () => {} });
  const patient = new MapQueue({ redisUrl: redis.url, prefix: 'sharedlens:', timeoutMs: 120_000, modelId, log: () => {} });
  const local = new ComputeClient({ cacheDir, dataDir: path.join(root, 'data'), backend: 'auto', workers: 1 });
  const features = new FeatureQueue({ redisUrl: redis.url, prefix: 'sharedlens:', timeoutMs: 120_000, chunk: 4, modelId, local, cacheFolder: tmpDir('sharedlens-node-cache-'), log: () => {} });
  const workers: { stop(): Promise<void> }[] = [];
  try {
    const wx = await startWorker({ redisUrl: redis.url, name: 'wx', configFile: otherConfig });
    workers.push(wx);
    const driver = path.join(root, 'stimuli/demo', demoStimuli[5]!.file);
    const reference = path.join(root, 'stimuli/demo', demoStimuli[44]!.file);
    const weights = Float32Array.from({ length: 1792 }, (_, i) => Math.sin(i * 0.37));
    await assert.rejects(lastValueFrom(quick.explain$(driver, reference, weights, gradientMapOptions)), (e: Error) => {
      assert.match(e.message, /did not finish within 8 s \(1 jobs waiting; is a worker running\? npm run worker; only workers with feature model nsfwjs-\S+ \(compute\.model\) take these jobs\)/);
      return true;
    });
    // wx never took the job (before: refused and put back, again each second: 7 or so refusals in 8 s)
    assert.doesNotMatch(wx.output(), /refused|map job|failed/);
    // feature jobs: no worker of the node's model, so the node computes at once (no job, no wait for a timeout)
    const f = await lastValueFrom(features.features$([driver, reference]).pipe(filter((e) => e.type === 'features')));
    assert.equal(f.type === 'features' && f.features.length, 2 * 1792);
    assert.equal(features.counts.submitted, 0);
    assert.equal(features.localParts, 1);
    assert.deepEqual((await quick.workers()).map((w) => w.name), [], 'wx is not a worker of the node\'s map queue');
    // a worker with the node's model: the job comes back from wx's refusals to it
    const w1 = await startWorker({ redisUrl: redis.url, name: 'w1', configFile: sameConfig });
    workers.push(w1);
    const r = (await lastValueFrom(patient.explain$(driver, reference, weights, gradientMapOptions))) as { worker?: string; driverMap: Uint8Array };
    assert.equal(r.worker, 'w1');
    assert.ok(r.driverMap.some((v) => v > 0));
    await until(() => /least recently used images deleted/.test(w1.output()), 'w1 trims its image cache', 100);
    assert.match(w1.output(), /"evicted":2,/);
    assert.deepEqual(fs.readdirSync(path.join(w1Cache, 'cluster-images')), []);
    assert.doesNotMatch(wx.output(), /map job/);
    assert.deepEqual((await patient.workers()).map((w) => w.name), ['w1']);
  } finally {
    for (const w of workers) await w.stop();
    await Promise.all([quick.close(), patient.close(), features.close(), local.close()]);
    await redis.stop();
  }
});
