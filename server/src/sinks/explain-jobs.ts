/**
 * Shared-feature map jobs: for the strongest `perChannel` drivers of every channel, and for any driver
 * asked for (`request`, the API), both maps are computed in the compute workers, one pair at a time (the
 * event loop never waits), deduplicated by (channel, driver, reference) and cached. Each map carries the
 * model version whose readout made it; when a channel's readout changes materially (cosine with the weights
 * the map came from below `minWeightCosine`) the map is marked stale at once (re-sent as `explain:ready`
 * with `stale: true`) and recomputed; a stale pair that is neither among the strongest drivers nor asked
 * for is retired (removed) instead. Results go out as `explain:ready`.
 */
import { groupBy, map, merge, mergeMap, throttleTime, asyncScheduler, type SchedulerLike, type Subscription } from 'rxjs';
import type { ExplainFailure, Explanation, ModelSnapshot } from '@sharedlens/shared';
import { featureMoments, usesFeatureMoments, type MapOptions } from '../compute/shared-feature-maps.ts';
import type { FeatureSet } from '../compute/encoding.ts';
import { cosine } from '../compute/reference-cache.ts';
import type { ComputeClient } from '../workers/compute-client.ts';
import type { Runtime, SessionStore } from './session-store.ts';

export interface ExplainDeps {
  store: SessionStore;
  client: ComputeClient;
  imageFile: (stimulusSetId: string, stimulusId: string) => string | null;
  emit: (e: Explanation) => void;
  /** Called when a pair's maps could not be made (a timed-out or failed map job), for the dashboard. */
  fail?: (f: ExplainFailure) => void;
  /** Called with the key of a retired pair (stale, and no longer wanted). */
  retire?: (sessionId: string, e: Explanation) => void;
  log: (level: 'info' | 'warn', msg: string, fields: Record<string, unknown>) => void;
  options: MapOptions;
  /** How often a session's drivers are looked at. */
  intervalMs: number;
  minWeightCosine: number;
  maxQueue: number;
  /** Maps computed without asking for the strongest this many drivers of each channel. */
  perChannel?: number;
  scheduler?: SchedulerLike;
  /**
   * Who computes a pair's maps (default `client.explain$`, this process's compute threads); clustered, a
   * BullMQ-backed one (cluster/map-jobs.ts), with `inFlight` pairs at once for the workers to share.
   */
  runner?: { explain$: ComputeClient['explain$']; inFlight: number };
}

/** What `request` answers: the pair's key and whether its maps are ready, queued or refused (with why). */
export type ExplainRequestResult = { status: 'ready' | 'queued'; key: string; explanation?: Explanation } | { status: 'rejected'; code: 'unknown-channel' | 'unknown-driver' | 'no-models' | 'no-readout' | 'queue-full'; message: string };

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

