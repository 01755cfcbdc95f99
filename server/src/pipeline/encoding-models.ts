import { Subject, connect, endWith, filter, finalize, ignoreElements, map, merge, mergeMap, scan, takeUntil, tap, type Observable, type OperatorFunction } from 'rxjs';
import { addFeatures, catchUpData, countPending, createEncoding, fitJob, installRefit, observeTrial, refitDue, refitJob, type CatchUp, type EncodingConfig, type EncodingState, type FeatureSet, type RefitJob } from '../compute/encoding.ts';
import type { RidgeState } from '../compute/ridge.ts';
import type { NeuronStatsState } from '../compute/neuron-stats.ts';
import type { StatsUpdate } from './neuron-statistics.ts';

export interface ModelUpdate {
  stats: StatsUpdate;
  /** Null until the stimulus features are available. */
  encoding: EncodingState | null;
}

export interface EncodingModelsOptions {
  /**
   * The session's stimulus features, emitted again as more of their rows are ready (sources/stimulus-features.ts:
   * the same object filled in place; null: they could not be computed).
   */
  features$: Observable<FeatureSet | null>;
  config: EncodingConfig;
  /**
   * Exact refits of at least `fromStimuli` stimuli run through `fit$` (a worker thread) while the
   * refreshes go on; smaller ones run inline (milliseconds). Without it every refit runs inline.
   * `latest(rows)` gives the responses of those rows as they are now and the stimuli observed since, for
   * catching up in the worker.
   */
  offload?: { fit$: (job: RefitJob, latest: (rows: number[]) => CatchUp) => Observable<RidgeState>; fromStimuli: number };
  /**
   * The models' own thread (workers/refresh-client.ts): the per-trial refresh and new stimuli's absorbs
   * run there, never here; `enc.ridge` is its latest snapshot, and every snapshot is an update. Without it
   * they run inline.
   */
  thread?: { attach(enc: EncodingState, stats: NeuronStatsState, onSnapshot: () => void): void; detach(enc: EncodingState): void; idle(enc: EncodingState): boolean };
}

type Input =
  | { kind: 'stats'; u: StatsUpdate }
  | { kind: 'features'; f: FeatureSet }
  | { kind: 'fitted'; enc: EncodingState; state: RidgeState }
  | { kind: 'refreshed'; enc: EncodingState };

interface Acc {
  out: ModelUpdate | null;
  features: FeatureSet | null;
  /** The session has ended: whatever is pending is refitted. */
  ended: boolean;
}

/**
 * Per-channel encoding models that learn live (compute/encoding.ts): refreshed after every completed
 * trial, refitted exactly when new stimuli appeared and at the session's end. Until the first features
 * arrive the statistics pass through with `encoding: null`; on arrival the models are fitted on all data so
 * far and an update is emitted even when no trial follows (an ended session). While the set's features are
 * still being computed the models cover the observed stimuli whose features are ready, and each later part
 * brings its observed stimuli into them (absorbed, or pending for the next fit) with an update of its own. Large refits run off the event
 * loop (`offload`): the models in use keep being refreshed meanwhile, the fitted state catches up with
 * the trials that arrived during the fit when it is installed, and its installation is an update of its
 * own. The stream completes after the last refit.
 */
