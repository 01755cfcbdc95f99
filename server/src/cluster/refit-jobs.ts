/**
 * Exact refits through BullMQ when clustered (docs/deploy.md). Most of a refit's cost is its basis kernel's
 * eigendecomposition (compute/ridge.ts basisEigen: the kernel, O(n^2 D), and its eigenvectors, O(n^3)), which
 * depends on the observed stimuli's features only, not on the responses or the alphas. So that is the job:
 * the node puts the rows' features in Redis by content hash, a worker (`npm run worker`, job-worker.ts)
 * computes the eigendecomposition in its refit thread and puts it back by content hash, and the node's refit
 * thread builds the models from it (workers/ridge-client.ts fit$ with `eigen`: the same state as a refit
 * here). The ~8 MB in and out (1,000 stimuli) travel once: the node and the worker keep the last few by the
 * features' hash, and the job's id is that hash (deduplicated across nodes).
 * A killed worker's job is retried by another (stalled-job check); a job that times out or fails leaves the
 * models as they are, says why (`onFallback`: a log line, health and the dashboards) and the node's own
 * refit thread fits as without a cluster; with no worker connected, or below `fromStimuli` stimuli, the node
 * refits itself at once.
 */
import { createHash } from 'node:crypto';
import { Observable, catchError, defer, from, of, switchMap } from 'rxjs';
import type { CatchUp, RefitJob } from '../compute/encoding.ts';
import type { KernelEigen, RidgeState } from '../compute/ridge.ts';
import type { RidgeWorker } from '../workers/ridge-client.ts';
import { JobQueue, blobKey, type JobQueueOptions } from './job-queue.ts';

/** Queue name of the refit jobs. */
export const REFIT_QUEUE = 'refits';

/** How long features and eigendecompositions stay in Redis (longer than a finished job is kept: an hour). */
export const REFIT_BLOB_TTL_S = 2 * 3600;

/** Eigendecompositions kept in memory by the features' hash, on the node and on the worker (~8 MB each at 1,000 stimuli). */
export const EIGEN_CACHE_ENTRIES = 4;

/** What a refit job carries: the content hash of the rows' features (n x D float32, in Redis as a blob). */
export interface RefitJobData {
  features: string;
  n: number;
  D: number;
}

/** A job's result: the content hash of the eigendecomposition (in Redis as a blob: encodeEigen), and who computed it. */
export interface RefitJobResult {
  eigen: string;
  n: number;
  worker: string;
}

export const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** A typed array's bytes, without a copy. */
export const bytesOf = (a: Float32Array | Float64Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** An eigendecomposition as bytes: the n eigenvalues, then the n x n eigenvectors, float64. */
export function encodeEigen(e: KernelEigen): Buffer {
  return Buffer.concat([bytesOf(e.lambda), bytesOf(e.q)]);
}

/** encodeEigen's bytes back (copied into aligned arrays); throws on a size that is not n + n^2 float64. */
export function decodeEigen(bytes: Buffer, n: number): KernelEigen {
  if (bytes.length !== 8 * (n + n * n)) throw new Error(`eigendecomposition of ${bytes.length} bytes, not ${8 * (n + n * n)} for ${n} stimuli`);
  const all = new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  return { lambda: all.slice(0, n), q: all.slice(n) };
}

/** A blob from Redis by content hash, checked against the hash. */
export async function blobByHash(redis: { getBuffer(key: string): Promise<Buffer | null> }, prefix: string, hash: string, what: string): Promise<Buffer> {
  if (!/^[0-9a-f]{64}$/.test(hash)) throw new Error(`not a content hash: ${hash.slice(0, 80)}`);
  const bytes = await redis.getBuffer(blobKey(prefix, hash));
  if (!bytes) throw new Error(`${what} ${hash.slice(0, 12)}... is not in Redis (expired, or put by a node that is gone)`);
  if (sha256(bytes) !== hash) throw new Error(`${what} ${hash.slice(0, 12)}... in Redis does not match its hash`);
  return bytes;
}

/** A small map in use order, at most `max` entries (the least recently used leave first). */
export class RecentMap<V> {
  private readonly m = new Map<string, V>();
  constructor(private readonly max: number) {}
  get(k: string): V | undefined {
    const v = this.m.get(k);
    if (v !== undefined) {
      this.m.delete(k);
      this.m.set(k, v);
    }
    return v;
  }
  set(k: string, v: V): void {
    this.m.delete(k);
    this.m.set(k, v);
    while (this.m.size > this.max) this.m.delete(this.m.keys().next().value!);
  }
}

export interface RefitQueueOptions extends JobQueueOptions {
  /** The node's refit thread: builds the models from a worker's eigendecomposition, or refits by itself. */
  local: Pick<RidgeWorker, 'fit$'>;
  /** Refits of fewer stimuli stay on the node (cluster.refitJobFromStimuli): the job would cost more than it saves. */
  fromStimuli: number;
  /** A refit job that timed out or failed, with why (the node refits itself). */
  onFallback?: (message: string) => void;
}

/** The node's side: `fit$` with the refit thread's signature, the eigendecomposition from a worker when one is connected. */
export class RefitQueue extends JobQueue<RefitJobData, RefitJobResult> {
  /** Refits this node did whole: no worker, too small, or a job that timed out or failed. */
  localFits = 0;
  /** Refits whose eigendecomposition this node had kept (same features). */
  cacheHits = 0;
  /** The worker that computed the last eigendecomposition this node received. */
  lastBy: string | null = null;
  private readonly cache = new RecentMap<KernelEigen>(EIGEN_CACHE_ENTRIES);

  constructor(private readonly ropts: RefitQueueOptions) {
    super(REFIT_QUEUE, ropts);
  }

  /** The fitted state of `job` (ridge-client.ts fit$), its kernel's eigendecomposition computed by a worker where one is connected. */
  fit$ = (job: RefitJob, latest?: (rows: number[]) => CatchUp): Observable<RidgeState> =>
    defer(() => from(this.eigenOf(job))).pipe(
      catchError((e: Error) => {
        const message = `exact refit of ${job.rows.length} stimuli: ${e.message}; the models stay as they are until this node's own refit thread has refitted them`;
        this.opts.log('warn', message, {});
        this.ropts.onFallback?.(message);
        return of(undefined);
      }),
      switchMap((eigen) => {
        if (!eigen) this.localFits++;
        return this.ropts.local.fit$(job, latest, eigen);
      }),
    );

  /** The eigendecomposition of the job's features: kept, or from a worker; undefined where the node computes it itself. */
  private async eigenOf(job: RefitJob): Promise<KernelEigen | undefined> {
    const n = job.rows.length;
    if (n < this.ropts.fromStimuli) return undefined;
    const bytes = bytesOf(job.features);
    // the features by the hash of their bytes (the job's data has D too: the same bytes in another shape are another job)
    const blob = sha256(bytes);
    const key = `${blob}:${job.D}`;
    const kept = this.cache.get(key);
    if (kept) {
      this.cacheHits++;
      return kept;
    }
    if ((await this.workers()).length === 0) return undefined;
    await this.redis.set(blobKey(this.opts.prefix, blob), bytes, 'EX', REFIT_BLOB_TTL_S);
    const r = await this.submit({ features: blob, n, D: job.D }, 'refit');
    const eigen = decodeEigen(await blobByHash(this.redis, this.opts.prefix, r.eigen, 'eigendecomposition'), n);
    this.cache.set(key, eigen);
    this.lastBy = r.worker;
    return eigen;
  }
}
