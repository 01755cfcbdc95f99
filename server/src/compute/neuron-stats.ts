/**
 * Per-neuron statistics as plain state functions: Welford running mean and variance per (channel,
 * stimulus) and per (channel, category), even/odd-repeat sums for split-half reliability, PSTH sums.
 * Derived figures (selectivity index, d', reliability, noise ceiling) are computed on read by
 * `channelStats`, so a trial costs O(channels x PSTH bins).
 */
import type { ChannelStats, SessionStart, Stimulus, StimulusStats } from '@sharedlens/shared';
import type { CompletedTrial, PsthLayout } from './trial-assembler.ts';

export interface NeuronStatsState {
  start: SessionStart;
  C: number;
  stimuli: Stimulus[];
  stimIndex: Map<string, number>;
  categories: string[];
  catOfStim: Int32Array;
  /** Per stimulus: n, and mean / M2 per channel (S x C, stimulus-major). */
  nStim: Int32Array;
  mean: Float64Array;
  m2: Float64Array;
  /** Per category: n, mean / M2 per channel (K x C). */
  nCat: Int32Array;
  catMean: Float64Array;
  catM2: Float64Array;
  /** Split halves: sums of responses of even (0) and odd (1) repeats per (stimulus, channel). */
  halfSum: [Float64Array, Float64Array];
  halfN: [Int32Array, Int32Array];
  psthLayout: PsthLayout | null;
  /** Per stimulus: summed counts C x nPsthBins, allocated on first trial. */
  psthSum: (Float64Array | null)[];
  trialsCompleted: number;
  trialsAborted: number;
  /** Onset times (rig ms) of completed trials in the last RATE_WINDOW_MS. */
  recentOnsetsMs: number[];
}

const RATE_WINDOW_MS = 10_000;

export function createNeuronStats(start: SessionStart, stimuli: Stimulus[], psthLayout: PsthLayout | null): NeuronStatsState {
  const C = start.channels.length;
  const S = stimuli.length;
  const categories = [...new Set(stimuli.map((s) => s.category))].sort();
  const K = categories.length;
  return {
    start,
    C,
    stimuli,
    stimIndex: new Map(stimuli.map((s, i) => [s.id, i])),
    categories,
    catOfStim: Int32Array.from(stimuli, (s) => categories.indexOf(s.category)),
    nStim: new Int32Array(S),
    mean: new Float64Array(S * C),
    m2: new Float64Array(S * C),
    nCat: new Int32Array(K),
    catMean: new Float64Array(K * C),
    catM2: new Float64Array(K * C),
    halfSum: [new Float64Array(S * C), new Float64Array(S * C)],
    halfN: [new Int32Array(S), new Int32Array(S)],
    psthLayout,
    psthSum: new Array(S).fill(null),
    trialsCompleted: 0,
    trialsAborted: 0,
    recentOnsetsMs: [],
  };
}

/** Adds one completed trial. Mutates and returns `state`. */
export function addTrial(state: NeuronStatsState, t: CompletedTrial): NeuronStatsState {
  const s = state.stimIndex.get(t.stimulusId);
  if (s === undefined) return state;
  const { C } = state;
  const half = state.nStim[s] % 2;
  welford(state.nStim, state.mean, state.m2, s, C, t.responses);
  welford(state.nCat, state.catMean, state.catM2, state.catOfStim[s], C, t.responses);
  const hs = state.halfSum[half];
  for (let c = 0; c < C; c++) hs[s * C + c] += t.responses[c];
  state.halfN[half][s]++;
  if (t.psth && state.psthLayout) {
    const sum = (state.psthSum[s] ??= new Float64Array(t.psth.length));
    for (let i = 0; i < sum.length; i++) sum[i] += t.psth[i];
  }
  state.trialsCompleted++;
  state.recentOnsetsMs.push(t.onsetMs);
  while (state.recentOnsetsMs.length && state.recentOnsetsMs[0] <= t.onsetMs - RATE_WINDOW_MS) state.recentOnsetsMs.shift();
  return state;
}

/** Counts an aborted trial (it never enters the statistics). */
export function addAbort(state: NeuronStatsState): NeuronStatsState {
  state.trialsAborted++;
  return state;
}

/** Welford update of row `row` (n[row] and C means/M2) with vector x. */
function welford(n: Int32Array, mean: Float64Array, m2: Float64Array, row: number, C: number, x: Float64Array): void {
  const k = ++n[row];
  const o = row * C;
  for (let c = 0; c < C; c++) {
    const d = x[c] - mean[o + c];
    mean[o + c] += d / k;
    m2[o + c] += d * (x[c] - mean[o + c]);
  }
}