export function scheduleExplanations(deps: ExplainDeps): {
  results: Map<string, Map<string, Explanation>>;
  queued: () => number;
  /** Pairs whose maps were made so far (recomputations included). */
  computed: () => number;
  request: (sessionId: string, channelId: string, driverId: string) => ExplainRequestResult;
  sub: Subscription;
} {
  const results = new Map<string, Map<string, Explanation>>();
  const weightsOf = new Map<string, Float32Array>();
  const queue = new Map<string, Job>();
  /** Pairs asked for through `request`: kept fresh like the strongest drivers. */
  const pinned = new Set<string>();
  const moments = new WeakMap<FeatureSet, { mean: Float32Array; sd: Float32Array }>();
  const perChannel = deps.perChannel ?? 1;
  let busy = 0;
  const inFlight = deps.runner?.inFlight ?? 1;
  const explain$: ComputeClient['explain$'] = deps.runner?.explain$ ?? ((...a) => deps.client.explain$(...a));
  let rejected = 0;
  /** Pairs whose maps were made (recomputations included). */
  let computed = 0;

  /** The map options of a job: the set's feature moments added when the method centres or standardises. */
  const optionsFor = (fs: FeatureSet | undefined): MapOptions => {
    if (!usesFeatureMoments(deps.options.features)) return deps.options;
    if (!fs) throw new Error('centred map features need the stimulus set features');
    if (!moments.has(fs)) moments.set(fs, featureMoments(fs.features, fs.dim));
    const m = moments.get(fs)!;
    return { ...deps.options, featureMean: m.mean, featureSd: m.sd };
  };

  const pump = () => {
    if (busy >= inFlight) return;
    const job = queue.values().next().value as Job | undefined;
    if (!job) return;
    queue.delete(job.key);
    const setId = job.rt.start.stimulusSetId;
    const driverFile = deps.imageFile(setId, job.driverId);
    const referenceFile = deps.imageFile(setId, job.referenceId);
    if (!driverFile || !referenceFile) return pump();
    // the stimuli's cached features spare each side two forward passes
    const fs = job.rt.encoding?.featureSet;
    const idx = job.rt.latest?.stimIndex;
    const o = idx?.get(job.driverId);
    const r = idx?.get(job.referenceId);
    const known = fs && o !== undefined && r !== undefined ? { phiO: fs.features.slice(o * fs.dim, (o + 1) * fs.dim), phiRef: fs.features.slice(r * fs.dim, (r + 1) * fs.dim) } : undefined;
    let options: MapOptions;
    try {
      options = optionsFor(fs);
    } catch (err) {
      deps.log('warn', `shared-feature maps skipped: ${(err as Error).message}`, { sessionId: job.rt.id, channel: job.channelId, driver: job.driverId });
      return pump();
    }
    busy++;
    explain$(driverFile, referenceFile, job.weights, options, known).subscribe({
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
          method: `${options.method ?? 'gradient'}/${options.features ?? 'raw'}`,
          stale: false,
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
        computed++;
        deps.emit(e);
      },
      error: (err: Error) => {
        deps.log('warn', `shared-feature maps failed: ${err.message}`, { sessionId: job.rt.id, channel: job.channelId, driver: job.driverId });
        // a map job's error says whether it timed out (cluster/job-queue.ts JobError)
        const reason = (err as { reason?: string }).reason === 'timeout' ? 'timeout' : 'failed';
        deps.fail?.({ sessionId: job.rt.id, channelId: job.channelId, driverId: job.driverId, referenceId: job.referenceId, reason, message: err.message, atMs: Date.now() });
        // a timed-out pair goes back in the queue (its wait was the pause): an ended session has no next look,
        // so its pairs would otherwise never be made once a worker starts; a failed one waits for the next look
        if (reason === 'timeout' && deps.store.get(job.rt.id) === job.rt && !queue.has(job.key) && queue.size < deps.maxQueue) queue.set(job.key, job);
        busy--;
        pump();
      },
      complete: () => {
        busy--;
        pump();
      },
    });
    pump();
  };

  /** A job for driver `d` of channel `c`, or why there is none. */
  const jobFor = (rt: Runtime, models: ModelSnapshot, c: number, driverId: string): Job | Extract<ExplainRequestResult, { status: 'rejected' }> => {
    const ch = models.channels[c];
    const d = ch.drivers.find((x) => x.stimulusId === driverId);
    if (!d?.referenceId) return { status: 'rejected', code: 'unknown-driver', message: `"${driverId}" is not a driver with a reference image of channel ${ch.id}` };
    const weights = deps.store.readout(rt, c);
    if (!weights) return { status: 'rejected', code: 'no-readout', message: `no readout for channel ${ch.id}` };
    const key = `${rt.id}|${ch.id}|${d.stimulusId}|${d.referenceId}`;
    return { key, rt, channel: c, channelId: ch.id, driverId: d.stimulusId, referenceId: d.referenceId, driverResponse: d.meanResponse, referenceResponse: d.referenceResponse, modelVersion: models.version, weights };
  };

  /** True when the pair has fresh maps for these weights. */
  const fresh = (key: string, weights: Float32Array) => {
    const done = weightsOf.get(key);
    return done !== undefined && cosine(done, weights) >= deps.minWeightCosine;
  };

  const look = (rt: Runtime) => {
    const models = deps.store.models(rt);
    if (!models) return;
    const wanted = new Set<string>();
    models.channels.forEach((ch, c) => {
      for (const d of ch.drivers.slice(0, perChannel)) {
        const job = jobFor(rt, models, c, d.stimulusId);
        if ('status' in job) continue;
        wanted.add(job.key);
        if (fresh(job.key, job.weights)) continue;
        if (!queue.has(job.key) && queue.size >= deps.maxQueue) continue;
        queue.set(job.key, job);
      }
    });
    // computed pairs whose channel's readout moved: marked stale now, then recomputed or retired
    const own = results.get(rt.id);
    const channelIndex = new Map(models.channels.map((ch, c) => [ch.id, c]));
    for (const [key, e] of own ?? []) {
      const c = channelIndex.get(e.channelId);
      const weights = c === undefined ? null : deps.store.readout(rt, c);
      if (weights && fresh(key, weights)) continue;
      if (!e.stale) {
        const marked = { ...e, stale: true };
        own!.set(key, marked);
        deps.emit(marked);
      }
      if (wanted.has(key) || queue.has(key)) continue;
      const job = pinned.has(key) && c !== undefined ? jobFor(rt, models, c, e.driverId) : null;
      if (job && !('status' in job) && job.key === key) {
        if (queue.size < deps.maxQueue) queue.set(key, job);
        continue;
      }
      own!.delete(key);
      weightsOf.delete(key);
      pinned.delete(key);
      deps.retire?.(rt.id, e);
    }
    pump();
  };

  const request = (sessionId: string, channelId: string, driverId: string): ExplainRequestResult => {
    const reject = (code: Extract<ExplainRequestResult, { status: 'rejected' }>['code'], message: string): ExplainRequestResult => {
      rejected++;
      deps.log('warn', `map request refused: ${message}`, { sessionId, channel: channelId, driver: driverId, code, rejectedRequests: rejected });
      return { status: 'rejected', code, message };
    };
    const rt = deps.store.get(sessionId);
    const models = rt && deps.store.models(rt);
    if (!rt || !models) return reject('no-models', `no encoding models for session "${sessionId}" yet`);
    const c = models.channels.findIndex((ch) => ch.id === channelId);
    if (c < 0) return reject('unknown-channel', `no channel "${channelId}" in session "${sessionId}"`);
    const job = jobFor(rt, models, c, driverId);
    if ('status' in job) return reject(job.code, job.message);
    pinned.add(job.key);
    const done = results.get(rt.id)?.get(job.key);
    if (done && fresh(job.key, job.weights)) return { status: 'ready', key: job.key, explanation: done };
    if (!queue.has(job.key) && queue.size >= deps.maxQueue) return reject('queue-full', `${queue.size} map jobs are waiting`);
    // asked-for pairs go first
    queue.delete(job.key);
    const rest = [...queue.entries()];
    queue.clear();
    queue.set(job.key, job);
    for (const [k, j] of rest) queue.set(k, j);
    pump();
    return { status: 'queued', key: job.key };
  };

  // looked at after updates and when a model report is ready (reports are computed off the event loop, so
  // the one of a session's last update arrives after it)
  const sub = merge(deps.store.updates$.pipe(map((u) => u.runtime)), deps.store.modelsReady$)
    .pipe(
      groupBy((rt) => rt.id),
      mergeMap((g) => g.pipe(throttleTime(deps.intervalMs, deps.scheduler ?? asyncScheduler, { leading: true, trailing: true }))),
    )
    .subscribe(look);
  return { results, queued: () => queue.size + busy, computed: () => computed, request, sub };
}
