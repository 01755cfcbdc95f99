/**
 * Out-of-category drivers and their reference images (docs/compute.md, "Drivers").
 * A channel has drivers only if it is category-selective: its preferred category's stimuli respond more
 * than the rest (a test over stimulus means at `selectivityAlpha`). Then every stimulus outside the
 * preferred category with at least `minRepeats` trials is tested against the preferred category's trial
 * responses (one-sided Welch t-test on the Welford summaries), and the Benjamini-Hochberg procedure
 * controls the false discovery rate over the channel's candidates at `q`. Its reference image is the
 * preferred-category stimulus x maximising the cosine similarity of w (.) phi(driver) and w (.) phi(x).
 */
import type { SelectivityTest } from '@sharedlens/shared';
import type { NeuronStatsState } from './neuron-stats.ts';
import { welchTest } from './welch-test.ts';
import { mulberry32, shuffle } from '../sim/synthetic-neurons.ts';

export type SelectivityTestName = 'welch' | 'permutation';

export interface DriverRule {
  /** Trials a candidate needs before it is tested (at least 2: the Welch test needs its variance). */
  minRepeats: number;
  /** How category selectivity is tested (both over stimulus means; see selectivityTest). */
  selectivityTest: SelectivityTestName;
  selectivityAlpha: number;
  /** False discovery rate over a channel's candidates (Benjamini-Hochberg). */
  q: number;
  /** Label shuffles of the permutation test. */
  permutations: number;
}

/** The selectivity gate's result, as the API reports it (shared/src/protocol/stats.ts). */
export type SelectivityResult = SelectivityTest;

export interface DriverCandidate {
  stimulus: number;
  mean: number;
  nTrials: number;
  /** Mean response to the preferred category (trial mean). */
  preferredMean: number;
  /** Welch t of the candidate's trials against the preferred category's trials, its df and one-sided p. */
  t: number;
  df: number;
  p: number;
  /** Benjamini-Hochberg adjusted p-value among the channel's candidates. */
  q: number;
}

export interface DriverTestResult {
  selectivity: SelectivityResult | null;
  /** Out-of-category stimuli with enough trials that were tested. */
  candidates: number;
  /** Significant drivers, strongest (highest mean response) first. */
  drivers: DriverCandidate[];
  /** Why there are no drivers; null when there are some. */
  reason: string | null;
}

const fmtP = (p: number) => (p < 1e-3 ? p.toExponential(1) : p.toFixed(3));

/** Drivers of channel `c` given its preferred category index, with the tests behind them. */
export function findDrivers(stats: NeuronStatsState, c: number, prefCategory: number, rule: DriverRule): DriverTestResult {
  const none = (reason: string, selectivity: SelectivityResult | null = null, candidates = 0): DriverTestResult => ({ selectivity, candidates, drivers: [], reason });
  if (stats.categories.length < 2) return none('the stimulus set has one category: drivers need a preferred category and stimuli outside it');
  if (prefCategory < 0 || stats.nCat[prefCategory] === 0) return none('no trials of a preferred category yet');
  const selectivity = selectivityTest(stats, c, prefCategory, rule);
  if (!selectivity) return none('too few stimuli with trials for the selectivity test (2 needed in the preferred category and 2 outside it)');
  if (!selectivity.significant) return none(`not category-selective (${selectivity.test} test p = ${fmtP(selectivity.p)}, alpha ${rule.selectivityAlpha})`, selectivity);
  const { C } = stats;
  const kC = prefCategory * C + c;
  const nPref = stats.nCat[prefCategory];
  const pref = { n: nPref, mean: stats.catMean[kC], variance: nPref > 1 ? stats.catM2[kC] / (nPref - 1) : 0 };
  const tested: Omit<DriverCandidate, 'q'>[] = [];
  for (let s = 0; s < stats.stimuli.length; s++) {
    const n = stats.nStim[s];
    if (stats.catOfStim[s] === prefCategory || n < Math.max(2, rule.minRepeats)) continue;
    const mean = stats.mean[s * C + c];
    const w = welchTest({ n, mean, variance: stats.m2[s * C + c] / (n - 1) }, pref);
    if (w) tested.push({ stimulus: s, mean, nTrials: n, preferredMean: pref.mean, ...w });
  }
  if (!tested.length) return none(`no stimulus outside the preferred category has ${Math.max(2, rule.minRepeats)} trials yet`, selectivity);
  const qs = benjaminiHochberg(tested.map((d) => d.p));
  const drivers = tested.map((d, i) => ({ ...d, q: qs[i] })).filter((d) => d.q <= rule.q);
  drivers.sort((a, b) => b.mean - a.mean);
  return { selectivity, candidates: tested.length, drivers, reason: drivers.length ? null : `none of ${tested.length} candidates is above the preferred-category mean at FDR q ${rule.q}` };
}