/** Completed trials per second of rig time over the last 10 s (over the span so far when shorter). */
export function trialsPerSec(state: NeuronStatsState): number {
  const r = state.recentOnsetsMs;
  if (r.length < 2) return 0;
  const spanMs = Math.min(RATE_WINDOW_MS, r[r.length - 1] - r[0]);
  return spanMs > 0 ? ((r.length - 1) * 1000) / spanMs : 0;
}

/** Combined count, mean and M2 of several Welford rows (Chan et al. parallel formula). */
function pooled(state: NeuronStatsState, rows: number[], c: number): { n: number; mean: number; m2: number } {
  let n = 0;
  let mean = 0;
  let m2 = 0;
  for (const k of rows) {
    const nb = state.nCat[k];
    if (nb === 0) continue;
    const mb = state.catMean[k * state.C + c];
    const d = mb - mean;
    const nn = n + nb;
    mean += (d * nb) / nn;
    m2 += state.catM2[k * state.C + c] + (d * d * n * nb) / nn;
    n = nn;
  }
  return { n, mean, m2 };
}

/** Pearson r of two equally long sequences; null when undefined. */
export function pearson(a: ArrayLike<number>, b: ArrayLike<number>): number | null {
  const n = a.length;
  if (n < 3) return null;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i];
    mb += b[i];
  }
  ma /= n;
  mb /= n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    const da = a[i] - ma;
    const db = b[i] - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : null;
}

/** Spearman-Brown prophecy for doubling the number of repeats: 2r / (1 + r). */
export function spearmanBrown(r: number | null): number | null {
  return r === null || r <= -1 ? null : (2 * r) / (1 + r);
}

/** Model scores against the noise ceiling R (see normalisedScores). */
export interface NormalisedScores {
  normalisedR: number | null;
  fev: number | null;
  normalisedReason: string | null;
}

/**
 * Scores a correlation r of predicted and measured mean responses against the reliability R of those means
 * (the Spearman-Brown noise ceiling): normalisedR = r / sqrt(R) and fev = sign(r) r^2 / R. A model that
 * predicts the true tuning exactly correlates with the measured means at sqrt(R), so both are 1 for it in
 * expectation (r / R is not bounded by 1 and is not reported). Null with a reason when r or R is undefined
 * or R is below `minReliability` (a ratio over a ceiling near 0 is noise).
 * Example: normalisedScores(0.6, 0.81, 0.1) gives normalisedR 0.667, fev 0.444.
 */
export function normalisedScores(r: number | null, ceiling: number | null, minReliability: number): NormalisedScores {
  const none = (normalisedReason: string) => ({ normalisedR: null, fev: null, normalisedReason });
  if (r === null) return none('model correlation undefined (too few stimuli, or constant predictions or responses)');
  if (ceiling === null) return none('no noise ceiling yet (needs stimuli with repeats in both split halves)');
  if (!(ceiling >= minReliability)) return none(`noise ceiling ${ceiling.toFixed(3)} below the minimum reliability ${minReliability}`);
  return { normalisedR: r / Math.sqrt(ceiling), fev: (Math.sign(r) * r * r) / ceiling, normalisedReason: null };
}

/** Derived statistics of every channel. */
export function channelStats(state: NeuronStatsState): ChannelStats[] {
  const { C, categories } = state;
  const K = categories.length;
  const both: number[] = [];
  for (let s = 0; s < state.stimuli.length; s++) if (state.halfN[0][s] > 0 && state.halfN[1][s] > 0) both.push(s);
  const splitHalf = splitHalfRs(state, both);
  const declared = state.start.preferredCategory ? categories.indexOf(state.start.preferredCategory) : -1;
  return state.start.channels.map((ch, c) => {
    const categoryMeans: Record<string, number | null> = {};
    let pref = declared;
    for (let k = 0; k < K; k++) {
      const m = state.nCat[k] > 0 ? state.catMean[k * C + c] : null;
      categoryMeans[categories[k]] = m;
      if (declared < 0 && m !== null && (pref < 0 || m > state.catMean[pref * C + c])) pref = k;
    }
    let selectivityIndex: number | null = null;
    let dPrime: number | null = null;
    let selectivityReason: string | null = K < 2 ? 'the stimulus set has one category: selectivity compares a preferred category with the others' : null;
    if (pref >= 0 && K >= 2) {
      const p = pooled(state, [pref], c);
      const o = pooled(state, categories.map((_, k) => k).filter((k) => k !== pref), c);
      if (p.n > 0 && o.n > 0) {
        const den = Math.abs(p.mean) + Math.abs(o.mean);
        selectivityIndex = den > 0 ? (p.mean - o.mean) / den : 0;
        if (p.n > 1 && o.n > 1) {
          const v = (p.m2 / (p.n - 1) + o.m2 / (o.n - 1)) / 2;
          dPrime = v > 0 ? (p.mean - o.mean) / Math.sqrt(v) : null;
        }
      }
    }
    if (K >= 2 && selectivityIndex === null) selectivityReason = 'no trials yet in the preferred category or outside it';
    const splitHalfR = splitHalf[c];
    let nTrials = 0;
    for (let k = 0; k < K; k++) nTrials += state.nCat[k];
    return {
      id: ch.id,
      label: ch.label,
      ...(ch.area !== undefined ? { area: ch.area } : {}),
      nTrials,
      categoryMeans,
      preferredCategory: pref >= 0 && state.nCat[pref] > 0 ? categories[pref] : declared >= 0 ? categories[declared] : null,
      selectivityIndex,
      selectivityReason,
      dPrime,
      splitHalfR,
      noiseCeiling: spearmanBrown(splitHalfR),
      reliabilityStimuli: both.length,
    };
  });
}

