/**
 * Shared-feature map jobs through BullMQ when clustered (docs/deploy.md). The node side (`MapQueue`) turns
 * a map request into a job; `npm run worker` processes (cluster/worker-cli.ts) take jobs on any machine.
 * - Images travel by content hash: the node stores each image once in Redis (`blob:<sha256>`, expiring),
 *   a worker fetches a hash once and keeps it in its cache folder. Weights, feature vectors and the
 *   set's feature moments go inline (a few kB).
 * - The job id is a hash of everything the job reads, so the same pair asked for twice (or by two nodes)
 *   is one job, and a finished one is answered from its kept result (deduplicated).
 * - A killed worker's job is retried by another once its lock expires (BullMQ's stalled-job check).
 * - Nothing waits forever: a job not finished within `timeoutMs` fails with a message naming why (and, when no
 *   worker took it yet, leaves the queue).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Queue, QueueEvents, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { Observable } from 'rxjs';
import type { MapOptions } from '../compute/shared-feature-maps.ts';
import type { ExplainResult } from '../workers/compute-client.ts';

/** Queue name of the map jobs. */
export const MAP_QUEUE = 'maps';
/** How long an image stays in Redis after it was last put there by a node. */
const BLOB_TTL_S = 24 * 3600;

const b64 = (a: ArrayLike<number>) => Buffer.from(Float32Array.from(a).buffer).toString('base64');
const f32 = (s: string) => {
  const buf = Buffer.from(s, 'base64');
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
};
const u8 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));

/** What a map job carries (JSON): image hashes, and the float arrays as base64 of float32. */
export interface MapJobData {
  driver: string;
  reference: string;
  weights: string;
  options: Omit<MapOptions, 'featureMean' | 'featureSd'> & { featureMean?: string; featureSd?: string };
  known?: { phiO: string; phiRef: string };
}

/** A job's result (JSON): the maps as base64 bytes, and which worker computed it. */
export type MapJobResult = Omit<ExplainResult, 'driverMap' | 'referenceMap'> & { driverMap: string; referenceMap: string; worker: string };

/** Encodes a map request as job data (what the job id hashes). */
export function encodeMapJob(driver: string, reference: string, weights: Float32Array, options: MapOptions, known?: { phiO: Float32Array; phiRef: Float32Array }): MapJobData {
  const { featureMean, featureSd, ...rest } = options;
  return {
    driver,
    reference,
    weights: b64(weights),
    options: { ...rest, ...(featureMean ? { featureMean: b64(featureMean) } : {}), ...(featureSd ? { featureSd: b64(featureSd) } : {}) },
    ...(known ? { known: { phiO: b64(known.phiO), phiRef: b64(known.phiRef) } } : {}),
  };
}

/** The worker's view of a job: its options and arrays back as numbers. */
export function decodeMapJob(d: MapJobData): { weights: Float32Array; options: MapOptions; known?: { phiO: Float32Array; phiRef: Float32Array } } {
  const { featureMean, featureSd, ...rest } = d.options;
  return {
    weights: f32(d.weights),
    options: { ...rest, ...(featureMean ? { featureMean: f32(featureMean) } : {}), ...(featureSd ? { featureSd: f32(featureSd) } : {}) },
    ...(d.known ? { known: { phiO: f32(d.known.phiO), phiRef: f32(d.known.phiRef) } } : {}),
  };
}

export const encodeMapResult = (r: ExplainResult, worker: string): MapJobResult => ({ ...r, driverMap: Buffer.from(r.driverMap).toString('base64'), referenceMap: Buffer.from(r.referenceMap).toString('base64'), worker });
export const decodeMapResult = (r: MapJobResult): ExplainResult & { worker: string } => ({ ...r, driverMap: u8(r.driverMap), referenceMap: u8(r.referenceMap) });

/** Job id: sha-256 of the job's data (same inputs, same job). */
export const mapJobId = (d: MapJobData) => createHash('sha256').update(JSON.stringify(d)).digest('hex').slice(0, 40);

/**
 * ioredis options from a redis:// URL, for BullMQ to open (and close) connections of its own; given an
 * ioredis instance instead, its blocking connections are duplicates that outlive close().
 */
