/**
 * Stimulus features as BullMQ jobs when clustered (docs/deploy.md): a stimulus set is split into parts of
 * `chunk` images, each a job of the `features` queue (job-queue.ts: images by content hash, deduplicated by
 * content across nodes, timeouts) that `npm run worker` processes take (job-worker.ts), so several workers
 * share a set and a killed worker loses one part, which another worker redoes (stalled-job check).
 * The node never goes without features: with no worker connected it computes them itself as before, and a
 * part that times out or fails is computed by the node (a log line says why).
 */
import { Observable, filter, lastValueFrom, type Subscription } from 'rxjs';
import type { FeatureModelSpec } from '../compute/feature-model.ts';
import { NSFWJS_MOBILENET_ID } from '../compute/feature-model.ts';
import type { ComputeClient, FeatureEvent } from '../workers/compute-client.ts';
import { JobQueue, type JobQueueOptions } from './job-queue.ts';
import { b64, f32 } from './map-jobs.ts';

/** Queue name of the feature jobs. */
export const FEATURE_QUEUE = 'features';

/** The feature model id a compute configuration uses (the default MobileNetV2 unless compute.model names another). */
export const featureModelIdOf = (model?: FeatureModelSpec | null) => model?.id ?? NSFWJS_MOBILENET_ID;

/** What a feature job carries: the images' content hashes in order, and the feature model the node uses. */
export interface FeatureJobData {
  images: string[];
  modelId: string;
}

/** A job's result (JSON): features as base64 of float32 (images x dim, in the job's order). */
export interface FeatureJobResult {
  features: string;
  dim: number;
  backend: string;
  modelId: string;
  backendReason?: string;
  worker: string;
}

type Features = Extract<FeatureEvent, { type: 'features' }>;

export const encodeFeatureResult = (r: Features, worker: string): FeatureJobResult => ({ features: b64(r.features), dim: r.dim, backend: r.backend, modelId: r.modelId, ...(r.backendReason ? { backendReason: r.backendReason } : {}), worker });

export interface FeatureQueueOptions extends JobQueueOptions {
  /** Images per job. */
  chunk: number;
  /** The feature model the node's own compute uses; workers with another refuse the job. */
  modelId: string;
  /** The node's own compute threads: used with no worker connected, and for a part that timed out or failed. */
  local: Pick<ComputeClient, 'features$'>;
}

/** The node's side: `features$` with the ComputeClient's signature, parts computed by whichever workers take them. */
export class FeatureQueue extends JobQueue<FeatureJobData, FeatureJobResult> {
  /** Parts (and whole sets, with no worker) this node computed itself. */
  localParts = 0;

  constructor(private readonly fopts: FeatureQueueOptions) {
    super(FEATURE_QUEUE, fopts);
  }

  /** One part: a worker's features, or this node's when the job times out or fails. */
  private async part(files: string[]): Promise<Features & { by: string }> {
    try {
      const r = await this.submit({ images: await Promise.all(files.map((f) => this.imageHash(f))), modelId: this.fopts.modelId }, 'features');
      if (r.modelId !== this.fopts.modelId || r.features.length === 0) throw new Error(`worker ${r.worker} answered with model ${r.modelId}, not ${this.fopts.modelId}`);
      return { type: 'features', features: f32(r.features), dim: r.dim, backend: r.backend, modelId: r.modelId, ...(r.backendReason ? { backendReason: r.backendReason } : {}), by: r.worker };
    } catch (e) {
      this.opts.log('warn', `${(e as Error).message}; this node computes these ${files.length} images itself`, {});
      this.localParts++;
      const r = (await lastValueFrom(this.fopts.local.features$(files).pipe(filter((x) => x.type === 'features')))) as Features;
      return { ...r, by: 'this node' };
    }
  }

  /** Features of image files, with progress (per finished part); errors end the stream with the reason. */
  features$ = (files: string[]): Observable<FeatureEvent> =>
    new Observable<FeatureEvent>((sub) => {
      let stopped = false;
      let local: Subscription | undefined;
      (async () => {
        if (files.length === 0 || (await this.workers()).length === 0) {
          this.opts.log('info', 'no worker takes feature jobs: this node computes the stimulus features itself', { images: files.length });
          this.localParts++;
          if (!stopped) local = this.fopts.local.features$(files).subscribe(sub);
          return;
        }
        const parts = Array.from({ length: Math.ceil(files.length / this.fopts.chunk) }, (_, k) => files.slice(k * this.fopts.chunk, (k + 1) * this.fopts.chunk));
        let done = 0;
        const results = await Promise.all(
          parts.map(async (p) => {
            const r = await this.part(p);
            done += p.length;
            if (!stopped) sub.next({ type: 'progress', done, total: files.length, cached: 0 });
            return r;
          }),
        );
        const dim = results[0]!.dim;
        if (results.some((r) => r.dim !== dim)) throw new Error(`feature parts of different sizes (${[...new Set(results.map((r) => r.dim))].join(', ')})`);
        const features = new Float32Array(files.length * dim);
        results.forEach((r, k) => features.set(r.features, k * this.fopts.chunk * dim));
        const by = [...new Set(results.map((r) => `${r.by} (${r.backend})`))];
        if (!stopped) {
          sub.next({ type: 'features', features, dim, backend: results[0]!.backend, modelId: this.fopts.modelId, backendReason: `computed by ${by.join(', ')}` });
          sub.complete();
        }
      })().catch((e: Error) => !stopped && sub.error(e));
      return () => {
        stopped = true;
        local?.unsubscribe();
      };
    });
}