/**
 * Every channel's split-half reliability (pearson of the two halves' means over the stimuli `both`), the
 * same sums in the same order as pearson() per channel, but stimulus by stimulus over all channels, so
 * the statistics are read in their memory order (channel by channel they are read with a stride of C: at
 * 1,536 channels x 500 stimuli that made the dashboard's per-channel statistics cost tens of ms).
 */
function splitHalfRs(state: NeuronStatsState, both: number[]): (number | null)[] {
  const { C } = state;
  const n = both.length;
  if (n < 3) return new Array<null>(C).fill(null);
  const [h0, h1] = state.halfSum;
  const ma = new Float64Array(C);
  const mb = new Float64Array(C);
  for (const s of both) {
    const n0 = state.halfN[0][s];
    const n1 = state.halfN[1][s];
    for (let c = 0; c < C; c++) {
      ma[c] += h0[s * C + c] / n0;
      mb[c] += h1[s * C + c] / n1;
    }
  }
  for (let c = 0; c < C; c++) {
    ma[c] /= n;
    mb[c] /= n;
  }
  const sab = new Float64Array(C);
  const saa = new Float64Array(C);
  const sbb = new Float64Array(C);
  for (const s of both) {
    const n0 = state.halfN[0][s];
    const n1 = state.halfN[1][s];
    for (let c = 0; c < C; c++) {
      const da = h0[s * C + c] / n0 - ma[c];
      const db = h1[s * C + c] / n1 - mb[c];
      sab[c] += da * db;
      saa[c] += da * da;
      sbb[c] += db * db;
    }
  }
  return Array.from({ length: C }, (_, c) => (saa[c] > 0 && sbb[c] > 0 ? sab[c] / Math.sqrt(saa[c] * sbb[c]) : null));
}

/** Mean and variance per stimulus and channel. */
export function stimulusStats(state: NeuronStatsState): StimulusStats[] {
  const { C } = state;
  return state.stimuli.map((st, s) => {
    const n = state.nStim[s];
    const mean: (number | null)[] = [];
    const variance: (number | null)[] = [];
    for (let c = 0; c < C; c++) {
      mean.push(n > 0 ? state.mean[s * C + c] : null);
      variance.push(n > 1 ? state.m2[s * C + c] / (n - 1) : null);
    }
    return { id: st.id, category: st.category, nTrials: n, mean, variance };
  });
}

/** Mean spikes per PSTH bin per trial, per category: [category][channel][bin]. */
export function categoryPsth(state: NeuronStatsState): Record<string, number[][]> | undefined {
  const layout = state.psthLayout;
  if (!layout) return undefined;
  const { C } = state;
  const out: Record<string, number[][]> = {};
  state.categories.forEach((cat, k) => {
    const sum = new Float64Array(C * layout.nBins);
    let n = 0;
    state.stimuli.forEach((_, s) => {
      const p = state.psthSum[s];
      if (state.catOfStim[s] !== k || !p) return;
      n += state.nStim[s];
      for (let i = 0; i < sum.length; i++) sum[i] += p[i];
    });
    out[cat] = Array.from({ length: C }, (_, c) => Array.from(sum.subarray(c * layout.nBins, (c + 1) * layout.nBins), (v) => (n > 0 ? v / n : 0)));
  });
  return out;
}
