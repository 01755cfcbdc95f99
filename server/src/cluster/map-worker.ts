/**
 * The worker's side of the map jobs (cluster/map-jobs.ts): a BullMQ worker whose processor fetches the two
 * images by hash (once; cached), computes both maps with the ComputeClient (tfjs-node-gpu where it loads,
 * wasm otherwise: compute/backend.ts) and returns them. BullMQ renews the job's lock while it runs; a killed
 * worker stops renewing, and after `lockMs` another worker's stalled-job check puts the job back in the queue.
 */
import path from 'node:path';
import { Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { lastValueFrom } from 'rxjs';
import type { ComputeClient } from '../workers/compute-client.ts';
import { MAP_QUEUE, bullPrefix, decodeMapJob, encodeMapResult, fetchBlob, redisOptions, type MapJobData, type MapJobResult } from './map-jobs.ts';

export interface MapWorkerOptions {
  redisUrl: string;
  prefix: string;
  /** The worker's cache folder: images by hash under cluster-images/. */
  cacheDir: string;
  client: ComputeClient;
  name: string;
  /** Jobs at once (each runs the pair's two sides on the client's threads). */
  concurrency: number;
  /** Lock time of a job: a worker silent this long (killed, or cut off) loses the job to another. */
  lockMs: number;
  log: (level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown>) => void;
}

/** Starts taking map jobs; close() waits for the running ones. */
export function startMapWorker(opts: MapWorkerOptions): { worker: Worker; done: () => number; close: () => Promise<void> } {
  const redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
  redis.on('error', (e: Error) => opts.log('warn', `redis: ${e.message}`, {}));
  const images = path.join(opts.cacheDir, 'cluster-images');
  let done = 0;
  const processor = async (job: Job<MapJobData>): Promise<MapJobResult> => {
    const started = Date.now();
    const [driverFile, referenceFile] = await Promise.all([fetchBlob(redis, opts.prefix, job.data.driver, images), fetchBlob(redis, opts.prefix, job.data.reference, images)]);
    const { weights, options, known } = decodeMapJob(job.data);
    const r = await lastValueFrom(opts.client.explain$(driverFile, referenceFile, weights, options, known));
    done++;
    opts.log('info', 'map job done', { jobId: job.id, ms: Date.now() - started, backend: r.backend, attempt: job.attemptsMade + 1 });
    return encodeMapResult(r, opts.name);
  };
  const worker = new Worker<MapJobData, MapJobResult>(MAP_QUEUE, processor, {
    connection: redisOptions(opts.redisUrl),
    prefix: bullPrefix(opts.prefix),
    concurrency: opts.concurrency,
    name: opts.name,
    lockDuration: opts.lockMs,
    stalledInterval: Math.max(1000, Math.round(opts.lockMs / 2)),
    maxStalledCount: 3,
  });
  worker.on('failed', (job, e) => opts.log('warn', `map job failed: ${e.message}`, { jobId: job?.id, attempt: job?.attemptsMade }));
  worker.on('stalled', (jobId) => opts.log('warn', 'a map job of a worker that stopped answering goes back to the queue', { jobId }));
  worker.on('error', (e) => opts.log('warn', `worker: ${e.message}`, {}));
  return {
    worker,
    done: () => done,
    close: async () => {
      await worker.close();
      redis.disconnect();
    },
  };
}
