import { connect, endWith, filter, ignoreElements, map, merge, scan, take, takeUntil, type Observable, type OperatorFunction } from 'rxjs';
import { createEncoding, refit, stepEncoding, type EncodingConfig, type EncodingState, type FeatureSet } from '../compute/encoding.ts';
import type { StatsUpdate } from './neuron-statistics.ts';

export interface ModelUpdate {
  stats: StatsUpdate;
  /** Null until the stimulus features are available. */
  encoding: EncodingState | null;
}

export interface EncodingModelsOptions {
  /** The session's stimulus features when ready (null: they could not be computed). */
  features$: Observable<FeatureSet | null>;
  config: EncodingConfig;
}

type Input = { kind: 'stats'; u: StatsUpdate } | { kind: 'features'; f: FeatureSet };
interface Acc {
  out: ModelUpdate | null;
  features: FeatureSet | null;
}

/**
 * Per-channel encoding models that learn live (compute/encoding.ts): refreshed after every completed
 * trial, refitted exactly when new stimuli appeared and at the session's end. Until the features arrive
 * the statistics pass through with `encoding: null`; on arrival the models are fitted on all data so far
 * and an update is emitted even when no trial follows (an ended session).
 */
export function encodingModels(opts: EncodingModelsOptions): OperatorFunction<StatsUpdate, ModelUpdate> {
  return (updates$) =>
    updates$.pipe(
      connect((shared) =>
        merge(
          shared.pipe(map((u): Input => ({ kind: 'stats', u }))),
          opts.features$.pipe(
            filter((f): f is FeatureSet => f !== null),
            take(1),
            map((f): Input => ({ kind: 'features', f })),
            takeUntil(shared.pipe(ignoreElements(), endWith(0))),
          ),
        ),
      ),
      scan<Input, Acc>(
        (acc, ev) => {
          if (ev.kind === 'features') {
            const last = acc.out?.stats;
            if (!last) return { out: null, features: ev.f };
            const enc = refit(createEncoding(ev.f, last.state.stimuli.length), last.state, opts.config);
            return { out: { stats: last, encoding: enc }, features: ev.f };
          }
          const u = ev.u;
          let enc = u.cause === 'start' ? null : (acc.out?.encoding ?? null);
          if (!enc && acc.features) enc = refit(createEncoding(acc.features, u.state.stimuli.length), u.state, opts.config);
          else if (enc) {
            const s = u.cause === 'trial' && u.stimulusId !== undefined ? u.state.stimIndex.get(u.stimulusId) : undefined;
            enc = stepEncoding(enc, u.state, s, opts.config, u.cause === 'end');
          }
          return { out: { stats: u, encoding: enc }, features: acc.features };
        },
        { out: null, features: null },
      ),
      map((acc) => acc.out),
      filter((o): o is ModelUpdate => o !== null),
    );
}
