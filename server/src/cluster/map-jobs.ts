/**
 * Shared-feature map jobs through BullMQ when clustered (docs/deploy.md): `MapQueue` turns a map request into
 * a job of the `maps` queue (job-queue.ts: images by content hash, deduplicated by content, timeouts);
 * `npm run worker` processes (job-worker.ts) take them on any machine. Weights, feature vectors and the set's
 * feature moments go inline (a few kB).
 */
import { Observable } from 'rxjs';
import type { MapOptions } from '../compute/shared-feature-maps.ts';
import type { ExplainResult } from '../workers/compute-client.ts';
import { JobQueue, modelQueueName, type JobQueueOptions } from './job-queue.ts';

/** Queue name of the map jobs (one queue per feature model: job-queue.ts modelQueueName). */
export const MAP_QUEUE = 'maps';

/** Float32 arrays as base64 in jobs and results, and back. */
export const b64 = (a: ArrayLike<number>) => Buffer.from(Float32Array.from(a).buffer).toString('base64');
export const f32 = (s: string) => {
  const buf = Buffer.from(s, 'base64');
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
};
const u8 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));

/** What a map job carries (JSON): image hashes, the node's feature model, and the float arrays as base64 of float32. */
export interface MapJobData {
  driver: string;
  reference: string;
  /** The feature model of the node's encoding models (compute.model): only its queue's workers take the job. */
  modelId: string;
  weights: string;
  options: Omit<MapOptions, 'featureMean' | 'featureSd'> & { featureMean?: string; featureSd?: string };
  known?: { phiO: string; phiRef: string };
}

/** A job's result (JSON): the maps as base64 bytes, and which worker computed it. */
export type MapJobResult = Omit<ExplainResult, 'driverMap' | 'referenceMap'> & { driverMap: string; referenceMap: string; worker: string };

/** Encodes a map request as job data (what the job id hashes). */
export function encodeMapJob(driver: string, reference: string, modelId: string, weights: Float32Array, options: MapOptions, known?: { phiO: Float32Array; phiRef: Float32Array }): MapJobData {
  const { featureMean, featureSd, ...rest } = options;
  return {
    driver,
    reference,
    modelId,
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

export interface MapQueueOptions extends JobQueueOptions {
  /** The feature model of the node's encoding models (featureModelIdOf(compute.model)): the weights are its features'. */
  modelId: string;
}

/**
 * The node's side: `explain$` with the ComputeClient's signature, run by whichever worker takes the job from
 * the queue of the node's feature model (workers with another model listen on their own: job-worker.ts).
 */
export class MapQueue extends JobQueue<MapJobData, MapJobResult> {
  constructor(private readonly mopts: MapQueueOptions) {
    super(modelQueueName(MAP_QUEUE, mopts.modelId), mopts);
    this.takenBy = `only workers with feature model ${mopts.modelId} (compute.model) take these jobs`;
  }

  /** Both maps of a pair, computed by a worker; errors (JobError) name the job and why (timeout, failure). */
  explain$ = (driverFile: string, referenceFile: string, weights: Float32Array, options: MapOptions, known?: { phiO: Float32Array; phiRef: Float32Array }): Observable<ExplainResult> =>
    new Observable<ExplainResult>((sub) => {
      let done = false;
      (async () => this.submit(encodeMapJob(await this.imageHash(driverFile), await this.imageHash(referenceFile), this.mopts.modelId, weights, options, known), 'map'))().then(
        (r) => {
          if (done) return;
          sub.next(decodeMapResult(r));
          sub.complete();
        },
        (e: Error) => !done && sub.error(e),
      );
      return () => {
        done = true;
      };
    });
}
