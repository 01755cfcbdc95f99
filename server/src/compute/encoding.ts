/**
 * Encoding models of a session as plain state functions: one ridge model per channel from CNN features
 * of the stimuli to their mean responses (compute/ridge.ts), refreshed after every trial of a stimulus
 * already in the model, and refitted exactly (all observed stimuli) when new stimuli have appeared.
 */
import type { NeuronStatsState } from './neuron-stats.ts';
import { buildBasis, createRidgeState, updateRow, type RidgeState } from './ridge.ts';

export interface EncodingConfig {
  alphas: number[];
  /** Trials between exact refits while stimuli outside the model have been seen. */
  refitEveryTrials: number;
  /** Stimuli needed before the first fit. */
  minStimuli: number;
}

export interface FeatureSet {
  /** Stimuli x D, row-major, in the session's stimulus order. */
  features: Float32Array;
  dim: number;
  modelId: string;
  backend: string;
}

export interface EncodingState {
  featureSet: FeatureSet;
  ridge: RidgeState | null;
  /** Basis row of each stimulus, -1 when not in the model. */
  rowOf: Int32Array;
  /** Observed stimuli not yet in the model. */
  pending: number;
  trialsSinceRefit: number;
  /** Increments with every change of the models. */
  version: number;
  refits: number;
}

export function createEncoding(featureSet: FeatureSet, nStimuli: number): EncodingState {
  return { featureSet, ridge: null, rowOf: new Int32Array(nStimuli).fill(-1), pending: 0, trialsSinceRefit: 0, version: 0, refits: 0 };
}

/** Exact refit on every stimulus with at least one trial. */
export function refit(enc: EncodingState, stats: NeuronStatsState, cfg: EncodingConfig): EncodingState {
  const rows: number[] = [];
  for (let s = 0; s < stats.stimuli.length; s++) if (stats.nStim[s] > 0) rows.push(s);
  if (rows.length < cfg.minStimuli) return enc;
  const { features, dim } = enc.featureSet;
  const basis = buildBasis(features, dim, rows, cfg.alphas);
  const n = rows.length;
  const C = stats.C;
  const y = new Float64Array(C * n);
  rows.forEach((s, i) => {
    for (let c = 0; c < C; c++) y[c * n + i] = stats.mean[s * C + c];
  });
  enc.ridge = createRidgeState(basis, C, y);
  enc.rowOf.fill(-1);
  rows.forEach((s, i) => (enc.rowOf[s] = i));
  enc.pending = 0;
  enc.trialsSinceRefit = 0;
  enc.version++;
  enc.refits++;
  return enc;
}

/**
 * After a completed trial of stimulus `s` (its means in `stats` already updated): refresh the models, or
 * count the stimulus as pending and refit when due. `final` (session end) refits whatever is pending.
 */
export function stepEncoding(enc: EncodingState, stats: NeuronStatsState, s: number | undefined, cfg: EncodingConfig, final = false): EncodingState {
  if (s !== undefined) {
    enc.trialsSinceRefit++;
    const row = enc.rowOf[s];
    if (enc.ridge && row >= 0) {
      updateRow(enc.ridge, row, stats.mean.subarray(s * stats.C, (s + 1) * stats.C));
      enc.version++;
    } else if (stats.nStim[s] === 1) enc.pending++;
  }
  const due = enc.pending > 0 && (final || !enc.ridge || enc.trialsSinceRefit >= cfg.refitEveryTrials);
  return due ? refit(enc, stats, cfg) : enc;
}
