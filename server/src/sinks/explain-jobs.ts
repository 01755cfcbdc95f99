/**
 * Shared-feature map jobs: for the strongest driver of every channel, both maps are computed in the
 * compute worker, one job at a time (the event loop never waits), deduplicated by (channel, driver,
 * reference), cached, and recomputed when the channel's readout weights changed materially (cosine with
 * the weights the cached maps came from below `minWeightCosine`). Results go out as `explain:ready`.
 */
import { groupBy, map, mergeMap, throttleTime, asyncScheduler, type SchedulerLike, type Subscription } from 'rxjs';
import type { Explanation } from '@sharedlens/shared';
import type { MapOptions } from '../compute/shared-feature-maps.ts';
import type { ComputeClient } from '../workers/compute-client.ts';
import type { Runtime, SessionStore } from './session-store.ts';

export interface ExplainDeps {
  store: SessionStore;
  client: ComputeClient;
  imageFile: (stimulusSetId: string, stimulusId: string) => string | null;
  emit: (e: Explanation) => void;
  log: (level: 'info' | 'warn', msg: string, fields: Record<string, unknown>) => void;
  options: MapOptions;
  /** How often a session's drivers are looked at. */
  intervalMs: number;
  minWeightCosine: number;
  maxQueue: number;
  scheduler?: SchedulerLike;
}

interface Job {
  key: string;
  rt: Runtime;
  channel: number;
  channelId: string;
  driverId: string;
  referenceId: string;
  driverResponse: number;
  referenceResponse: number | null;
  modelVersion: number;
  weights: Float32Array;
}

const cosine = (a: Float32Array, b: Float32Array) => {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
};

export function scheduleExplanations(deps: ExplainDeps): { results: Map<string, Map<string, Explanation>>; queued: () => number; sub: Subscription } {
  const results = new Map<string, Map<string, Explanation>>();
  const weightsOf = new Map<string, Float32Array>();
  const queue = new Map<string, Job>();
  let busy = false;

  const pump = () => {
    if (busy) return;
    const job = queue.values().next().value as Job | undefined;
    if (!job) return;
    queue.delete(job.key);
    const setId = job.rt.start.stimulusSetId;
    const driverFile = deps.imageFile(setId, job.driverId);
    const referenceFile = deps.imageFile(setId, job.referenceId);
    if (!driverFile || !referenceFile) return pump();
    busy = true;
    // the stimuli's cached features spare each side two forward passes
    const fs = job.rt.encoding?.featureSet;
    const idx = job.rt.latest?.stimIndex;
    const o = idx?.get(job.driverId);
    const r = idx?.get(job.referenceId);
    const known = fs && o !== undefined && r !== undefined ? { phiO: fs.features.slice(o * fs.dim, (o + 1) * fs.dim), phiRef: fs.features.slice(r * fs.dim, (r + 1) * fs.dim) } : undefined;
    deps.client.explain$(driverFile, referenceFile, job.weights, deps.options, known).subscribe({
      next: (r) => {
        const e: Explanation = {
          sessionId: job.rt.id,
          channelId: job.channelId,
          stimulusSetId: setId,
          driverId: job.driverId,
          referenceId: job.referenceId,
          similarity: r.similarity,
          driverResponse: job.driverResponse,
          referenceResponse: job.referenceResponse,
          modelVersion: job.modelVersion,
          computedAt: new Date().toISOString(),
          computeMs: r.ms,
          backend: r.backend,
          size: r.size,
          driverMap: r.driverMap,
          referenceMap: r.referenceMap,
        };
        if (!results.has(job.rt.id)) results.set(job.rt.id, new Map());
        results.get(job.rt.id)!.set(job.key, e);
        weightsOf.set(job.key, job.weights);
        deps.emit(e);
      },
      error: (err: Error) => {
        deps.log('warn', `shared-feature maps failed: ${err.message}`, { sessionId: job.rt.id, channel: job.channelId, driver: job.driverId });
        busy = false;
        pump();
      },
      complete: () => {
        busy = false;
        pump();
      },
    });
  };

  const look = (rt: Runtime) => {
    const models = deps.store.models(rt);
    if (!models) return;
    models.channels.forEach((ch, c) => {
      const d = ch.drivers[0];
      if (!d?.referenceId) return;
      const key = `${rt.id}|${ch.id}|${d.stimulusId}|${d.referenceId}`;
      const weights = deps.store.readout(rt, c);
      if (!weights) return;
      const done = weightsOf.get(key);
      if (done && cosine(done, weights) >= deps.minWeightCosine) return;
      if (!queue.has(key) && queue.size >= deps.maxQueue) return;
      queue.set(key, { key, rt, channel: c, channelId: ch.id, driverId: d.stimulusId, referenceId: d.referenceId, driverResponse: d.meanResponse, referenceResponse: d.referenceResponse, modelVersion: models.version, weights });
    });
    pump();
  };

  const sub = deps.store.updates$
    .pipe(
      map((u) => u.runtime),
      groupBy((rt) => rt.id),
      mergeMap((g) => g.pipe(throttleTime(deps.intervalMs, deps.scheduler ?? asyncScheduler, { leading: true, trailing: true }))),
    )
    .subscribe(look);
  return { results, queued: () => queue.size + (busy ? 1 : 0), sub };
}
