/**
 * The node's side of one BullMQ queue of compute jobs (docs/deploy.md): map jobs (map-jobs.ts) and feature
 * jobs (feature-jobs.ts) share what is here.
 * - Images travel by content hash: a node offers each image it names in a job at
 *   `GET <node>/api/cluster/images/<sha256>` (attach-cluster.ts, behind the cluster's key), and a worker
 *   fetches a hash once and keeps it in its cache folder (job-worker.ts). A queue without a node serving
 *   HTTP (a script, the bench) puts the image in Redis instead (`blob:<sha256>`, expiring).
 * - A job's id is a hash of everything it reads, so the same job asked for twice (or by two nodes) is one
 *   job, and a finished one is answered from its kept result (deduplicated).
 * - A killed worker's job is retried by another once its lock expires (BullMQ's stalled-job check).
 * - Nothing waits forever: a job not finished within `timeoutMs` fails with a message naming why (and, when
 *   no worker took it yet, leaves the queue).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { Queue, QueueEvents, type Job } from 'bullmq';
import { Redis } from 'ioredis';

/** How long an image stays in Redis after it was last put there by a node. */
const BLOB_TTL_S = 24 * 3600;

/** A job that timed out (no worker finished it in time) or failed on its worker; the message says which and why. */
export class JobError extends Error {
  constructor(
    message: string,
    readonly reason: 'timeout' | 'failed',
  ) {
    super(message);
  }
}

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
 * The queue of `base` jobs for feature model `modelId` (maps and features: a worker takes only its own
 * compute.model's jobs, so one with another model never takes and puts back a job it cannot do). BullMQ
 * names cannot hold ':'; an id with other characters than A-Z a-z 0-9 . _ - is named by its hash.
 */
export const modelQueueName = (base: string, modelId: string) => `${base}.${/^[A-Za-z0-9._-]{1,100}$/.test(modelId) ? modelId : createHash('sha256').update(modelId).digest('hex').slice(0, 16)}`;

/** Job id: sha-256 of the job's data (same inputs, same job). */
export const jobId = (d: unknown) => createHash('sha256').update(JSON.stringify(d)).digest('hex').slice(0, 40);

/** Images a node offers to the workers by content hash (attach-cluster.ts serveClusterImages). */
export class ImageIndex {
  private readonly byHash = new Map<string, string>();
  add(hash: string, file: string): void {
    this.byHash.set(hash, file);
  }
  /** The file with this content hash, as of when it was hashed. */
  file(hash: string): string | undefined {
    return this.byHash.get(hash);
  }
}

/** Where a node's images are fetched from: its index and its URL (empty before it listens). */
export interface ImageSource {
  index: ImageIndex;
  url: () => string;
}

export interface JobQueueOptions {
  redisUrl: string;
  prefix: string;
  /** A node's images served over HTTP; absent: images go through Redis. */
  images?: ImageSource;
  /** A job not finished within this fails. */
  timeoutMs: number;
  log: (level: 'info' | 'warn', msg: string, fields: Record<string, unknown>) => void;
}

/** One queue: images put by hash, jobs added once by content and waited for with a timeout, health figures. */
export class JobQueue<Data, Result> {
  readonly queue: Queue;
  protected readonly events: QueueEvents;
  protected readonly redis: Redis;
  /** Image file -> content hash of what this process put in Redis (by file size and mtime). */
  private readonly hashes = new Map<string, { stamp: string; hash: string }>();
  /** Jobs this node submitted and saw finish, fail or time out. */
  readonly counts = { submitted: 0, completed: 0, failed: 0, timedOut: 0, deduplicated: 0 };
  /** The last failure or timeout of this node's jobs, for health (also a log line where the job was asked for). */
  lastError: { atMs: number; message: string } | null = null;
  /** Jobs of this node in flight, by id: the same job asked for again joins the running request. */
  private readonly inFlight = new Map<string, Promise<Result>>();
  /** Which workers take this queue's jobs, for the timeout message (a queue of one feature model: its model). */
  protected takenBy = '';

  constructor(
    readonly name: string,
    protected readonly opts: JobQueueOptions,
  ) {
    this.redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
    this.queue = new Queue(name, { connection: redisOptions(opts.redisUrl), prefix: bullPrefix(opts.prefix) });
    this.events = new QueueEvents(name, { connection: redisOptions(opts.redisUrl), prefix: bullPrefix(opts.prefix) });
    const warn = (e: Error) => opts.log('warn', `redis (${name} queue): ${e.message}`, {});
    this.redis.on('error', warn);
    this.queue.on('error', warn);
    this.events.on('error', warn);
  }

  /** Content hash of an image file: offered over HTTP by this node, or put in Redis (once per file version). */
  protected async imageHash(file: string): Promise<string> {
    const st = fs.statSync(file);
    const stamp = `${st.size}:${st.mtimeMs}`;
    const known = this.hashes.get(file);
    if (known?.stamp === stamp) return known.hash;
    const bytes = fs.readFileSync(file);
    const hash = createHash('sha256').update(bytes).digest('hex');
    this.opts.images?.index.add(hash, file);
    // no URL yet (the node is not listening; jobs queued now name no node to fetch from)
    if (!this.opts.images?.url()) await this.redis.set(blobKey(this.opts.prefix, hash), bytes, 'EX', BLOB_TTL_S);
    this.hashes.set(file, { stamp, hash });
    return hash;
  }

  /** The job of `data` (`what` names it in errors), joined when this node already waits for it. */
  protected submit(data: Data, what: string): Promise<Result> {
    const id = jobId(data);
    const running = this.inFlight.get(id);
    if (running) {
      this.counts.deduplicated++;
      return running;
    }
    const p = this.run(id, data, what).finally(() => this.inFlight.delete(id));
    this.inFlight.set(id, p);
    return p;
  }

  /** One job: queued (or found: another node's, or a finished one kept for an hour) and waited for. */
  private async run(id: string, data: Data, what: string): Promise<Result> {
    let existing = await this.queue.getJob(id);
    // a failed job is kept an hour for health: the same job asked for again is a new attempt
    if (existing && (await existing.isFailed())) {
      await existing.remove().catch(() => {});
      existing = undefined;
    }
    if (existing) this.counts.deduplicated++;
    else this.counts.submitted++;
    // attempts: a job whose worker throws is tried once more; a killed worker's job comes back as stalled.
    // `from` (where the images are fetched) is not part of the id: two nodes asking for one job share it
    const from = this.opts.images?.url();
    const job: Job = existing ?? (await this.queue.add(this.name, from ? { ...data, from } : data, { jobId: id, attempts: 2, removeOnComplete: { age: 3600 }, removeOnFail: { age: 3600 } }));
    try {
      const result = (await job.waitUntilFinished(this.events, this.opts.timeoutMs)) as Result;
      this.counts.completed++;
      return result;
    } catch (e) {
      const message = (e as Error).message;
      const short = `${what} job ${id.slice(0, 12)}`;
      if (/timed out/i.test(message)) {
        this.counts.timedOut++;
        const waiting = await this.queue.getWaitingCount().catch(() => -1);
        // a job no worker took is taken out: nobody waits for it now, and a worker that starts later should not
        // spend its time on a backlog of jobs asked for long ago (the caller asks again when it still wants it)
        if (['waiting', 'delayed', 'prioritized'].includes(await job.getState().catch(() => 'unknown'))) await job.remove().catch(() => {});
        throw this.failure(`${short} did not finish within ${Math.round(this.opts.timeoutMs / 1000)} s (${waiting} jobs waiting; is a worker running? npm run worker${this.takenBy ? `; ${this.takenBy}` : ''})`, 'timeout');
      }
      this.counts.failed++;
      throw this.failure(`${short} failed on the worker: ${message}`, 'failed');
    }
  }

  private failure(message: string, reason: JobError['reason']): JobError {
    this.lastError = { atMs: Date.now(), message };
    return new JobError(message, reason);
  }

  /** Workers connected to this queue (BullMQ names a worker's connection <prefix>:<queue in base64>:w:<name>). */
  async workers(): Promise<{ name: string; address: string; ageS: number }[]> {
    const workers = await this.queue.getWorkers().catch(() => [] as Record<string, string>[]);
    return workers.map((w) => ({ name: String(w.rawname ?? w.name).replace(/^.*:w:/, ''), address: String(w.addr), ageS: Number(w.age) }));
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
    return {
      queue: this.name,
      counts,
      oldestWaitingAgeMs: await age('waiting'),
      oldestActiveAgeMs: await age('active'),
      activeJobs: active.map((j) => ({ id: j.id, ageMs: now - (j.processedOn ?? j.timestamp), attemptsMade: j.attemptsMade })),
      workers: await this.workers(),
      thisNode: { ...this.counts, lastError: this.lastError ? { ageMs: now - this.lastError.atMs, message: this.lastError.message } : null },
    };
  }

  async close(): Promise<void> {
    await this.events.close();
    await this.queue.close();
    this.redis.disconnect();
  }
}
