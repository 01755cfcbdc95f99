/**
 * Encoding models of a session as plain state functions: one ridge model per channel from CNN features
 * of the stimuli to their mean responses (compute/ridge.ts), refreshed after every trial of a stimulus
 * already in the model; a new stimulus is absorbed at its first trial (ridge.ts addRow, milliseconds), and
 * the exact refit of all observed stimuli runs only once the models doubled in size since the last one
 * and at the session's end (a consistency check; the first fit is one too). While a set's features are
 * still being computed the models hold the observed stimuli whose features are ready, and each stimulus
 * joins them (absorbed like a new one) when its features arrive (addFeatures).
 */
import type { NeuronStatsState } from './neuron-stats.ts';
import { addRow, buildBasis, createRidgeState, updateRow, type KernelEigen, type RidgeState } from './ridge.ts';

export interface EncodingConfig {
  alphas: number[];
  /** Trials between exact refits while stimuli outside the model have been seen. */
  refitEveryTrials: number;
  /** Stimuli needed before the first fit. */
  minStimuli: number;
  /**
   * Work (alphas x (n^2 + 3 neurons n)) up to which a new stimulus is absorbed where its trial is handled;
   * above it the stimulus waits for the next fit in the worker, which absorbs it there (default
   * ABSORB_INLINE_UNITS).
   */
  absorbInlineUnits?: number;
}

/**
 * About 12 ms of absorbing on this machine (88 ms measured for 17M units: 1,000 stimuli, 384 channels, 8
 * alphas, under load): the most the rig's event loop spends on one new stimulus. At 384 channels that is
 * up to about 180 stimuli in the models; later ones are absorbed by the worker.
 */
export const ABSORB_INLINE_UNITS = 2.5e6;

/** Whether absorbing one more stimulus into `ridge` stays within `units` of work. */
export const absorbInline = (ridge: RidgeState, units = ABSORB_INLINE_UNITS): boolean => ridge.basis.alphas.length * (ridge.basis.n ** 2 + 3 * ridge.N * ridge.basis.n) <= units;

export interface FeatureSet {
  /** Stimuli x D, row-major, in the session's stimulus order (rows not yet ready are zeros). */
  features: Float32Array;
  dim: number;
  /**
   * While the set's features are being computed: 1 for each stimulus whose row is ready (filled in as the
   * compute threads send them; sources/stimulus-features.ts), and how many are. Absent: every row is ready.
   */
  ready?: Uint8Array;
  readyCount?: number;
  modelId: string;
  backend: string;
  /** Why that backend runs, e.g. "wasm: @tensorflow/tfjs-node-gpu not installed". */
  backendReason?: string;
}

/** Stimuli of a feature set, and how many have their features (all, once complete). */
export function featureCoverage(f: FeatureSet): { ready: number; total: number } {
  const total = f.dim ? f.features.length / f.dim : 0;
  return { ready: f.ready ? (f.readyCount ?? f.ready.reduce((a, v) => a + v, 0)) : total, total };
}

/** Whether every stimulus of a feature set has its features. */
export const featuresComplete = (f: FeatureSet): boolean => {
  const { ready, total } = featureCoverage(f);
  return ready === total;
};

/**
 * Where the models live in a thread of their own (workers/refresh-client.ts): the trial's refresh and a new
 * stimulus's absorb are queued for it instead of run here, and a fitted state is handed to it to catch up.
 * `ridge` is then its latest snapshot (what reports, readouts and follow-ups read; never mutated here).
 */
export interface ModelThread {
  /** The means of stimulus `s` changed (a trial), or it is new: refreshed or absorbed in the thread. */
  observe(enc: EncodingState, stats: NeuronStatsState, s: number): void;
  /** A fitted state replaces the models; the thread catches it up with the trials since its job. */
  install(enc: EncodingState, stats: NeuronStatsState, state: RidgeState): void;
  /** Stimuli `rows` got their features (enc.featureSet): observed ones are absorbed in the thread. */
  features(enc: EncodingState, rows: number[]): void;
}

