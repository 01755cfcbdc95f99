/**
 * Main-thread side of the compute workers: requests become Observables of progress and results. Features
 * go to the first worker; the two maps of a pair are computed at once on two workers (one per core).
 */
import { Worker } from 'node:worker_threads';
import { Observable, concatMap, defer, forkJoin, map, merge, mergeMap } from 'rxjs';
import type { BackendChoice } from '../compute/backend.ts';
import type { Config } from '../config.ts';
import type { FeatureProgress } from '../compute/feature-cache.ts';
import type { FeatureModelSpec } from '../compute/feature-model.ts';
import type { MapOptions, SideMap } from '../compute/shared-feature-maps.ts';
import { pairBytes } from './pair-bytes.ts';
import { threadNice } from './thread-nice.ts';

export type FeatureEvent =
  | ({ type: 'progress' } & FeatureProgress)
  /** Rows as they are ready: `rows[k]` (an index into the request's files) is `features[k dim .. (k+1) dim)`. */
  | { type: 'rows'; rows: number[]; features: Float32Array; dim: number; backend: string; modelId: string; backendReason?: string }
  | { type: 'features'; features: Float32Array; dim: number; backend: string; modelId: string; /** Why that backend, e.g. "wasm: @tensorflow/tfjs-node-gpu not installed". */ backendReason?: string };

export interface ExplainResult {
  /** Display maps, size x size bytes (0-255 on the pair's common scale). */
  driverMap: Uint8Array;
  referenceMap: Uint8Array;
  size: number;
  similarity: number;
  driverMass: number;
  referenceMass: number;
  /** Wall time of the slower side. */
  ms: number;
  backend: string;
}

export interface ComputeClientOptions {
  cacheDir: string;
  dataDir: string;
  backend: BackendChoice;
  model?: FeatureModelSpec;
  /** Worker threads for map jobs (default 2: the two sides of a pair in parallel). */
  workers?: number;
  /** Threads a pair may use now (default: all the workers); 1 computes the two sides one after the other on one thread. */
  pairThreads?: () => number;
}

interface Slot {
  worker: Worker | null;
  handlers: Map<number, (msg: any) => void>;
}

/** A side's map, with its largest values (pair-bytes.ts topValues, sorted in its thread). */
type SideResult = SideMap & { top: Float32Array; size: number; ms: number; backend: string };

/** A client configured from the `compute` section of the configuration. */
export function computeClientFor(compute: Config['compute'], dataDir: string, workers = compute.workers, pairThreads?: () => number): ComputeClient {
  return new ComputeClient({ cacheDir: compute.cacheDir, dataDir, backend: compute.backend, workers, ...(compute.model ? { model: compute.model } : {}), ...(pairThreads ? { pairThreads } : {}) });
}

export class ComputeClient {
  private readonly slots: Slot[];
  private nextId = 1;

  constructor(private readonly opts: ComputeClientOptions) {
    this.slots = Array.from({ length: Math.max(1, opts.workers ?? 2) }, () => ({ worker: null, handlers: new Map() }));
  }

  private worker(slot: Slot): Worker {
    if (!slot.worker) {
      // worker threads do not inherit --import hooks on Node 20; the entry registers tsx
      // nice at most +4: with the two of them busy the event loop still gets a core (CFS weights 2 x 423 against 1024)
      const w = new Worker(new URL('./worker-entry.mjs', import.meta.url), { workerData: { module: './compute-worker.ts', nice: threadNice(4) } });
      w.on('message', (msg: { id: number }) => slot.handlers.get(msg.id)?.(msg));
      w.on('error', (e) => {
        for (const h of slot.handlers.values()) h({ type: 'error', message: `compute worker failed: ${e.message}` });
        slot.handlers.clear();
        slot.worker = null;
      });
      slot.worker = w;
    }
    return slot.worker;
  }

