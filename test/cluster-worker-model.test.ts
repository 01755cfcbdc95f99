/**
 * Map jobs carry the node's feature model (compute.model) like feature jobs do: a worker configured with
 * another model refuses them (a counted log line naming both models) and puts the job back, so a worker with
 * the node's model computes it, and with none the node's timeout names the refusal. The worker's image
 * cache, bounded below one image, deletes a job's images once it is done (cluster/image-cache.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { lastValueFrom } from 'rxjs';
import { gradientMapOptions } from '../server/src/compute/shared-feature-maps.ts';
import { ensureDefaultModel } from '../server/src/compute/feature-model.ts';
import { MapQueue } from '../server/src/cluster/map-jobs.ts';
import { featureModelIdOf } from '../server/src/cluster/feature-jobs.ts';
import { demoStimuli, root, tmpDir, until } from './helpers.ts';
import { clusterConfigFile, startRedis, startWorker } from './cluster-support.ts';

test('a worker with another feature model refuses map jobs (counted log line): with no other worker the job times out naming the refusal; a worker with the node\'s model then computes it', async () => {
  const redis = await startRedis();
  const cacheDir = path.join(os.tmpdir(), 'sharedlens-test-features');
  // the same network files under another id: what matters is the id the worker's config names
  const spec = ensureDefaultModel(tmpDir('sharedlens-other-model-'));
  const otherConfig = clusterConfigFile({ compute: { cacheDir, model: { id: 'other-model', dir: spec.dir, layer: spec.layer, inputSize: spec.inputSize } } });
  // w1's image cache holds less than one image (cluster.workerCacheMB): each job's images are deleted after it
  const w1Cache = tmpDir('sharedlens-worker-cache-');
  const sameConfig = clusterConfigFile({ compute: { cacheDir: w1Cache }, cluster: { heartbeatMs: 200, ttlS: 1.5, workerCacheMB: 0.001 } });
  const modelId = featureModelIdOf(null);
  const quick = new MapQueue({ redisUrl: redis.url, prefix: 'sharedlens:', timeoutMs: 8000, modelId, log: () => {} });
  const patient = new MapQueue({ redisUrl: redis.url, prefix: 'sharedlens:', timeoutMs: 120_000, modelId, log: () => {} });
  const workers: { stop(): Promise<void> }[] = [];
  try {
    const wx = await startWorker({ redisUrl: redis.url, name: 'wx', configFile: otherConfig });
    workers.push(wx);
    const driver = path.join(root, 'stimuli/demo', demoStimuli[5]!.file);
    const reference = path.join(root, 'stimuli/demo', demoStimuli[44]!.file);
    const weights = Float32Array.from({ length: 1792 }, (_, i) => Math.sin(i * 0.37));
    await assert.rejects(lastValueFrom(quick.explain$(driver, reference, weights, gradientMapOptions)), (e: Error) => {
      assert.match(e.message, /did not finish within 8 s/);
      assert.match(e.message, /refused by worker wx: it computes with feature model other-model, the node asks for nsfwjs-/);
      return true;
    });
    assert.match(wx.output(), /"refused":1,/, 'the refusal is a counted log line');
    assert.match(wx.output(), /map job refused/);
    assert.doesNotMatch(wx.output(), /map job done/);
    // a worker with the node's model: the job comes back from wx's refusals to it
    const w1 = await startWorker({ redisUrl: redis.url, name: 'w1', configFile: sameConfig });
    workers.push(w1);
    const r = (await lastValueFrom(patient.explain$(driver, reference, weights, gradientMapOptions))) as { worker?: string; driverMap: Uint8Array };
    assert.equal(r.worker, 'w1');
    assert.ok(r.driverMap.some((v) => v > 0));
    await until(() => /least recently used images deleted/.test(w1.output()), 'w1 trims its image cache', 100);
    assert.match(w1.output(), /"evicted":2,/);
    assert.deepEqual(fs.readdirSync(path.join(w1Cache, 'cluster-images')), []);
    assert.doesNotMatch(wx.output(), /map job done/);
  } finally {
    for (const w of workers) await w.stop();
    await Promise.all([quick.close(), patient.close()]);
    await redis.stop();
  }
});