export interface EncodingState {
  featureSet: FeatureSet;
  ridge: RidgeState | null;
  /** Set when the models live in a thread (then `ridge` is its latest snapshot). */
  thread?: ModelThread;
  /** Basis rows and rows of the last exact fit of the models in the thread (refitDue reads them). */
  shape?: { n: number; exactN: number };
  /** Basis row of each stimulus, -1 when not in the model. */
  rowOf: Int32Array;
  /**
   * Stimuli whose features these models know (1), while the set's are being computed; null: all. Only
   * these are fitted, absorbed or pending; the others join when their features arrive (addFeatures).
   */
  withFeatures: Uint8Array | null;
  /** Observed stimuli not yet in the model. */
  pending: number;
  trialsSinceRefit: number;
  /** Increments with every change of the models. */
  version: number;
  refits: number;
}

export function createEncoding(featureSet: FeatureSet, nStimuli: number): EncodingState {
  const withFeatures = featureSet.ready && !featuresComplete(featureSet) ? featureSet.ready.slice() : null;
  return { featureSet, ridge: null, rowOf: new Int32Array(nStimuli).fill(-1), withFeatures, pending: 0, trialsSinceRefit: 0, version: 0, refits: 0 };
}

/** Whether the models know stimulus `s`'s features. */
export const hasFeatures = (enc: EncodingState, s: number): boolean => !enc.withFeatures || enc.withFeatures[s] === 1;

/** Stimuli whose features the models know: [known, total]. */
export function knownFeatures(enc: EncodingState): [number, number] {
  const total = enc.rowOf.length;
  return [enc.withFeatures ? enc.withFeatures.reduce((a, v) => a + v, 0) : total, total];
}

/**
 * The set's features that arrived since the models last looked (`enc.featureSet.ready` against
 * `enc.withFeatures`): each observed stimulus among them joins the models like a new stimulus (absorbed in
 * the model thread, or here while cheap, else pending for the next fit). Returns the newly known stimuli.
 */
export function addFeatures(enc: EncodingState, stats: NeuronStatsState, absorbUnits = ABSORB_INLINE_UNITS): number[] {
  const known = enc.withFeatures;
  if (!known) return [];
  const ready = enc.featureSet.ready;
  const rows: number[] = [];
  for (let s = 0; s < known.length; s++) if (!known[s] && (!ready || ready[s])) rows.push(s);
  if (!rows.length) return rows;
  for (const s of rows) known[s] = 1;
  if (!known.includes(0)) enc.withFeatures = null;
  if (enc.thread) {
    enc.thread.features(enc, rows);
    // before the first fit the pending stimuli decide when it runs; after it the thread absorbs them
    if (!enc.shape) enc.pending = countPending(enc, stats);
    return rows;
  }
  for (const s of rows) {
    if (stats.nStim[s] === 0 || enc.rowOf[s] >= 0) continue;
    if (enc.ridge && absorbInline(enc.ridge, absorbUnits)) absorbStimulus(enc, stats, s);
    else enc.pending++;
  }
  return rows;
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
  /** Rows to allocate (the set's size: stimuli seen later are added without reallocating). */
  cap?: number;
}

/**
 * What a worker fit asks for when it is done: the responses of its rows now (N x n) and the stimuli
 * observed since the job (their features, n' x D, and responses, n' x N), which it absorbs before
 * handing the state back.
 */
export interface CatchUp {
  y: Float64Array;
  extra: { rows: number[]; features: Float32Array; y: Float64Array };
}

