/**
 * Main-thread side of the refit worker: one lazily started thread, jobs in order, each an Observable of
 * the fitted state. When the thread fails the job is fitted here instead (slow, but nothing is lost) and
 * the failure is reported through `onError`. A job may come with its basis kernel's eigendecomposition
 * (computed by a cluster worker, cluster/refit-jobs.ts); a cluster worker computes that here (`eigen`).
 */
import { Worker } from 'node:worker_threads';
import { Observable } from 'rxjs';
import { fitJob, type CatchUp, type RefitJob } from '../compute/encoding.ts';
import type { KernelEigen, RidgeState } from '../compute/ridge.ts';
import { threadNice } from './thread-nice.ts';

/** What the thread sends back for a job (workers/ridge-worker.ts). */
type WorkerMessage = { type: 'need-y' | 'fitted' | 'eigen' | 'error'; rows?: number[]; state?: RidgeState; eigen?: KernelEigen; message?: string };

export class RidgeWorker {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, (msg: WorkerMessage) => void>();
  private nextId = 1;

  constructor(private readonly onError: (message: string) => void = () => {}) {}

  private start(): Worker {
    if (!this.worker) {
      const w = new Worker(new URL('./worker-entry.mjs', import.meta.url), { workerData: { module: './ridge-worker.ts', nice: threadNice() } });
      w.on('message', (msg: WorkerMessage & { id: number }) => this.pending.get(msg.id)?.(msg));
      w.on('error', (e) => {
        this.worker = null;
        for (const h of [...this.pending.values()]) h({ type: 'error', message: `refit worker failed: ${e.message}` });
      });
      this.worker = w;
    }
    return this.worker;
  }

  /**
   * The fitted state of `job`, caught up in the thread with what `latest(rows)` returns when the fit is
   * done (the responses of its rows now and the stimuli observed since; asked again while that changes
   * much); the job's arrays are copied to the thread, the result comes back without a copy. `eigen`: the
   * basis kernel's eigendecomposition of the job's features (ridge.ts basisEigen), not computed again.
   */
  fit$(job: RefitJob, latest: (rows: number[]) => CatchUp = () => ({ y: job.y, extra: { rows: [], features: new Float32Array(0), y: new Float64Array(0) } }), eigen?: KernelEigen): Observable<RidgeState> {
    return new Observable<RidgeState>((sub) => {
      const id = this.nextId++;
      this.pending.set(id, (msg) => {
        if (msg.type === 'need-y') {
          this.worker?.postMessage({ id, catchUp: latest(msg.rows!) });
          return;
        }
        this.release(id);
        if (msg.state) {
          sub.next(msg.state);
          sub.complete();
          return;
        }
        this.onError(`${msg.message}; refitting on the main thread`);
        sub.next(fitJob(job, eigen));
        sub.complete();
      });
      const w = this.start();
      w.ref();
      w.postMessage({ id, job, ...(eigen ? { eigen } : {}) });
      return () => this.release(id);
    });
  }

  /** ridge.ts basisEigen of n x D features (rows in order), computed in the thread (a cluster worker's refit job). */
  eigen(features: Float32Array, D: number, n: number): Promise<KernelEigen> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, (msg) => {
        this.release(id);
        if (msg.eigen) resolve(msg.eigen);
        else reject(new Error(msg.message ?? 'refit thread: no eigendecomposition'));
      });
      const w = this.start();
      w.ref();
      w.postMessage({ id, eigenOf: { features, D, n } });
    });
  }

  /** Forgets job `id`; with no job left the thread no longer keeps the process alive. */
  private release(id: number): void {
    this.pending.delete(id);
    if (!this.pending.size) this.worker?.unref();
  }

  async close(): Promise<void> {
    await this.worker?.terminate();
    this.worker = null;
  }
}