export function redisOptions(url: string): { host: string; port: number; username?: string; password?: string; db?: number; tls?: object; maxRetriesPerRequest: null } {
  const u = new URL(url);
  const db = Number(u.pathname.slice(1) || '0');
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: Number(u.port || 6379),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(db ? { db } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    maxRetriesPerRequest: null,
  };
}

/** Key of an image in Redis by its content hash. */
export const blobKey = (prefix: string, hash: string) => `${prefix}blob:${hash}`;

/** BullMQ's key prefix for the cluster's queues (under the cluster's own prefix). */
export const bullPrefix = (prefix: string) => `${prefix}bull`;

/**
 * A worker's copy of an image: from its cache folder, or fetched from Redis once and written there
 * (under a temporary name, then renamed, so two jobs fetching one image never read half a file).
 */
export async function fetchBlob(redis: Redis, prefix: string, hash: string, cacheDir: string): Promise<string> {
  if (!/^[0-9a-f]{64}$/.test(hash)) throw new Error(`not an image hash: ${hash.slice(0, 80)}`);
  const file = path.join(cacheDir, hash);
  if (fs.existsSync(file)) return file;
  const bytes = await redis.getBuffer(blobKey(prefix, hash));
  if (!bytes) throw new Error(`image ${hash.slice(0, 12)}... is not in Redis (expired, or the node that queued the job is gone)`);
  if (createHash('sha256').update(bytes).digest('hex') !== hash) throw new Error(`image ${hash.slice(0, 12)}... in Redis does not match its hash`);
  fs.mkdirSync(cacheDir, { recursive: true });
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  fs.writeFileSync(tmp, bytes);
  fs.renameSync(tmp, file);
  return file;
}

/** A map job that timed out (no worker finished it in time) or failed on its worker; the message says which and why. */
export class MapJobError extends Error {
  constructor(
    message: string,
    readonly reason: 'timeout' | 'failed',
  ) {
    super(message);
  }
}

export interface MapQueueOptions {
  redisUrl: string;
  prefix: string;
  /** A job not finished within this fails (the pair is tried again at the next look). */
  timeoutMs: number;
  log: (level: 'info' | 'warn', msg: string, fields: Record<string, unknown>) => void;
}

/** The node's side: `explain$` with the ComputeClient's signature, run by whichever worker takes the job. */
export class MapQueue {
  readonly queue: Queue;
  private readonly events: QueueEvents;
  private readonly redis: Redis;
  /** Image file -> content hash of what this process put in Redis (by file size and mtime). */
  private readonly hashes = new Map<string, { stamp: string; hash: string }>();
  /** Jobs this node submitted and saw finish, fail or time out. */
  readonly counts = { submitted: 0, completed: 0, failed: 0, timedOut: 0, deduplicated: 0 };
  /** The last failure or timeout of this node's jobs, for health (also a log line where the pair was asked for). */
  lastError: { atMs: number; message: string } | null = null;

  /** Requests of this node in flight, by job id: the same pair asked for again joins the running request. */
  private readonly inFlight = new Map<string, Promise<ExplainResult>>();

  constructor(private readonly opts: MapQueueOptions) {
    this.redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
    this.queue = new Queue(MAP_QUEUE, { connection: redisOptions(opts.redisUrl), prefix: bullPrefix(opts.prefix) });
    this.events = new QueueEvents(MAP_QUEUE, { connection: redisOptions(opts.redisUrl), prefix: bullPrefix(opts.prefix) });
    const warn = (e: Error) => opts.log('warn', `redis (map queue): ${e.message}`, {});
    this.redis.on('error', warn);
    this.queue.on('error', warn);
    this.events.on('error', warn);
  }

  /** Content hash of an image file, put in Redis when this process has not put it there yet. */
  private async imageHash(file: string): Promise<string> {
    const st = fs.statSync(file);
    const stamp = `${st.size}:${st.mtimeMs}`;
    const known = this.hashes.get(file);
    if (known?.stamp === stamp) return known.hash;
    const bytes = fs.readFileSync(file);
    const hash = createHash('sha256').update(bytes).digest('hex');
    await this.redis.set(blobKey(this.opts.prefix, hash), bytes, 'EX', BLOB_TTL_S);
    this.hashes.set(file, { stamp, hash });
    return hash;
  }

