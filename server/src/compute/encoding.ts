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
  /** Why that backend runs, e.g. "wasm: @tensorflow/tfjs-node-gpu not installed". */
  backendReason?: string;
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

/**
 * An exact refit as a self-contained job (plain arrays, so it can run in a worker thread): the observed
 * stimuli, their features and the mean responses at the time of the job. Null below `minStimuli`.
 */
export interface RefitJob {
  /** Stimulus indices of the basis rows. */
  rows: number[];
  /** Features of those rows, n x D row-major (as stored: float32). */
  features: Float32Array;
  D: number;
  alphas: number[];
  /** Neurons. */
  N: number;
  /** Mean responses, N x n (neuron-major, basis row order). */
  y: Float64Array;
}

export function refitJob(enc: EncodingState, stats: NeuronStatsState, cfg: EncodingConfig): RefitJob | null {
  const rows: number[] = [];
  for (let s = 0; s < stats.stimuli.length; s++) if (stats.nStim[s] > 0) rows.push(s);
  if (rows.length < cfg.minStimuli) return null;
  const { features, dim } = enc.featureSet;
  const x = new Float32Array(rows.length * dim);
  rows.forEach((s, i) => x.set(features.subarray(s * dim, (s + 1) * dim), i * dim));
  return { rows, features: x, D: dim, alphas: cfg.alphas, N: stats.C, y: currentY(stats, rows) };
}

/** The work of a refit job: O(n^2 D + alphas x n^3 + alphas x N x n^2). Pure; runs anywhere. */
export function fitJob(job: RefitJob): RidgeState {
  const basis = buildBasis(job.features, job.D, job.rows.map((_, i) => i), job.alphas);
  basis.rows = job.rows;
  return createRidgeState(basis, job.N, job.y);
}

/** The current mean responses of basis rows `rows`, N x n as in RidgeState.y. */
export function currentY(stats: NeuronStatsState, rows: number[]): Float64Array {
  const C = stats.C;
  const n = rows.length;
  const y = new Float64Array(C * n);
  rows.forEach((s, i) => {
    for (let c = 0; c < C; c++) y[c * n + i] = stats.mean[s * C + c];
  });
  return y;
}

/** Refreshes the rows of a fitted state whose responses have changed since its job (yNow: N x n). Returns how many. */
export function catchUp(state: RidgeState, yNow: Float64Array): number {
  const { n } = state.basis;
  const N = state.N;
  const col = new Float64Array(N);
  let changed = 0;
  for (let i = 0; i < n; i++) {
    let differs = false;
    for (let c = 0; c < N; c++) {
      col[c] = yNow[c * n + i];
      if (col[c] !== state.y[c * n + i]) differs = true;
    }
    if (differs) {
      updateRow(state, i, col);
      changed++;
    }
  }
  return changed;
}

/** Observed stimuli (at least one trial) that are not rows of the models. */
export function countPending(enc: EncodingState, stats: NeuronStatsState): number {
  let pending = 0;
  for (let s = 0; s < stats.stimuli.length; s++) if (stats.nStim[s] > 0 && enc.rowOf[s] < 0) pending++;
  return pending;
}

/**
 * Installs a fitted state. Trials that arrived while the job ran (a worker refit) are applied as
 * refreshes of their rows, so nothing is lost; stimuli that appeared meanwhile stay pending.
 */
export function installRefit(enc: EncodingState, stats: NeuronStatsState, state: RidgeState): EncodingState {
  const { rows } = state.basis;
  catchUp(state, currentY(stats, rows));
  enc.ridge = state;
  enc.rowOf.fill(-1);
  rows.forEach((s, i) => (enc.rowOf[s] = i));
  enc.pending = countPending(enc, stats);
  enc.trialsSinceRefit = 0;
  enc.version++;
  enc.refits++;
  return enc;
}

/** Exact refit on every stimulus with at least one trial, here and now. */
export function refit(enc: EncodingState, stats: NeuronStatsState, cfg: EncodingConfig): EncodingState {
  const job = refitJob(enc, stats, cfg);
  return job ? installRefit(enc, stats, fitJob(job)) : enc;
}

/** Counts a completed trial of stimulus `s` (its means in `stats` already updated): a refresh of its row, or a pending stimulus. */
export function observeTrial(enc: EncodingState, stats: NeuronStatsState, s: number): EncodingState {
  enc.trialsSinceRefit++;
  const row = enc.rowOf[s];
  if (enc.ridge && row >= 0) {
    updateRow(enc.ridge, row, stats.mean.subarray(s * stats.C, (s + 1) * stats.C));
    enc.version++;
  } else if (stats.nStim[s] === 1) enc.pending++;
  return enc;
}

/** Whether an exact refit is due: stimuli outside the model, and no model yet, or enough trials since the last, or the session's end. */
export const refitDue = (enc: EncodingState, cfg: EncodingConfig, final: boolean): boolean =>
  enc.pending > 0 && (final || !enc.ridge || enc.trialsSinceRefit >= cfg.refitEveryTrials);

/**
 * After a completed trial of stimulus `s` (its means in `stats` already updated): refresh the models, or
 * count the stimulus as pending and refit when due. `final` (session end) refits whatever is pending.
 */
export function stepEncoding(enc: EncodingState, stats: NeuronStatsState, s: number | undefined, cfg: EncodingConfig, final = false): EncodingState {
  if (s !== undefined) observeTrial(enc, stats, s);
  return refitDue(enc, cfg, final) ? refit(enc, stats, cfg) : enc;
}