export function encodingModels(opts: EncodingModelsOptions): OperatorFunction<StatsUpdate, ModelUpdate> {
  const cfg = opts.config;
  return (updates$) =>
    updates$.pipe(
      connect((shared) => {
        const jobs = new Subject<{ enc: EncodingState; job: RefitJob; stats: NeuronStatsState }>();
        // the models with a fit running in the worker (at most one fit each; a returning fit may post the
        // next); the fits complete when the statistics have ended and none is running
        const fitting = new Set<EncodingState>();
        // models in their own thread: each snapshot from it is an input; done when every batch is in one
        const refreshed = new Subject<Input>();
        const threaded = new Set<EncodingState>();
        let sourceDone = false;
        const completeWhenIdle = () => {
          if (!sourceDone || fitting.size > 0 || [...threaded].some((e) => !opts.thread!.idle(e))) return;
          jobs.complete();
          refreshed.complete();
        };
        const fitted$ = jobs.pipe(mergeMap(({ enc, job, stats }) => opts.offload!.fit$(job, (rows) => catchUpData(enc, stats, rows)).pipe(map((state): Input => ({ kind: 'fitted', enc, state })))));
        /** Refits when due: inline, or by posting a job. */
        const refitIfDue = (enc: EncodingState, stats: NeuronStatsState, ended: boolean): void => {
          if (fitting.has(enc) || !refitDue(enc, cfg, ended)) return;
          const job = refitJob(enc, stats, cfg);
          if (!job) return;
          // with models in use (absorbing new stimuli meanwhile) every refit can wait for the worker; only a
          // first fit below `fromStimuli` runs inline
          if (opts.offload && (enc.ridge || enc.shape || job.rows.length >= opts.offload.fromStimuli)) {
            fitting.add(enc);
            jobs.next({ enc, job, stats });
          } else installRefit(enc, stats, fitJob(job), cfg.absorbInlineUnits);
        };
        const fresh = (f: FeatureSet, stats: NeuronStatsState) => {
          const enc = createEncoding(f, stats.stimuli.length);
          enc.pending = countPending(enc, stats);
          if (opts.thread) {
            opts.thread.attach(enc, stats, () => refreshed.next({ kind: 'refreshed', enc }));
            threaded.add(enc);
          }
          return enc;
        };
        return merge(
          shared.pipe(
            map((u): Input => ({ kind: 'stats', u })),
            tap({ complete: () => ((sourceDone = true), completeWhenIdle()) }),
          ),
          opts.features$.pipe(
            filter((f): f is FeatureSet => f !== null),
            map((f): Input => ({ kind: 'features', f })),
            takeUntil(shared.pipe(ignoreElements(), endWith(0))),
          ),
          fitted$,
          refreshed,
        ).pipe(
          scan<Input, Acc>(
            (acc, ev) => {
              if (ev.kind === 'features') {
                const last = acc.out?.stats;
                if (!last) return { ...acc, out: null, features: ev.f };
                let enc = acc.out?.encoding ?? null;
                // more rows of the features the models already use: their observed stimuli join the models
                if (enc?.featureSet === ev.f) addFeatures(enc, last.state, cfg.absorbInlineUnits);
                else if (!enc) enc = fresh(ev.f, last.state);
                refitIfDue(enc, last.state, acc.ended);
                return { ...acc, out: { stats: last, encoding: enc }, features: ev.f };
              }
              if (ev.kind === 'refreshed') {
                const last = acc.out;
                const current = last !== null && last.encoding === ev.enc;
                if (current) refitIfDue(ev.enc, last.stats.state, acc.ended);
                completeWhenIdle();
                return current ? { ...acc, out: { stats: last.stats, encoding: ev.enc } } : acc;
              }
              if (ev.kind === 'fitted') {
                fitting.delete(ev.enc);
                const last = acc.out;
                // a restarted session has new models: a fit for the old ones is dropped
                const current = last !== null && last.encoding === ev.enc;
                if (current) {
                  installRefit(ev.enc, last.stats.state, ev.state, cfg.absorbInlineUnits);
                  refitIfDue(ev.enc, last.stats.state, acc.ended);
                }
                completeWhenIdle();
                return current ? { ...acc, out: { stats: last.stats, encoding: ev.enc } } : acc;
              }
              const u = ev.u;
              const restart = u.cause === 'start';
              const ended = restart ? false : acc.ended || u.cause === 'end';
              let enc = restart ? null : (acc.out?.encoding ?? null);
              if (!enc && acc.features) enc = fresh(acc.features, u.state);
              else if (enc && u.cause === 'trial' && u.stimulusId !== undefined) {
                const s = u.state.stimIndex.get(u.stimulusId);
                if (s !== undefined) observeTrial(enc, u.state, s, cfg.absorbInlineUnits);
              }
              if (enc) refitIfDue(enc, u.state, ended);
              return { ...acc, ended, out: { stats: u, encoding: enc } };
            },
            { out: null, features: null, ended: false },
          ),
          finalize(() => {
            for (const e of threaded) opts.thread!.detach(e);
          }),
        );
      }),
      map((acc) => acc.out),
      filter((o): o is ModelUpdate => o !== null),
    );
}
