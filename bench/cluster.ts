/**
 * Cluster benchmark (issue 18, docs/deploy.md), on a real redis-server:
 * - maps per second through BullMQ with one and with two `npm run worker` processes, against this process
 *   computing the same pairs itself one at a time (what a node without workers does), in the same run;
 * - stimulus features per second as feature jobs (parts of 8 images) with one and with two workers, against
 *   this process's compute threads on the same images, in the same run; every cache empty in each round;
 * - map and feature jobs fetch their images over HTTP by content hash from a node's image route
 *   (http/cluster-images.ts behind the cluster key), as workers do from a node;
 * - an exact refit (BENCH_CLUSTER_REFIT_STIMULI, default 600, stimuli x 1,792 features x 384 neurons x the
 *   server's alphas): this process alone against the eigendecomposition from a worker (end to end, and the
 *   node's own share: the same refit again with the eigendecomposition kept);
 * - jobsLost: jobs not completed when one of two workers is killed mid-run (target 0);
 * - crossNodeUpdateP99Ms: a completed trial on node A (rig) to its stats:delta on a dashboard on node B,
 *   against the same delta on a dashboard on node A itself (target < 50 ms), and the hop alone (B's delta
 *   after A's, per trial), with the three slowest trials. Deltas are throttled (dashboard.deltaThrottleMs
 *   200): a trial inside the window of the previous emission waits for its end; the trials here are 250 ms
 *   apart, and the session's start no longer takes a window (the first two trials did: 115 and 62 ms).
 * BENCH_CLUSTER_MAPS (default 24) pairs per configuration; BENCH_CLUSTER_TRIALS (default 120) trials;
 * BENCH_CLUSTER_FEATURE_IMAGES (default 64) images per feature round.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { performance } from 'node:perf_hooks';
import { filter, lastValueFrom } from 'rxjs';
import { io, type Socket } from 'socket.io-client';
import { RigClient, type StatsDelta } from '@sharedlens/shared';
import { loadConfig } from '../server/src/config.ts';
import { featureMoments, type MapOptions } from '../server/src/compute/shared-feature-maps.ts';
import { MapQueue } from '../server/src/cluster/map-jobs.ts';
import { FeatureQueue, featureModelIdOf } from '../server/src/cluster/feature-jobs.ts';
import { ClusterNode } from '../server/src/cluster/cluster-node.ts';
import { ImageIndex } from '../server/src/cluster/job-queue.ts';
import { RefitQueue } from '../server/src/cluster/refit-jobs.ts';
import { clusterImagesRouter } from '../server/src/http/cluster-images.ts';
import { refusals } from '../server/src/auth/guards.ts';
import { cacheFolder } from '../server/src/compute/feature-cache.ts';
import { ensureDefaultModel } from '../server/src/compute/feature-model.ts';
import { fitJob, type RefitJob } from '../server/src/compute/encoding.ts';
import { ComputeClient, type FeatureEvent } from '../server/src/workers/compute-client.ts';
import { RidgeWorker } from '../server/src/workers/ridge-client.ts';
import { clusterConfigFile, startNode, startRedis, startWorker, type WorkerProcess } from '../test/cluster-support.ts';
import { sessionStart, signIn, TOKEN, SIGN_IN_TOKEN, until } from '../test/helpers.ts';
import { demoStimuli, root, tmpDir } from './support.ts';

const MAPS = Number(process.env.BENCH_CLUSTER_MAPS ?? 24);
const TRIALS = Number(process.env.BENCH_CLUSTER_TRIALS ?? 120);
const FEATURE_IMAGES = Number(process.env.BENCH_CLUSTER_FEATURE_IMAGES ?? 64);
const REFIT_STIMULI = Number(process.env.BENCH_CLUSTER_REFIT_STIMULI ?? 600);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

export async function run(): Promise<Record<string, unknown>> {
  const redis = await startRedis();
  const cacheDir = path.join(os.tmpdir(), 'sharedlens-bench-cluster-cache');
  // the workers' own cache folder (features and images), emptied of features before each feature round
  const workerCache = tmpDir();
  const configFile = clusterConfigFile({ compute: { cacheDir: workerCache } });
  const workers: WorkerProcess[] = [];
  // the images served as a node serves them to its workers: by content hash behind the cluster's key
  const imageNode = await ClusterNode.connect({ redisUrl: redis.url, nodeId: 'bench-images', heartbeatMs: 1000, ttlS: 5, log: () => {} });
  const index = new ImageIndex();
  const imageApp = express();
  imageApp.use('/api/cluster/images', clusterImagesRouter(imageNode, index, refusals(() => {})));
  const imageServer = await new Promise<import('node:http').Server>((resolve) => {
    const srv = imageApp.listen(0, '127.0.0.1', () => resolve(srv));
  });
  const images = { index, url: () => `http://127.0.0.1:${(imageServer.address() as AddressInfo).port}` };
  try {
    // the server's own map settings (config/default.json compute.maps), with the demo set's feature moments
    const mapsCfg = loadConfig(root, { RIG_TOKENS: TOKEN }).compute.maps;
    const file = (i: number) => path.join(root, 'stimuli/demo', demoStimuli[i % demoStimuli.length]!.file);
    const local = new ComputeClient({ cacheDir, dataDir: tmpDir(), backend: 'auto', workers: 2 });
    const feats = await lastValueFrom(local.features$(demoStimuli.map((_, i) => file(i))));
    if (feats.type !== 'features') throw new Error('no features');
    const m = featureMoments(feats.features, feats.dim);
    const options: MapOptions = { positiveOnly: mapsCfg.positiveOnly, integratedSteps: mapsCfg.integratedSteps, smoothSigmaPx: mapsCfg.smoothSigmaPx, method: mapsCfg.method, features: mapsCfg.features, layer: mapsCfg.layer, smoothSamples: mapsCfg.smoothSamples, featureMean: m.mean, featureSd: m.sd };
    /** Pair k of a round: its own weights (so every job is new), driver k, reference k + 30. */
    const pair = (r: number, k: number) => {
      let seed = r * 1000 + k + 1;
      const w = Float32Array.from({ length: feats.dim }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647) - 0.5);
      const known = { phiO: feats.features.slice((k % 72) * feats.dim, ((k % 72) + 1) * feats.dim), phiRef: feats.features.slice(((k + 30) % 72) * feats.dim, (((k + 30) % 72) + 1) * feats.dim) };
      return [file(k), file(k + 30), w, options, known] as const;
    };

    // baseline: this process, one pair at a time (a node without workers), after one warm-up pair
    await lastValueFrom(local.explain$(...pair(0, 0)));
    let t0 = performance.now();
    for (let k = 0; k < MAPS; k++) await lastValueFrom(local.explain$(...pair(1, k)));
    const mapsPerSecOneProcess = MAPS / ((performance.now() - t0) / 1000);
    await local.close();

    // features: this process's threads (an empty cache) on FEATURE_IMAGES images, after a warm-up image
    type Features = Extract<FeatureEvent, { type: 'features' }>;
    const featureFiles = Array.from({ length: FEATURE_IMAGES }, (_, i) => file(i + 1));
    const ownFeatures = new ComputeClient({ cacheDir: tmpDir(), dataDir: tmpDir(), backend: 'auto', workers: 2 });
    await lastValueFrom(ownFeatures.features$([file(0)]));
    t0 = performance.now();
    await lastValueFrom(ownFeatures.features$(featureFiles));
    const featuresPerSecOneProcess = FEATURE_IMAGES / ((performance.now() - t0) / 1000);
    const workerFeatures = path.dirname(cacheFolder(workerCache, ensureDefaultModel(path.join(root, 'data'))));
    /** The same images as feature jobs (parts of 8) with the workers' feature caches, the node's and the kept results emptied. */
    const featureRound = async () => {
      fs.rmSync(workerFeatures, { recursive: true, force: true });
      const fq = new FeatureQueue({ redisUrl: redis.url, prefix: 'sharedlens:', images, timeoutMs: 600_000, chunk: 8, modelId: featureModelIdOf(null), local: ownFeatures, cacheFolder: tmpDir(), log: () => {} });
      try {
        await fq.queue.clean(0, 10_000, 'completed');
        const start = performance.now();
        const r = (await lastValueFrom(fq.features$(featureFiles).pipe(filter((e) => e.type === 'features')))) as Features;
        if (fq.localParts > 0 || fq.cachedParts > 0) throw new Error(`feature round: ${fq.localParts} parts computed by this process, ${fq.cachedParts} read from its cache`);
        return { perSec: FEATURE_IMAGES / ((performance.now() - start) / 1000), by: r.backendReason };
      } finally {
        await fq.close();
      }
    };

    const q = new MapQueue({ redisUrl: redis.url, prefix: 'sharedlens:', images, timeoutMs: 600_000, modelId: featureModelIdOf(null), log: () => {} });
    /** MAPS jobs of a round, 8 in flight (config cluster.mapJobsInFlight); completed count and seconds. */
    const runRound = async (r: number, during?: (done: number) => void) => {
      let done = 0;
      let failed = 0;
      const start = performance.now();
      let next = 0;
      const lane = async () => {
        while (next < MAPS) {
          const k = next++;
          try {
            await lastValueFrom(q.explain$(...pair(r, k)));
            done++;
            during?.(done);
          } catch {
            failed++;
          }
        }
      };
      await Promise.all(Array.from({ length: 8 }, lane));
      return { done, failed, seconds: (performance.now() - start) / 1000 };
    };
    const warm = async (r: number, n: number) => Promise.all(Array.from({ length: n }, (_, k) => lastValueFrom(q.explain$(...pair(r, k)))));
    workers.push(await startWorker({ redisUrl: redis.url, name: 'bench-w1', configFile, lockMs: 3000 }));
    await warm(10, 2);
    const one = await runRound(2);
    const featuresOne = await featureRound();

    // an exact refit: this process alone, then with a worker's eigendecomposition (end to end; again, kept: the node's share)
    const refitJob = ((): RefitJob => {
      const n = REFIT_STIMULI;
      const N = 384;
      let seed = 5;
      const u = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) - 0.5;
      const x = new Float32Array(n * feats.dim);
      for (let i = 0; i < n; i++) for (let d = 0; d < feats.dim; d++) x[i * feats.dim + d] = feats.features[(i % 72) * feats.dim + d]! * (1 + 0.2 * u());
      const y = Float64Array.from({ length: N * n }, u);
      return { rows: Array.from({ length: n }, (_, i) => i), features: x, D: feats.dim, alphas: loadConfig(root, { RIG_TOKENS: TOKEN }).compute.alphas, N, y, cap: n };
    })();
    const fitter = new RidgeWorker();
    const rq = new RefitQueue({ redisUrl: redis.url, prefix: 'sharedlens:', timeoutMs: 600_000, fromStimuli: 1, local: fitter, log: () => {} });
    t0 = performance.now();
    const alone = fitJob(refitJob);
    const refitMsOneProcess = performance.now() - t0;
    t0 = performance.now();
    const viaWorker = await lastValueFrom(rq.fit$(refitJob));
    const refitMsWithWorker = performance.now() - t0;
    t0 = performance.now();
    await lastValueFrom(rq.fit$(refitJob));
    const refitNodeMsWithWorker = performance.now() - t0;
    let refitMaxDiff = 0;
    alone.loss.forEach((v, i) => (refitMaxDiff = Math.max(refitMaxDiff, Math.abs(v - viaWorker.loss[i]!))));
    if (rq.localFits > 0 || rq.cacheHits !== 1) throw new Error(`refit: ${rq.localFits} refits done here, ${rq.cacheHits} cache hits`);
    await rq.close();
    await fitter.close();
    workers.push(await startWorker({ redisUrl: redis.url, name: 'bench-w2', configFile, lockMs: 3000 }));
    await warm(11, 4);
    const two = await runRound(3);
    const featuresTwo = await featureRound();
    await ownFeatures.close();
    // one of the two workers killed once a quarter of the round is done: its job comes back to the other
    let killedAt = -1;
    const killed = await runRound(4, (done) => {
      if (killedAt < 0 && done >= MAPS / 4) {
        killedAt = done;
        workers[0]!.child.kill('SIGKILL');
      }
    });
    const jobsLost = MAPS - killed.done;
    const queueStatus = await q.status();
    await q.close();

    // cross-node updates: rig on A, dashboards on A and on B watching the session
    const dataDir = tmpDir();
    const nodeConfig = clusterConfigFile({ compute: { cacheDir } });
    const [a, b] = await Promise.all([startNode({ redisUrl: redis.url, nodeId: 'bench-a', dataDir, configFile: nodeConfig }), startNode({ redisUrl: redis.url, nodeId: 'bench-b', dataDir, configFile: nodeConfig })]);
    const rig = new RigClient({ url: a.url, token: TOKEN });
    const sockets: Socket[] = [];
    try {
      await rig.connect();
      const C = 32;
      const sessionId = await rig.startSession(sessionStart(C));
      const seen = { a: new Map<number, number>(), b: new Map<number, number>() };
      for (const [name, n] of [['a', a], ['b', b]] as const) {
        const s = io(`${n.url}/dashboard`, { transports: ['websocket'], forceNew: true, extraHeaders: { cookie: await signIn(n.url, { token: SIGN_IN_TOKEN }) } });
        sockets.push(s);
        s.on('stats:delta', (d: StatsDelta) => d.sessionId === sessionId && !seen[name].has(d.trialsCompleted) && seen[name].set(d.trialsCompleted, performance.now()));
        await until(async () => ((await s.timeout(5000).emitWithAck('session:watch', { sessionId })) as { data?: unknown }).data, `watch on ${name}`);
      }
      const sentAt = new Map<number, number>();
      for (let t = 0; t < TRIALS; t++) {
        const stim = demoStimuli[t % demoStimuli.length]!.id;
        const bins = new Uint16Array(400 * C).map((_, i) => (i * 7 + t) % 4 === 0 ? 1 : 0);
        await Promise.all([rig.onset(t, stim, t * 400 + 100), rig.binned(t * 400, 1, bins)]);
        sentAt.set(t + 1, performance.now());
        await rig.offset(t, stim, t * 400 + 300);
        // 250 ms apart: above the delta throttle (dashboard.deltaThrottleMs 200), so each trial's delta leads
        await new Promise((r) => setTimeout(r, 250));
      }
      await new Promise((r) => setTimeout(r, 1000));
      const lat = (name: 'a' | 'b') => [...sentAt].filter(([n]) => seen[name].has(n)).map(([n, at]) => seen[name].get(n)! - at);
      const onB = lat('b');
      const onA = lat('a');
      // the Redis hop alone: per trial, B's delta after A's own dashboard got the same one
      const hop = [...sentAt.keys()].filter((n) => seen.a.has(n) && seen.b.has(n)).map((n) => seen.b.get(n)! - seen.a.get(n)!);
      // where the tail is: the slowest trials on B, with A's own dashboard's time for the same trial
      const slowest = [...sentAt]
        .filter(([n]) => seen.b.has(n))
        .map(([n, at]) => ({ trial: n, onBMs: round(seen.b.get(n)! - at, 1), onAMs: seen.a.has(n) ? round(seen.a.get(n)! - at, 1) : null }))
        .sort((x, y) => y.onBMs - x.onBMs)
        .slice(0, 3);
      const result = {
        maps: MAPS,
        mapMethod: `${options.method}/${options.features}`,
        mapsPerSecOneProcess: round(mapsPerSecOneProcess, 3),
        mapsPerSecWorkers1: round(one.done / one.seconds, 3),
        mapsPerSecWorkers2: round(two.done / two.seconds, 3),
        workers1VsOneProcess: round(one.done / one.seconds / mapsPerSecOneProcess),
        workers2VsWorkers1: round(two.done / two.seconds / (one.done / one.seconds)),
        featureImages: FEATURE_IMAGES,
        featuresPerSecOneProcess: round(featuresPerSecOneProcess, 3),
        featuresPerSecWorkers1: round(featuresOne.perSec, 3),
        featuresPerSecWorkers2: round(featuresTwo.perSec, 3),
        featuresWorkers1VsOneProcess: round(featuresOne.perSec / featuresPerSecOneProcess),
        featuresWorkers2VsWorkers1: round(featuresTwo.perSec / featuresOne.perSec),
        featuresComputedBy: featuresTwo.by,
        imagesOver: 'HTTP (a node\'s /api/cluster/images route)',
        refitStimuli: REFIT_STIMULI,
        refitMsOneProcess: Math.round(refitMsOneProcess),
        refitMsWithWorker: Math.round(refitMsWithWorker),
        refitNodeMsWithWorker: Math.round(refitNodeMsWithWorker),
        refitNodeShare: round(refitNodeMsWithWorker / refitMsOneProcess),
        refitMaxLossDiff: refitMaxDiff,
        jobsLost,
        killedAfterJobs: killedAt,
        trials: TRIALS,
        deltasSeenOnB: onB.length,
        crossNodeUpdateP50Ms: round(pct(onB, 50), 1),
        crossNodeUpdateP99Ms: round(pct(onB, 99), 1),
        sameNodeUpdateP99Ms: round(pct(onA, 99), 1),
        crossNodeHopP50Ms: round(pct(hop, 50), 1),
        crossNodeHopP99Ms: round(pct(hop, 99), 1),
        crossVsSameNodeP99: round(pct(onB, 99) / pct(onA, 99)),
        crossNodeSlowestTrials: slowest,
        cores: os.cpus().length,
        queueAfter: queueStatus,
      };
      console.log(`  maps/s: one process ${result.mapsPerSecOneProcess}, 1 worker ${result.mapsPerSecWorkers1} (x${result.workers1VsOneProcess}), 2 workers ${result.mapsPerSecWorkers2} (x${result.workers2VsWorkers1} of 1 worker) on ${result.cores} cores; jobs lost with a worker killed: ${jobsLost}`);
      console.log(`  features/s (${FEATURE_IMAGES} images, parts of 8): one process ${result.featuresPerSecOneProcess}, 1 worker ${result.featuresPerSecWorkers1} (x${result.featuresWorkers1VsOneProcess}), 2 workers ${result.featuresPerSecWorkers2} (x${result.featuresWorkers2VsWorkers1} of 1 worker); images over HTTP`);
      console.log(`  exact refit of ${REFIT_STIMULI} stimuli: this process ${result.refitMsOneProcess} ms; with a worker's eigendecomposition ${result.refitMsWithWorker} ms end to end, the node's share ${result.refitNodeMsWithWorker} ms (x${result.refitNodeShare}); largest loss difference ${refitMaxDiff}`);
      console.log(`  trial on A -> delta on B: p50 ${result.crossNodeUpdateP50Ms} ms, p99 ${result.crossNodeUpdateP99Ms} ms (target < 50); on A itself p99 ${result.sameNodeUpdateP99Ms} ms (x${result.crossVsSameNodeP99}); B after A per trial p50 ${result.crossNodeHopP50Ms} ms, p99 ${result.crossNodeHopP99Ms} ms`);
      console.log(`  slowest trials on B (on A): ${slowest.map((s) => `#${s.trial} ${s.onBMs} ms (${s.onAMs} ms)`).join(', ')}`);
      return result;
    } finally {
      rig.close();
      for (const s of sockets) s.close();
      await Promise.all([a.stop(), b.stop()]);
    }
  } finally {
    for (const w of workers) await w.stop();
    imageServer.close();
    await imageNode.close();
    await redis.stop();
  }
}
