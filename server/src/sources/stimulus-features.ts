/**
 * CNN features of each stimulus set, computed once per server in the compute worker (and cached on disk
 * by the worker), shared by every session on that set. The rows are streamed as they are extracted (issue
 * 13: a session's models start on the stimuli whose features are ready instead of waiting for the set).
 */
import path from 'node:path';
import { Observable, catchError, distinctUntilChanged, filter, map, of, scan, shareReplay, tap } from 'rxjs';
import type { FeatureSet } from '../compute/encoding.ts';
import type { FeatureProgress } from '../compute/feature-cache.ts';
import type { StimulusSet } from '../stimulus-sets.ts';
import type { ComputeClient, FeatureEvent } from '../workers/compute-client.ts';

export interface StimulusFeaturesDeps {
  /** This process's compute threads, or (clustered) cluster/feature-jobs.ts FeatureQueue. */
  client: Pick<ComputeClient, 'features$'>;
  sets: Map<string, StimulusSet>;
  onProgress: (setId: string, p: FeatureProgress) => void;
  onReady: (setId: string, f: FeatureSet) => void;
  onError: (setId: string, message: string) => void;
}

/**
 * Folds a set's feature events into one FeatureSet of `total` stimuli, filled in place: `ready` marks the
 * rows that arrived (`rows` events, e.g. each batch of the compute threads), and the final `features`
 * event fills whatever is left (a source that sends no rows, such as the cluster's feature jobs). Returns
 * the same object after each event (null before the first), so every reader sees the latest.
 */
export function featureRows(total: number): (acc: FeatureSet | null, e: Exclude<FeatureEvent, { type: 'progress' }>) => FeatureSet | null {
  return (acc, e) => {
    if (!acc) acc = { features: new Float32Array(total * e.dim), dim: e.dim, modelId: e.modelId, backend: e.backend, ready: new Uint8Array(total), readyCount: 0, ...(e.backendReason ? { backendReason: e.backendReason } : {}) };
    if (e.dim !== acc.dim) throw new Error(`feature rows of ${e.dim} values after rows of ${acc.dim}`);
    const ready = acc.ready!;
    const fill = (s: number, k: number) => {
      if (ready[s]) return;
      acc!.features.set(e.features.subarray(k * e.dim, (k + 1) * e.dim), s * e.dim);
      ready[s] = 1;
      acc!.readyCount!++;
    };
    if (e.type === 'rows') e.rows.forEach((s, k) => fill(s, k));
    else {
      if (e.features.length !== total * e.dim) throw new Error(`features of ${e.features.length / e.dim} stimuli for a set of ${total}`);
      for (let s = 0; s < total; s++) fill(s, s);
      acc.backend = e.backend;
      if (e.backendReason) acc.backendReason = e.backendReason;
    }
    return acc;
  };
}

/**
 * `featuresFor(setId)`: emits the set's FeatureSet as its rows arrive (the same object, filled in place;
 * `ready`/`readyCount` say which rows are there: use compute/encoding.ts featuresComplete for the whole set),
 * the last time complete; or null when they cannot be computed. Then completes.
 */
export function stimulusFeatures(deps: StimulusFeaturesDeps): (setId: string) => Observable<FeatureSet | null> {
  const cache = new Map<string, Observable<FeatureSet | null>>();
  return (setId) => {
    let f$ = cache.get(setId);
    if (!f$) {
      const set = deps.sets.get(setId);
      const total = set?.manifest.stimuli.length ?? 0;
      f$ = !set
        ? of(null)
        : deps.client.features$(set.manifest.stimuli.map((s) => path.join(set.dir, s.file))).pipe(
            tap((e) => e.type === 'progress' && deps.onProgress(setId, e)),
            filter((e): e is Exclude<FeatureEvent, { type: 'progress' }> => e.type !== 'progress'),
            scan(featureRows(total), null),
            filter((fs): fs is FeatureSet => fs !== null),
            // once per count (the object is the same; the final event after the last rows adds none)
            distinctUntilChanged((a, b) => a === b, (fs) => fs.readyCount),
            map((fs) => {
              if (fs.readyCount === total) deps.onReady(setId, fs);
              return fs;
            }),
            catchError((e: Error) => {
              deps.onError(setId, e.message);
              return of(null);
            }),
            shareReplay(1),
          );
      cache.set(setId, f$);
    }
    return f$;
  };
}
