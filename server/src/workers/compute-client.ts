/**
 * Main-thread side of the compute worker: requests become Observables of progress and results.
 */
import { Worker } from 'node:worker_threads';
import { Observable } from 'rxjs';
import type { BackendChoice } from '../compute/backend.ts';
import type { FeatureProgress } from '../compute/feature-cache.ts';
import type { FeatureModelSpec } from '../compute/feature-model.ts';
import type { MapOptions } from '../compute/shared-feature-maps.ts';

export type FeatureEvent =
  | ({ type: 'progress' } & FeatureProgress)
  | { type: 'features'; features: Float32Array; dim: number; backend: string; modelId: string };

export interface ExplainResult {
  /** Display maps, size x size bytes (0-255 on the pair's common scale). */
  driverMap: Uint8Array;
  referenceMap: Uint8Array;
  size: number;
  similarity: number;
  driverMass: number;
  referenceMass: number;
  ms: number;
  backend: string;
}

export interface ComputeClientOptions {
  cacheDir: string;
  dataDir: string;
  backend: BackendChoice;
  model?: FeatureModelSpec;
}

export class ComputeClient {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly handlers = new Map<number, (msg: any) => void>();

  constructor(private readonly opts: ComputeClientOptions) {}

  private get w(): Worker {
    if (!this.worker) {
      this.worker = new Worker(new URL('./compute-worker-entry.mjs', import.meta.url));
      this.worker.on('message', (msg: { id: number }) => this.handlers.get(msg.id)?.(msg));
      this.worker.on('error', (e) => {
        for (const h of this.handlers.values()) h({ type: 'error', message: `compute worker failed: ${e.message}` });
        this.handlers.clear();
        this.worker = null;
      });
    }
    return this.worker;
  }

  /** Features of image files (cached on disk), with progress; errors end the stream with the reason. */
  features$(files: string[]): Observable<FeatureEvent> {
    return this.request$<FeatureEvent>({ type: 'features', files }, 'features');
  }

  /** Both shared-feature maps of a (driver, reference) pair for readout weights `weights`. */
  explain$(driverFile: string, referenceFile: string, weights: Float32Array, options: MapOptions): Observable<ExplainResult> {
    return this.request$<ExplainResult & { type: string }>({ type: 'explain', driverFile, referenceFile, weights, options }, 'explained');
  }

  private request$<T>(body: Record<string, unknown>, finalType: string): Observable<T> {
    return new Observable<T>((sub) => {
      const id = this.nextId++;
      this.handlers.set(id, (msg) => {
        if (msg.type === 'progress') sub.next(msg);
        else if (msg.type === finalType) {
          this.handlers.delete(id);
          sub.next(msg);
          sub.complete();
        } else {
          this.handlers.delete(id);
          sub.error(new Error(msg.message));
        }
      });
      this.w.ref(); // keep the process alive while a request is pending
      this.w.postMessage({ id, ...body, cacheDir: this.opts.cacheDir, dataDir: this.opts.dataDir, backend: this.opts.backend, model: this.opts.model });
      return () => {
        this.handlers.delete(id);
        if (!this.handlers.size) this.worker?.unref();
      };
    });
  }

  async close(): Promise<void> {
    await this.worker?.terminate();
    this.worker = null;
  }
}
