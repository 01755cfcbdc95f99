/**
 * The worker's side of the compute jobs (map-jobs.ts, feature-jobs.ts, refit-jobs.ts): one BullMQ worker per
 * queue, whose processors fetch the images by hash (once; kept in the worker's folder up to a bound: image-cache.ts),
 * compute with the ComputeClient (tfjs-node-gpu where it loads, wasm otherwise: compute/backend.ts) and return
 * the result. BullMQ renews a
 * job's lock while it runs; a killed worker stops renewing, and after `lockMs` another worker's stalled-job
 * check puts the job back in the queue.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { filter, lastValueFrom } from 'rxjs';
import type { ComputeClient, FeatureEvent } from '../workers/compute-client.ts';
import { CLUSTER_KEY_HEADER } from './cluster-node.ts';
import { FEATURE_QUEUE, encodeFeatureResult, type FeatureJobData, type FeatureJobResult } from './feature-jobs.ts';
import { blobKey, bullPrefix, modelQueueName, redisOptions } from './job-queue.ts';
import { ImageCache } from './image-cache.ts';
import { MAP_QUEUE, decodeMapJob, encodeMapResult, type MapJobData, type MapJobResult } from './map-jobs.ts';
import { EIGEN_CACHE_ENTRIES, REFIT_BLOB_TTL_S, REFIT_QUEUE, RecentMap, blobByHash, encodeEigen, sha256, type RefitJobData, type RefitJobResult } from './refit-jobs.ts';
import { RidgeWorker } from '../workers/ridge-client.ts';

/** Where a worker gets an image it does not have: the node named in the job over HTTP, else Redis. */
export interface ImageFetch {
  redis: Pick<Redis, 'getBuffer'>;
  prefix: string;
  /** The cluster's key, read from Redis when first needed (a node asks for it on image requests). */
  key: () => Promise<string>;
}

/**
 * An image's bytes by content hash, from `from` (the node that queued the job) or from Redis; the bytes must
 * have the hash. The worker keeps them in its bounded cache folder (image-cache.ts).
 */
