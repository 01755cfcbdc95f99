/**
 * CNN features of each stimulus set, computed once per server in the compute worker (and cached on disk
 * by the worker), shared by every session on that set.
 */
import path from 'node:path';
import { Observable, catchError, filter, map, of, shareReplay, tap } from 'rxjs';
import type { FeatureSet } from '../compute/encoding.ts';
import type { FeatureProgress } from '../compute/feature-cache.ts';
import type { StimulusSet } from '../stimulus-sets.ts';
import type { ComputeClient } from '../workers/compute-client.ts';

export interface StimulusFeaturesDeps {
  /** This process's compute threads, or (clustered) cluster/feature-jobs.ts FeatureQueue. */
  client: Pick<ComputeClient, 'features$'>;
  sets: Map<string, StimulusSet>;
  onProgress: (setId: string, p: FeatureProgress) => void;
  onReady: (setId: string, f: FeatureSet) => void;
  onError: (setId: string, message: string) => void;
}

/** `featuresFor(setId)`: emits the set's features once (or null when they cannot be computed), then completes. */
export function stimulusFeatures(deps: StimulusFeaturesDeps): (setId: string) => Observable<FeatureSet | null> {
  const cache = new Map<string, Observable<FeatureSet | null>>();
  return (setId) => {
    let f$ = cache.get(setId);
    if (!f$) {
      const set = deps.sets.get(setId);
      f$ = !set
        ? of(null)
        : deps.client.features$(set.manifest.stimuli.map((s) => path.join(set.dir, s.file))).pipe(
            tap((e) => e.type === 'progress' && deps.onProgress(setId, e)),
            filter((e) => e.type === 'features'),
            map((e) => ({ features: e.features, dim: e.dim, modelId: e.modelId, backend: e.backend, ...(e.backendReason ? { backendReason: e.backendReason } : {}) })),
            tap((fs) => deps.onReady(setId, fs)),
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
