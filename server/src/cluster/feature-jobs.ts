/**
 * Stimulus features as BullMQ jobs when clustered (docs/deploy.md): a stimulus set is split into parts of
 * `chunk` images, each a job of the `features` queue (job-queue.ts: images by content hash, deduplicated by
 * content across nodes, timeouts) that `npm run worker` processes take (job-worker.ts), so several workers
 * share a set and a killed worker loses one part, which another worker redoes (stalled-job check).
 * The node never goes without features: with no worker connected it computes them itself as before, and a
 * part that times out or fails is computed by the node (a log line says why). A worker's features go into
 * the node's own disk cache (compute/feature-cache.ts, same keys: model, layer, image content), so a restarted
 * node reads them there instead of asking the workers again.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Observable, filter, lastValueFrom, type Subscription } from 'rxjs';
import type { FeatureModelSpec } from '../compute/feature-model.ts';
import { NSFWJS_MOBILENET_ID, writeFileAtomic } from '../compute/feature-model.ts';
import type { ComputeClient, FeatureEvent } from '../workers/compute-client.ts';
import { JobQueue, modelQueueName, type JobQueueOptions } from './job-queue.ts';
import { b64, f32 } from './map-jobs.ts';

/** Queue name of the feature jobs (one queue per feature model: job-queue.ts modelQueueName). */
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
  /** The feature model the node's own compute uses: only workers with it take the jobs (its own queue). */
  modelId: string;
  /** The node's own compute threads: used with no worker connected, for a part that timed out or failed, and for images in the cache. */
  local: Pick<ComputeClient, 'features$'>;
  /** The node's feature cache folder of its model (feature-cache.ts cacheFolder): workers' features are kept there. */
  cacheFolder: string;
}

/** The node's side: `features$` with the ComputeClient's signature, parts computed by whichever workers take them. */
export class FeatureQueue extends JobQueue<FeatureJobData, FeatureJobResult> {
  /** Parts (and whole sets, with no worker) this node computed itself. */
  localParts = 0;
  /** Parts (and whole sets) read from this node's feature cache, and images a worker computed that were put there. */
  cachedParts = 0;
  storedImages = 0;

  constructor(private readonly fopts: FeatureQueueOptions) {
    super(modelQueueName(FEATURE_QUEUE, fopts.modelId), fopts);
    this.takenBy = `only workers with feature model ${fopts.modelId} (compute.model) take these jobs`;
  }

  /** Where the node's cache keeps the features of an image with content hash `hash`. */
  private cacheFile(hash: string): string {
    return path.join(this.fopts.cacheFolder, `${hash}.f32`);
  }

  /** Whether the node's cache has the features of every image (content hashes). */
  private allCached(hashes: string[]): boolean {
    return hashes.every((h) => fs.existsSync(this.cacheFile(h)));
  }

  /** A worker's features (images x dim, in `hashes`' order) into the node's cache; a failed write is a log line, not a failed part. */
  private store(hashes: string[], features: Float32Array, dim: number): void {
    try {
      fs.mkdirSync(this.fopts.cacheFolder, { recursive: true });
      hashes.forEach((h, i) => {
        const file = this.cacheFile(h);
        if (fs.existsSync(file)) return;
        writeFileAtomic(file, features.subarray(i * dim, (i + 1) * dim));
        this.storedImages++;
      });
    } catch (e) {
      this.opts.log('warn', `a worker's features could not be kept in this node's feature cache (${this.fopts.cacheFolder}): ${(e as Error).message}`, {});
    }
  }

  /** This node's own threads (reading its cache where the images are in it). */
  private async localPart(files: string[]): Promise<Features> {
    return (await lastValueFrom(this.fopts.local.features$(files).pipe(filter((x) => x.type === 'features')))) as Features;
  }

  /** One part: from the node's cache, a worker's features (then kept in the cache), or this node's when the job times out or fails. */
  private async part(files: string[]): Promise<Features & { by: string }> {
    try {
      const images = await Promise.all(files.map((f) => this.imageHash(f)));
      if (this.allCached(images)) {
        this.cachedParts++;
        return { ...(await this.localPart(files)), by: "this node's cache" };
      }
      const r = await this.submit({ images, modelId: this.fopts.modelId }, 'features');
      if (r.modelId !== this.fopts.modelId || r.features.length === 0) throw new Error(`worker ${r.worker} answered with model ${r.modelId}, not ${this.fopts.modelId}`);
      const features = f32(r.features);
      if (features.length !== images.length * r.dim) throw new Error(`worker ${r.worker} answered ${features.length} values for ${images.length} images of ${r.dim}`);
      this.store(images, features, r.dim);
      return { type: 'features', features, dim: r.dim, backend: r.backend, modelId: r.modelId, ...(r.backendReason ? { backendReason: r.backendReason } : {}), by: r.worker };
    } catch (e) {
      this.opts.log('warn', `${(e as Error).message}; this node computes these ${files.length} images itself`, {});
      this.localParts++;
      return { ...(await this.localPart(files)), by: 'this node' };
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
        // all in this node's cache (a restarted node, a set seen before): read there, as without a cluster
        if (this.allCached(await Promise.all(files.map((f) => this.imageHash(f))))) {
          this.opts.log('info', "the stimulus features are in this node's feature cache: no feature jobs", { images: files.length });
          this.cachedParts++;
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