/** The catch-up of a fitted state with rows `rows` against the statistics now. */
export function catchUpData(enc: EncodingState, stats: NeuronStatsState, rows: number[]): CatchUp {
  const inRows = new Set(rows);
  const extra: number[] = [];
  for (let s = 0; s < stats.stimuli.length; s++) if (stats.nStim[s] > 0 && !inRows.has(s) && hasFeatures(enc, s)) extra.push(s);
  const { features, dim } = enc.featureSet;
  const C = stats.C;
  const x = new Float32Array(extra.length * dim);
  const y = new Float64Array(extra.length * C);
  extra.forEach((s, i) => {
    x.set(features.subarray(s * dim, (s + 1) * dim), i * dim);
    y.set(stats.mean.subarray(s * C, (s + 1) * C), i * C);
  });
  return { y: currentY(stats, rows), extra: { rows: extra, features: x, y } };
}

/** Applies a catch-up to a fitted state (in the worker): refreshed rows, then the new stimuli absorbed. Returns how many were absorbed. */
export function applyCatchUp(state: RidgeState, c: CatchUp): number {
  catchUp(state, c.y);
  const { D } = state.basis;
  const N = state.N;
  c.extra.rows.forEach((s, i) => addRow(state, s, c.extra.features.subarray(i * D, (i + 1) * D), c.extra.y.subarray(i * N, (i + 1) * N)));
  return c.extra.rows.length;
}

export function refitJob(enc: EncodingState, stats: NeuronStatsState, cfg: EncodingConfig): RefitJob | null {
  const rows: number[] = [];
  for (let s = 0; s < stats.stimuli.length; s++) if (stats.nStim[s] > 0 && hasFeatures(enc, s)) rows.push(s);
  if (rows.length < cfg.minStimuli) return null;
  const { features, dim } = enc.featureSet;
  const x = new Float32Array(rows.length * dim);
  rows.forEach((s, i) => x.set(features.subarray(s * dim, (s + 1) * dim), i * dim));
  return { rows, features: x, D: dim, alphas: cfg.alphas, N: stats.C, y: currentY(stats, rows), cap: stats.stimuli.length };
}

/**
 * The work of a refit job: O(n^2 D + alphas x n^3 + alphas x N x n^2). Pure; runs anywhere. With the basis
 * kernel's eigendecomposition given (a cluster worker's, cluster/refit-jobs.ts) buildBasis takes it instead
 * of computing it: the same state.
 */