  /** Both maps of a pair, computed by a worker; errors name the job and why (timeout, failure). */
  explain$ = (driverFile: string, referenceFile: string, weights: Float32Array, options: MapOptions, known?: { phiO: Float32Array; phiRef: Float32Array }): Observable<ExplainResult> =>
    new Observable<ExplainResult>((sub) => {
      let done = false;
      (async () => {
        const data = encodeMapJob(await this.imageHash(driverFile), await this.imageHash(referenceFile), weights, options, known);
        const jobId = mapJobId(data);
        const running = this.inFlight.get(jobId);
        if (running) {
          this.counts.deduplicated++;
          return running;
        }
        const p = this.run(jobId, data).finally(() => this.inFlight.delete(jobId));
        this.inFlight.set(jobId, p);
        return p;
      })().then(
        (r) => {
          if (done) return;
          sub.next(r);
          sub.complete();
        },
        (e: Error) => !done && sub.error(e),
      );
      return () => {
        done = true;
      };
    });

  /** One job: queued (or found: another node's, or a finished one kept for an hour) and waited for. */
  private async run(jobId: string, data: MapJobData): Promise<ExplainResult> {
    let existing = await this.queue.getJob(jobId);
    // a failed job is kept an hour for health: the same pair asked for again is a new attempt
    if (existing && (await existing.isFailed())) {
      await existing.remove().catch(() => {});
      existing = undefined;
    }
    if (existing) this.counts.deduplicated++;
    else this.counts.submitted++;
    // attempts: a job whose worker throws is tried once more; a killed worker's job comes back as stalled
    const job: Job = existing ?? (await this.queue.add('pair', data, { jobId, attempts: 2, removeOnComplete: { age: 3600 }, removeOnFail: { age: 3600 } }));
    try {
      const result = (await job.waitUntilFinished(this.events, this.opts.timeoutMs)) as MapJobResult;
      this.counts.completed++;
      return decodeMapResult(result);
    } catch (e) {
      const message = (e as Error).message;
      if (/timed out/i.test(message)) {
        this.counts.timedOut++;
        const waiting = await this.queue.getWaitingCount().catch(() => -1);
        // a job no worker took is taken out: nobody waits for it now, and a worker that starts later should not
        // spend its time on a backlog of pairs asked for long ago (the pair is asked for again at the next look)
        if (['waiting', 'delayed', 'prioritized'].includes(await job.getState().catch(() => 'unknown'))) await job.remove().catch(() => {});
        throw this.failure(`map job ${jobId.slice(0, 12)} did not finish within ${Math.round(this.opts.timeoutMs / 1000)} s (${waiting} jobs waiting; is a worker running? npm run worker)`, 'timeout');
      }
      this.counts.failed++;
      throw this.failure(`map job ${jobId.slice(0, 12)} failed on the worker: ${message}`, 'failed');
    }
  }

  private failure(message: string, reason: MapJobError['reason']): MapJobError {
    this.lastError = { atMs: Date.now(), message };
    return new MapJobError(message, reason);
  }

  /** Depths of the queue, the ages of its oldest waiting and active jobs, and the connected workers. */
  async status(): Promise<Record<string, unknown>> {
    const counts = await this.queue.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed');
    const now = Date.now();
    const age = async (state: 'waiting' | 'active') => {
      const [oldest] = await this.queue.getJobs([state], 0, 0, true);
      return oldest ? now - (state === 'active' ? (oldest.processedOn ?? oldest.timestamp) : oldest.timestamp) : null;
    };
    const active = await this.queue.getJobs(['active'], 0, 49, true);
    const workers = await this.queue.getWorkers().catch(() => [] as Record<string, string>[]);
    return {
      queue: MAP_QUEUE,
      counts,
      oldestWaitingAgeMs: await age('waiting'),
      oldestActiveAgeMs: await age('active'),
      activeJobs: active.map((j) => ({ id: j.id, ageMs: now - (j.processedOn ?? j.timestamp), attemptsMade: j.attemptsMade })),
      // BullMQ names a worker's connection <prefix>:<queue in base64>:w:<name>
      workers: workers.map((w) => ({ name: String(w.rawname ?? w.name).replace(/^.*:w:/, ''), address: w.addr, ageS: Number(w.age) })),
      thisNode: { ...this.counts, lastError: this.lastError ? { ageMs: now - this.lastError.atMs, message: this.lastError.message } : null },
    };
  }

  async close(): Promise<void> {
    await this.events.close();
    await this.queue.close();
    this.redis.disconnect();
  }
}