export async function fetchImageBytes(src: ImageFetch, hash: string, from?: string): Promise<Buffer> {
  if (!/^[0-9a-f]{64}$/.test(hash)) throw new Error(`not an image hash: ${hash.slice(0, 80)}`);
  let bytes: Buffer | null;
  if (from) {
    const url = new URL(`/api/cluster/images/${hash}`, from);
    const res = await fetch(url, { headers: { [CLUSTER_KEY_HEADER]: await src.key() }, signal: AbortSignal.timeout(30_000) }).catch((e: Error) => {
      throw new Error(`image ${hash.slice(0, 12)}... from ${url.origin}: ${e.message}`);
    });
    if (!res.ok) throw new Error(`image ${hash.slice(0, 12)}... from ${url.origin}: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
    bytes = Buffer.from(await res.arrayBuffer());
  } else {
    bytes = await src.redis.getBuffer(blobKey(src.prefix, hash));
    if (!bytes) throw new Error(`image ${hash.slice(0, 12)}... is not in Redis (expired, or the node that queued the job is gone)`);
  }
  if (createHash('sha256').update(bytes).digest('hex') !== hash) throw new Error(`image ${hash.slice(0, 12)}... from ${from ?? 'Redis'} does not match its hash`);
  return bytes;
}

export interface JobWorkerOptions {
  redisUrl: string;
  prefix: string;
  /** The worker's cache folder: images by hash under cluster-images/. */
  cacheDir: string;
  /** Bound of the images kept there (cluster.workerCacheMB): the least recently used go first. */
  cacheBytes: number;
  client: ComputeClient;
  /** The feature model id of `client` (compute.model): the worker takes map and feature jobs from that model's queues only. */
  modelId: string;
  name: string;
  /** Map jobs at once (each runs the pair's two sides on the client's threads); feature jobs run one at a time. */
  concurrency: number;
  /** Lock time of a job: a worker silent this long (killed, or cut off) loses the job to another. */
  lockMs: number;
  log: (level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown>) => void;
}

/**
 * A job of another feature model than the worker's (only a queue name shared by two model ids could bring one:
 * job-queue.ts modelQueueName): its maps or features would be silently wrong for the node's encoding models.
 */
function otherModel(job: Job<{ modelId?: string }>, opts: JobWorkerOptions): UnrecoverableError | null {
  return job.data.modelId === opts.modelId ? null : new UnrecoverableError(`worker ${opts.name} computes with feature model ${opts.modelId}, the job asks for ${job.data.modelId ?? 'none'} (compute.model)`);
}

/**
 * Starts taking map, feature and refit jobs (map and feature jobs from the queues of its own feature model, so
 * a worker never takes a job it must refuse); close() waits for the running ones.
 */
export function startJobWorker(opts: JobWorkerOptions): { workers: Worker[]; done: () => number; close: () => Promise<void> } {
  const redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
  redis.on('error', (e: Error) => opts.log('warn', `redis: ${e.message}`, {}));
  let key: Promise<string> | null = null;
  const src: ImageFetch = { redis, prefix: opts.prefix, key: () => (key ??= redis.get(`${opts.prefix}cluster-key`).then((k) => k ?? '')) };
  const images = new ImageCache(path.join(opts.cacheDir, 'cluster-images'), opts.cacheBytes, (hash, from) => fetchImageBytes(src, hash, from), (msg, fields) => opts.log('info', msg, fields));
  let done = 0;
  const maps = async (job: Job<MapJobData & { from?: string }>): Promise<MapJobResult> => {
    const wrong = otherModel(job, opts);
    if (wrong) throw wrong;
    const started = Date.now();
    const { weights, options, known } = decodeMapJob(job.data);
    const r = await images.use([job.data.driver, job.data.reference], job.data.from, ([driverFile, referenceFile]) => lastValueFrom(opts.client.explain$(driverFile!, referenceFile!, weights, options, known)));
    done++;
    opts.log('info', 'map job done', { jobId: job.id, ms: Date.now() - started, backend: r.backend, attempt: job.attemptsMade + 1 });
    return encodeMapResult(r, opts.name);
  };
  const features = async (job: Job<FeatureJobData & { from?: string }>): Promise<FeatureJobResult> => {
    const wrong = otherModel(job, opts);
    if (wrong) throw wrong;
    const started = Date.now();
    const r = await images.use(job.data.images, job.data.from, async (files) => (await lastValueFrom(opts.client.features$(files).pipe(filter((e) => e.type === 'features')))) as Extract<FeatureEvent, { type: 'features' }>);
    done++;
    opts.log('info', 'feature job done', { jobId: job.id, images: job.data.images.length, ms: Date.now() - started, backend: r.backend, attempt: job.attemptsMade + 1 });
    return encodeFeatureResult(r, opts.name);
  };
  // refit jobs: the basis kernel's eigendecomposition in a thread (the event loop keeps renewing the job's lock),
  // kept by the features' hash for the same features asked for again (a new job after the finished one was dropped)
  const fitter = new RidgeWorker((message) => opts.log('warn', message, {}));
  const eigens = new RecentMap<{ hash: string; bytes: Buffer }>(EIGEN_CACHE_ENTRIES);
  const refits = async (job: Job<RefitJobData>): Promise<RefitJobResult> => {
    const { n, D } = job.data;
    const started = Date.now();
    const key = `${job.data.features}:${D}`;
    let out = eigens.get(key);
    if (!out) {
      const bytes = await blobByHash(redis, opts.prefix, job.data.features, 'refit features');
      if (!Number.isInteger(n) || !Number.isInteger(D) || n < 1 || D < 1 || bytes.length !== 4 * n * D) throw new UnrecoverableError(`refit features of ${bytes.length} bytes are not ${n} x ${D} float32`);
      const eigen = await fitter.eigen(new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)), D, n);
      const enc = encodeEigen(eigen);
      out = { hash: sha256(enc), bytes: enc };
      eigens.set(key, out);
    } else opts.log('info', 'refit job answered from this worker\'s cache', { jobId: job.id, n });
    await redis.set(blobKey(opts.prefix, out.hash), out.bytes, 'EX', REFIT_BLOB_TTL_S);
    done++;
    opts.log('info', 'refit job done', { jobId: job.id, n, D, ms: Date.now() - started, attempt: job.attemptsMade + 1 });
    return { eigen: out.hash, n, worker: opts.name };
  };
  const common = { connection: redisOptions(opts.redisUrl), prefix: bullPrefix(opts.prefix), name: opts.name, lockDuration: opts.lockMs, stalledInterval: Math.max(1000, Math.round(opts.lockMs / 2)), maxStalledCount: 3 };
  const workers = [new Worker<MapJobData, MapJobResult>(modelQueueName(MAP_QUEUE, opts.modelId), maps, { ...common, concurrency: opts.concurrency }), new Worker<FeatureJobData, FeatureJobResult>(modelQueueName(FEATURE_QUEUE, opts.modelId), features, { ...common, concurrency: 1 }), new Worker<RefitJobData, RefitJobResult>(REFIT_QUEUE, refits, { ...common, concurrency: 1 })];
  for (const w of workers) {
    w.on('failed', (job, e) => opts.log('warn', `${w.name} job failed: ${e.message}`, { jobId: job?.id, attempt: job?.attemptsMade }));
    w.on('stalled', (jobId) => opts.log('warn', `a ${w.name} job of a worker that stopped answering goes back to the queue`, { jobId }));
    w.on('error', (e) => opts.log('warn', `worker (${w.name}): ${e.message}`, {}));
  }
  return {
    workers,
    done: () => done,
    close: async () => {
      await Promise.all(workers.map((w) => w.close()));
      await fitter.close();
      redis.disconnect();
    },
  };
}