  /**
   * Features of image files (cached on disk), with progress and the rows as they are ready; errors end the
   * stream with the reason. The files are split in contiguous parts over the workers (both cores), progress
   * summed over the parts, rows numbered over all the files.
   */
  features$(files: string[]): Observable<FeatureEvent> {
    const parts = this.slots.length > 1 && files.length >= 16 ? this.slots.length : 1;
    const per = Math.ceil(files.length / parts);
    const chunks = Array.from({ length: parts }, (_, k) => files.slice(k * per, (k + 1) * per)).filter((c) => c.length);
    if (chunks.length === 1) return this.request$<FeatureEvent>(this.slots[0], { type: 'features', files }, 'features');
    return defer(() => {
      const progress = chunks.map((c) => ({ done: 0, total: c.length, cached: 0 }));
      const results: Extract<FeatureEvent, { type: 'features' }>[] = [];
      return merge(...chunks.map((c, k) => this.request$<FeatureEvent>(this.slots[k], { type: 'features', files: c }, 'features').pipe(map((e) => ({ e, k }))))).pipe(
        mergeMap(({ e, k }): FeatureEvent[] => {
          if (e.type === 'rows') return [{ ...e, rows: e.rows.map((i) => i + k * per) }];
          if (e.type === 'features') {
            results[k] = e;
            if (results.filter(Boolean).length < chunks.length) return [];
            const dim = results[0].dim;
            const features = new Float32Array(files.length * dim);
            let o = 0;
            for (const r of results) {
              features.set(r.features, o);
              o += r.features.length;
            }
            return [{ ...results[0], features }];
          }
          progress[k] = { done: e.done, total: e.total, cached: e.cached };
          return [{ type: 'progress', done: progress.reduce((a, p) => a + p.done, 0), total: files.length, cached: progress.reduce((a, p) => a + p.cached, 0) }];
        }),
      );
    });
  }

  /** Both shared-feature maps of a (driver, reference) pair for readout weights `weights`. */
  explain$(driverFile: string, referenceFile: string, weights: Float32Array, options: MapOptions, known?: { phiO: Float32Array; phiRef: Float32Array }): Observable<ExplainResult> {
    const side = (s: 'driver' | 'reference', slot: Slot) =>
      this.request$<SideResult>(slot, { type: 'explain-side', side: s, driverFile, referenceFile, weights, options, ...(known ? { known } : {}) }, 'side');
    const threads = Math.min(this.slots.length, this.opts.pairThreads?.() ?? this.slots.length);
    // one thread: the reference side is asked when the driver's is done, so the thread never holds two at once
    const sides$ = threads > 1 ? forkJoin([side('driver', this.slots[0]), side('reference', this.slots[this.slots.length - 1])]) : side('driver', this.slots[0]).pipe(concatMap((d) => side('reference', this.slots[0]).pipe(map((r) => [d, r] as const))));
    return sides$.pipe(
      map(([d, r]) => {
        const [driverMap, referenceMap] = pairBytes(d.map, r.map, d.top, r.top);
        return { driverMap, referenceMap, size: d.size, similarity: d.similarity, driverMass: d.mass, referenceMass: r.mass, ms: Math.max(d.ms, r.ms), backend: d.backend };
      }),
    );
  }

  private request$<T>(slot: Slot, body: Record<string, unknown>, finalType: string): Observable<T> {
    return new Observable<T>((sub) => {
      const id = this.nextId++;
      slot.handlers.set(id, (msg) => {
        if (msg.type === 'progress' || msg.type === 'rows') sub.next(msg);
        else if (msg.type === finalType) {
          slot.handlers.delete(id);
          sub.next(msg);
          sub.complete();
        } else {
          slot.handlers.delete(id);
          sub.error(new Error(msg.message));
        }
      });
      const w = this.worker(slot);
      w.ref(); // keep the process alive while a request is pending
      w.postMessage({ id, ...body, cacheDir: this.opts.cacheDir, dataDir: this.opts.dataDir, backend: this.opts.backend, model: this.opts.model });
      return () => {
        slot.handlers.delete(id);
        if (!slot.handlers.size) slot.worker?.unref();
      };
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.worker?.terminate()));
    for (const s of this.slots) s.worker = null;
  }
}