export function fitJob(job: RefitJob, eigen?: KernelEigen): RidgeState {
  const basis = buildBasis(job.features, job.D, job.rows.map((_, i) => i), job.alphas, job.cap, eigen);
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

/** Observed stimuli (at least one trial) with features that are not rows of the models. */
export function countPending(enc: EncodingState, stats: NeuronStatsState): number {
  let pending = 0;
  for (let s = 0; s < stats.stimuli.length; s++) if (stats.nStim[s] > 0 && enc.rowOf[s] < 0 && hasFeatures(enc, s)) pending++;
  return pending;
}

/**
 * Installs a fitted state. Trials that arrived while the job ran (a worker refit) are applied as
 * refreshes of their rows, so nothing is lost; stimuli that appeared meanwhile stay pending.
 */
export function installRefit(enc: EncodingState, stats: NeuronStatsState, state: RidgeState, absorbUnits = ABSORB_INLINE_UNITS): EncodingState {
  if (enc.thread) {
    enc.pending = 0;
    enc.trialsSinceRefit = 0;
    enc.refits++;
    enc.thread.install(enc, stats, state);
    return enc;
  }
  const { rows } = state.basis;
  catchUp(state, currentY(stats, rows));
  enc.ridge = state;
  enc.rowOf.fill(-1);
  rows.forEach((s, i) => (enc.rowOf[s] = i));
  enc.pending = 0;
  enc.trialsSinceRefit = 0;
  enc.version++;
  enc.refits++;
  // stimuli observed while the fit ran and not absorbed by it (a worker fit absorbs all but the last few):
  // absorbed here while cheap, else pending for the next fit
  for (let s = 0; s < stats.stimuli.length; s++) {
    if (stats.nStim[s] === 0 || enc.rowOf[s] >= 0 || !hasFeatures(enc, s)) continue;
    if (absorbInline(state, absorbUnits)) absorbStimulus(enc, stats, s);
    else enc.pending++;
  }
  return enc;
}

/** Adds observed stimulus `s` (not yet a row) to the fitted models: ridge.ts addRow with its features and current means. */
export function absorbStimulus(enc: EncodingState, stats: NeuronStatsState, s: number): EncodingState {
  const ridge = enc.ridge!;
  const { features, dim } = enc.featureSet;
  addRow(ridge, s, features.subarray(s * dim, (s + 1) * dim), stats.mean.subarray(s * stats.C, (s + 1) * stats.C));
  enc.rowOf[s] = ridge.basis.n - 1;
  enc.version++;
  return enc;
}

/** Exact refit on every stimulus with at least one trial, here and now. */
export function refit(enc: EncodingState, stats: NeuronStatsState, cfg: EncodingConfig): EncodingState {
  const job = refitJob(enc, stats, cfg);
  return job ? installRefit(enc, stats, fitJob(job), cfg.absorbInlineUnits) : enc;
}

/**
 * Counts a completed trial of stimulus `s` (its means in `stats` already updated): a refresh of its row,
 * a new stimulus absorbed into the models (while that is cheap: `absorbUnits`), or a pending stimulus.
 */
export function observeTrial(enc: EncodingState, stats: NeuronStatsState, s: number, absorbUnits = ABSORB_INLINE_UNITS): EncodingState {
  enc.trialsSinceRefit++;
  if (enc.thread && enc.shape) {
    enc.thread.observe(enc, stats, s);
    return enc;
  }
  const row = enc.rowOf[s];
  if (enc.ridge && row >= 0) {
    updateRow(enc.ridge, row, stats.mean.subarray(s * stats.C, (s + 1) * stats.C));
    enc.version++;
  } else if (!hasFeatures(enc, s)) {
    // joins the models when its features arrive (addFeatures)
  } else if (enc.ridge && absorbInline(enc.ridge, absorbUnits)) {
    if (stats.nStim[s] > 1) enc.pending = Math.max(0, enc.pending - 1); // it was pending (seen while absorbing was too costly)
    absorbStimulus(enc, stats, s);
  } else if (stats.nStim[s] === 1) enc.pending++;
  return enc;
}

/**
 * Whether an exact refit is due: no models yet and stimuli to fit; pending stimuli (too costly to absorb
 * inline) and `refitEveryTrials` trials since the last fit, or the session's end; or stimuli absorbed
 * since the last exact fit, at the session's end or once they are as many as the stimuli of that fit (and
 * at least `refitEveryTrials`): a consistency check whose cost, n^3, is spread over the n stimuli absorbed.
 */
export function refitDue(enc: EncodingState, cfg: EncodingConfig, final: boolean): boolean {
  const shape = enc.thread ? enc.shape : enc.ridge?.basis;
  if (!shape) return enc.pending > 0;
  if (enc.pending > 0 && (final || enc.trialsSinceRefit >= cfg.refitEveryTrials)) return true;
  const { n, exactN } = shape;
  const absorbed = n - exactN;
  return absorbed > 0 && (final || absorbed >= Math.max(cfg.refitEveryTrials, exactN));
}

/**
 * After a completed trial of stimulus `s` (its means in `stats` already updated): refresh the models, or
 * count the stimulus as pending and refit when due. `final` (session end) refits whatever is pending.
 */
export function stepEncoding(enc: EncodingState, stats: NeuronStatsState, s: number | undefined, cfg: EncodingConfig, final = false): EncodingState {
  if (s !== undefined) observeTrial(enc, stats, s, cfg.absorbInlineUnits);
  return refitDue(enc, cfg, final) ? refit(enc, stats, cfg) : enc;
}