/**
 * Is channel `c` selective for category `k`? Stimuli are the unit (their mean responses), not trials:
 * trials of one stimulus share its tuning, so a trial-level test counts one stimulus' repeats as independent
 * evidence and calls almost every tuned channel selective once categories are arbitrary.
 * - welch: one-sided Welch t-test, preferred-category stimulus means vs the others'. When the preferred
 *   category was picked as the highest mean (not declared in session:start), p is multiplied by the number
 *   of categories (Bonferroni over the categories that could have been picked).
 * - permutation: the difference of those means against `permutations` shuffles of the category labels
 *   over stimuli; when the preferred category was picked from the data, each shuffle's statistic is the
 *   largest such difference over categories, so the pick is part of the null. Seeded per channel, so a
 *   replay reproduces the result.
 * Null when either side has fewer than two stimuli with trials.
 */
export function selectivityTest(stats: NeuronStatsState, c: number, k: number, rule: Pick<DriverRule, 'selectivityTest' | 'selectivityAlpha' | 'permutations'>): SelectivityResult | null {
  const { C } = stats;
  const means: number[] = [];
  const labels: number[] = [];
  for (let s = 0; s < stats.stimuli.length; s++) {
    if (stats.nStim[s] === 0) continue;
    means.push(stats.mean[s * C + c]);
    labels.push(stats.catOfStim[s]);
  }
  const inK = labels.filter((l) => l === k).length;
  if (inK < 2 || means.length - inK < 2) return null;
  const declared = stats.start.preferredCategory !== undefined && stats.categories[k] === stats.start.preferredCategory;
  const present = [...new Set(labels)];
  let statistic: number;
  let p: number;
  if (rule.selectivityTest === 'welch') {
    const summary = (keep: (l: number) => boolean) => {
      const xs = means.filter((_, i) => keep(labels[i]));
      const mean = xs.reduce((a, x) => a + x, 0) / xs.length;
      return { n: xs.length, mean, variance: xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1) };
    };
    const w = welchTest(summary((l) => l === k), summary((l) => l !== k))!;
    statistic = w.t;
    p = Math.min(1, w.p * (declared ? 1 : present.length));
  } else {
    const total = means.reduce((a, x) => a + x, 0);
    const diffOf = (ls: number[], cat: number) => {
      let sum = 0;
      let n = 0;
      for (let i = 0; i < ls.length; i++) if (ls[i] === cat) (sum += means[i]), n++;
      return n > 0 && n < ls.length ? sum / n - (total - sum) / (ls.length - n) : -Infinity;
    };
    const stat = (ls: number[]) => (declared ? diffOf(ls, k) : Math.max(...present.map((cat) => diffOf(ls, cat))));
    statistic = diffOf(labels, k);
    const observed = stat(labels);
    const rand = mulberry32(0x5e1ec7 + c);
    const ls = labels.slice();
    let atLeast = 0;
    for (let i = 0; i < rule.permutations; i++) if (stat(shuffle(ls, rand)) >= observed - 1e-12 * Math.abs(observed)) atLeast++;
    p = (1 + atLeast) / (1 + rule.permutations);
  }
  return { test: rule.selectivityTest, statistic, p, alpha: rule.selectivityAlpha, significant: p <= rule.selectivityAlpha, preferredStimuli: inK, otherStimuli: means.length - inK };
}

/**
 * Benjamini-Hochberg adjusted p-values (q-values), in the input order: q_(i) = min over j >= i of
 * p_(j) m / j, capped at 1. Rejecting q <= level controls the false discovery rate at that level.
 */
export function benjaminiHochberg(ps: number[]): number[] {
  const m = ps.length;
  const order = ps.map((_, i) => i).sort((a, b) => ps[a] - ps[b]);
  const q = new Array<number>(m);
  let running = 1;
  for (let r = m - 1; r >= 0; r--) {
    running = Math.min(running, (ps[order[r]] * m) / (r + 1));
    q[order[r]] = running;
  }
  return q;
}

/** Readout-weighted cosine similarity of two feature vectors: cos(w (.) a, w (.) b). */
export function weightedCosine(w: ArrayLike<number>, a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let d = 0; d < w.length; d++) {
    const x = w[d] * a[d];
    const y = w[d] * b[d];
    ab += x * y;
    aa += x * x;
    bb += y * y;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}

/** The preferred-category stimulus most similar to `driver` as the neuron weighs features. */
export function referenceImage(w: ArrayLike<number>, features: Float32Array, dim: number, driver: number, candidates: number[]): { stimulus: number; similarity: number } | null {
  const a = features.subarray(driver * dim, (driver + 1) * dim);
  let best: { stimulus: number; similarity: number } | null = null;
  for (const s of candidates) {
    const sim = weightedCosine(w, a, features.subarray(s * dim, (s + 1) * dim));
    if (!best || sim > best.similarity) best = { stimulus: s, similarity: sim };
  }
  return best;
}
