/**
 * A clustered node keeps the stimulus features its workers computed in its own disk feature cache
 * (cluster/feature-jobs.ts, compute/feature-cache.ts keys): restarted, it reads them there and asks the
 * workers for nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { filter, lastValueFrom, tap } from 'rxjs';
import { cacheFolder } from '../server/src/compute/feature-cache.ts';
import { ensureDefaultModel } from '../server/src/compute/feature-model.ts';
import { FeatureQueue, featureModelIdOf } from '../server/src/cluster/feature-jobs.ts';
import { ComputeClient, type FeatureEvent } from '../server/src/workers/compute-client.ts';
import { demoStimuli, root, tmpDir } from './helpers.ts';
import { clusterConfigFile, startRedis, startWorker } from './cluster-support.ts';

type Features = Extract<FeatureEvent, { type: 'features' }>;

test("a worker's features are kept in the node's feature cache: the node restarted reads them there, no feature jobs", async () => {
  const redis = await startRedis();
  const configFile = clusterConfigFile({ compute: { cacheDir: tmpDir('sharedlens-worker-cache-') } });
  // the node's cache starts empty (so the set goes to the worker)
  const cacheDir = tmpDir('sharedlens-node-cache-');
  const dataDir = path.join(root, 'data');
  const folder = cacheFolder(cacheDir, ensureDefaultModel(dataDir));
  const node = () => {
    const local = new ComputeClient({ cacheDir, dataDir, backend: 'auto', workers: 1 });
    return { local, q: new FeatureQueue({ redisUrl: redis.url, prefix: 'sharedlens:', timeoutMs: 120_000, chunk: 4, modelId: featureModelIdOf(null), local, cacheFolder: folder, log: () => {} }) };
  };
  const files = demoStimuli.slice(20, 28).map((s) => path.join(root, 'stimuli/demo', s.file));
  const first = node();
  let second: ReturnType<typeof node> | null = null;
  const worker = await startWorker({ redisUrl: redis.url, name: 'cw1', configFile });
  try {
    const fromWorker = (await lastValueFrom(first.q.features$(files).pipe(filter((e) => e.type === 'features')))) as Features;
    assert.equal(first.q.counts.submitted, 2, 'two parts of four images');
    assert.equal(first.q.localParts, 0);
    assert.match(fromWorker.backendReason ?? '', /^computed by cw1 \(/);
    assert.equal(first.q.storedImages, 8);
    // each image's row under its content hash, as the node's own compute would have written it
    const kept = fs.readdirSync(folder).filter((f) => f.endsWith('.f32'));
    assert.equal(kept.length, 8);
    await Promise.all([first.q.close(), first.local.close()]);
    // restarted (new queue, new compute threads, same cache folder), a worker still connected
    second = node();
    const progress: Extract<FeatureEvent, { type: 'progress' }>[] = [];
    const again = (await lastValueFrom(second.q.features$(files).pipe(tap((e) => e.type === 'progress' && progress.push(e)), filter((e) => e.type === 'features')))) as Features;
    assert.equal(second.q.counts.submitted, 0, 'no feature job');
    assert.equal(second.q.counts.deduplicated, 0, 'not even one answered from a kept result');
    assert.equal(second.q.cachedParts, 1);
    assert.ok(progress.some((p) => p.cached === 8), `read from the cache: ${JSON.stringify(progress)}`);
    assert.equal(again.dim, fromWorker.dim);
    assert.deepEqual(again.features, fromWorker.features);
  } finally {
    await worker.stop();
    if (second) await Promise.all([second.q.close(), second.local.close()]);
    await redis.stop();
  }
});
