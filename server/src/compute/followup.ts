/**
 * Follow-up stimuli while the animal is in the rig (closed loop), as plain functions over the encoding
 * models. Strategies, mixable:
 *  - probe:   candidates outside a neuron's preferred category with the highest predicted response
 *             (relative to its preferred-category mean), across the selected neurons;
 *  - improve: the trials that most reduce the Bayesian-ridge posterior variance of the predictions summed
 *             over the candidate pool (repeats included), greedy with the exact update;
 *  - confirm: repeats of drivers (above the preferred mean) that have too few presentations.
 * Every suggestion carries its reason.
 */
import type { Suggestion } from '@sharedlens/shared';
import type { EncodingState } from './encoding.ts';
import type { NeuronStatsState } from './neuron-stats.ts';
import { Matrix, solve } from 'ml-matrix';
import { chosenAlphas, neuronModel, predict } from './ridge.ts';

export type Strategy = Suggestion['strategy'];

export interface Candidate {
  id: string;
  setId: string;
  category: string;
  features: Float32Array;
}

export interface FollowupContext {
  stats: NeuronStatsState;
  enc: EncodingState;
  /** Preferred category index per channel (-1: unknown). */
  preferred: number[];
  pool: Candidate[];
  /** Channel indices to serve (default: all). */
  neurons: number[];
  confirmRepeats: number;
  /** The regularisation grid of the models (config.encoding.alphas): the improve design's prior before the first fit. */
  alphas: number[];
}

const channelId = (ctx: FollowupContext, c: number) => ctx.stats.start.channels[c].id;

/** Channel c's preferred category index, or -1 while it has none with trials (probe and confirm skip it). */
const preferredCategory = (ctx: FollowupContext, c: number): number => {
  const k = ctx.preferred[c];
  return k >= 0 && ctx.stats.nCat[k] > 0 ? k : -1;
};

/**
 * (a) Probe out-of-category drivers: per neuron, the candidates outside its preferred category ranked by
 * predicted response relative to its preferred-category mean; taken round-robin across the neurons so
 * every selected neuron gets its best candidates. Stimuli already shown `confirmRepeats` times are known,
 * not probed.
 */
export function suggestProbe(ctx: FollowupContext, count: number): Suggestion[] {
  const ridge = ctx.enc.ridge;
  if (!ridge) return [];
  const { stats } = ctx;
  const alphas = chosenAlphas(ridge);
  const shown = new Map(stats.stimuli.map((s, i) => [s.id, stats.nStim[i]]));
  const perNeuron: { c: number; ranked: { i: number; z: number; predicted: number }[] }[] = [];
  for (const c of ctx.neurons) {
    const k = preferredCategory(ctx, c);
    if (k < 0) continue;
    const model = neuronModel(ridge, c, alphas[c]);
    const preds = ctx.pool.map((cand) => predict(model, cand.features));
    const mean = preds.reduce((a, b) => a + b, 0) / preds.length;
    const sd = Math.sqrt(preds.reduce((a, b) => a + (b - mean) ** 2, 0) / preds.length) || 1;
    const prefMean = stats.catMean[k * stats.C + c];
    const ranked = ctx.pool
      .map((cand, i) => ({ i, z: (preds[i] - prefMean) / sd, predicted: preds[i], cand }))
      .filter((x) => x.cand.category !== stats.categories[k] && (shown.get(x.cand.id) ?? 0) < ctx.confirmRepeats)
      .sort((a, b) => b.z - a.z);
    perNeuron.push({ c, ranked });
  }
  perNeuron.sort((a, b) => (b.ranked[0]?.z ?? -Infinity) - (a.ranked[0]?.z ?? -Infinity));
  const out: Suggestion[] = [];
  const taken = new Set<number>();
  for (let depth = 0; out.length < count && perNeuron.some((p) => p.ranked.length > depth); depth++) {
    for (const { c, ranked } of perNeuron) {
      if (out.length >= count) break;
      const pick = ranked.slice(depth).find((x) => !taken.has(x.i));
      if (!pick) continue;
      taken.add(pick.i);
      const id = channelId(ctx, c);
      out.push({
        stimulusId: ctx.pool[pick.i].id,
        setId: ctx.pool[pick.i].setId,
        rank: out.length,
        strategy: 'probe',
        neurons: [id],
        predicted: pick.predicted,
        uncertainty: null,
        reason: `predicted ${pick.predicted.toFixed(2)} for ${id}, ${Math.abs(pick.z).toFixed(2)} SD ${pick.z >= 0 ? 'above' : 'below'} its preferred-category mean; outside its preferred category`,
      });
    }
  }
  return out;
}

/**
 * (b) Improve the models: the trials that most reduce the posterior variance of the models' predictions
 * summed over the whole candidate pool (an integrated-variance, A-optimal-style design). Bayesian ridge in
 * function space with regularisation a: prior covariance k(x, y) / a with k(x, y) = (x - m) . (y - m) + 1
 * (m: the pool's mean features), unit noise per trial, so a stimulus mean over n trials has noise 1/n;
 * Sigma_a = K_PP/a - K_PT/a (K_TT/a + N^-1)^-1 K_TP/a. The regularisation is not known well enough in the
 * first tens of trials to design for, so the design marginalises it over the models' grid: one posterior
 * per a, each a's gains relative to its own remaining variance (else the weakest regularisation, whose
 * variances are largest, decides alone). One more trial of candidate c removes
 * sum over a of |Sigma_a[:, c]|^2 / (Sigma_a[c, c] + 1) / tr(Sigma_a); picks are greedy with the exact
 * rank-1 update, so repeats of shown stimuli are valued as well as unseen images; one request never names a
 * stimulus twice. The posterior variance of a linear-Gaussian model does not depend on the responses, so
 * the design needs the features and the trial counts only: it works from the first trial, and it is the
 * same for every neuron (the selected neurons only name whom the reason speaks for).
 * Why not each neuron's chosen regularisation: the leave-one-out choice is noisy at a few tens of stimuli
 * (at 24 stimuli in random order the choices span the whole grid) and often settles on strong
 * regularisation, whose posterior sends the design to the extremes of the first principal direction, and
 * the data it then gets keep the regularisation strong. Closed-loop benchmark, mixed population, the
 * server's grid, 40 seeds, trials to a median score of 0.5: shuffled random order 41, design with each
 * neuron's chosen regularisation 28 (1.44x), half grid and half the neurons' choices 27 (1.52x),
 * marginalised over the grid 25 (1.63x).
 * O(M^2 D + A x (n^3 + M^2 n)) for M candidates, n observed stimuli and A regularisation values.
 */
export function suggestImprove(ctx: FollowupContext, count: number): Suggestion[] {
  const { stats } = ctx;
  const M = ctx.pool.length;
  if (!M || !ctx.neurons.length || !ctx.alphas.length) return [];
  const D = ctx.enc.featureSet.dim;
  const { alphas } = ctx;
  const xMean = new Float64Array(D);
  for (const c of ctx.pool) for (let d = 0; d < D; d++) xMean[d] += c.features[d] / M;
  const centred = (f: ArrayLike<number>) => Float64Array.from({ length: D }, (_, d) => f[d] - xMean[d]);
  const cand = ctx.pool.map((c) => centred(c.features));
  const { features } = ctx.enc.featureSet;
  const observed: number[] = [];
  for (let s = 0; s < stats.stimuli.length; s++) if (stats.nStim[s] > 0) observed.push(s);
  const train = observed.map((s) => centred(features.subarray(s * D, (s + 1) * D)));
  const n = train.length;
  const dot = (a: Float64Array, b: Float64Array) => {
    let v = 1;
    for (let d = 0; d < D; d++) v += a[d] * b[d];
    return v;
  };
  // kernels once (without 1/alpha), then one posterior covariance over the pool per regularisation value
  const ktt = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (j <= i ? dot(train[i], train[j]) : 0)));
  const ktp = Array.from({ length: n }, (_, i) => Float64Array.from(cand, (c) => dot(train[i], c)));
  const kpp = new Float64Array(M * M);
  for (let p = 0; p < M; p++) for (let q = 0; q <= p; q++) kpp[p * M + q] = kpp[q * M + p] = dot(cand[p], cand[q]);
  const posterior = (alpha: number) => {
    const A = new Matrix(n, n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        const v = ktt[i][j] / alpha + (i === j ? 1 / stats.nStim[observed[i]] : 0);
        A.set(i, j, v);
        A.set(j, i, v);
      }
    }
    const KTP = new Matrix(n, M);
    for (let i = 0; i < n; i++) for (let p = 0; p < M; p++) KTP.set(i, p, ktp[i][p] / alpha);
    const W = n ? solve(A, KTP) : new Matrix(0, M); // A^-1 K_TP
    // column-major copies, so the inner products below run over contiguous memory
    const kc = new Float64Array(M * n);
    const wc = new Float64Array(M * n);
    for (let i = 0; i < n; i++) {
      for (let p = 0; p < M; p++) {
        kc[p * n + i] = KTP.get(i, p);
        wc[p * n + i] = W.get(i, p);
      }
    }
    const sigma = new Float64Array(M * M);
    for (let p = 0; p < M; p++) {
      for (let q = 0; q <= p; q++) {
        let v = kpp[p * M + q] / alpha;
        const op = p * n;
        const oq = q * n;
        for (let i = 0; i < n; i++) v -= kc[op + i] * wc[oq + i];
        sigma[p * M + q] = v;
        sigma[q * M + p] = v;
      }
    }
    return sigma;
  };
  const trace = (sigma: Float64Array) => {
    let t = 0;
    for (let p = 0; p < M; p++) t += sigma[p * M + p];
    return t;
  };
  // every regularisation counts the same: its gains are relative to its predictive variance at the time of the request
  const posts = alphas.map((a) => {
    const sigma = posterior(a);
    return { weight: 1 / (trace(sigma) || 1), sigma };
  });
  const before = posts.reduce((t, g) => t + g.weight * trace(g.sigma), 0);
  const out: Suggestion[] = [];
  const picked = new Uint8Array(M);
  // shares below 1% with three decimals, so neighbouring suggestions do not all read "0.1%"
  const pct = (p: number) => (p < 1 ? p.toFixed(3) : p.toFixed(1));
  let prevPct: number | null = null;
  for (let r = 0; r < count; r++) {
    let best = -1;
    let gain = -Infinity;
    for (let c = 0; c < M; c++) {
      if (picked[c]) continue;
      let g = 0;
      for (const { weight, sigma } of posts) {
        let h = 0;
        for (let p = 0; p < M; p++) h += sigma[p * M + c] * sigma[p * M + c];
        g += (weight * h) / (sigma[c * M + c] + 1);
      }
      if (g > gain) {
        gain = g;
        best = c;
      }
    }
    if (best < 0) break;
    picked[best] = 1;
    let uncertainty = 0;
    for (const g of posts) {
      const col = Float64Array.from({ length: M }, (_, p) => g.sigma[p * M + best]);
      const denom = col[best] + 1;
      uncertainty += col[best] / posts.length;
      for (let p = 0; p < M; p++) for (let q = 0; q < M; q++) g.sigma[p * M + q] -= (col[p] * col[q]) / denom;
    }
    const shown = stats.nStim[stats.stimIndex.get(ctx.pool[best].id) ?? -1] ?? 0;
    const lastPct = prevPct;
    prevPct = (100 * gain) / before;
    out.push({
      stimulusId: ctx.pool[best].id,
      setId: ctx.pool[best].setId,
      rank: r,
      strategy: 'improve',
      neurons: ctx.neurons.slice(0, 3).map((c) => channelId(ctx, c)),
      predicted: null,
      uncertainty,
      // what sets this pick apart from its neighbours in the list: its image, its share and how it falls off
      reason: `${ctx.pool[best].category} image ${shown ? `shown ${shown} time${shown > 1 ? 's' : ''} so far` : 'not shown yet'}: one more trial removes ${pct((100 * gain) / before)}% of the models' remaining predictive variance over the ${M} candidates${r > 0 && lastPct !== null ? ` (the suggestion above: ${pct(lastPct)}%)` : ' (the most of any candidate)'}, averaged over ${posts.length} regularisation value${posts.length > 1 ? 's' : ''}`,
    });
  }
  return out;
}

/** (c) Confirm drivers with too few presentations. */
export function suggestConfirm(ctx: FollowupContext, count: number): Suggestion[] {
  const { stats } = ctx;
  const setOf = new Map(ctx.pool.map((c) => [c.id, c.setId]));
  const found = new Map<number, { gap: number; neurons: string[]; mean: number; n: number }>();
  for (const c of ctx.neurons) {
    const k = preferredCategory(ctx, c);
    if (k < 0) continue;
    const prefMean = stats.catMean[k * stats.C + c];
    for (let s = 0; s < stats.stimuli.length; s++) {
      const n = stats.nStim[s];
      if (n === 0 || n >= ctx.confirmRepeats || stats.catOfStim[s] === k) continue;
      const mean = stats.mean[s * stats.C + c];
      if (mean <= prefMean) continue;
      const e = found.get(s) ?? { gap: 0, neurons: [], mean, n };
      e.gap = Math.max(e.gap, mean - prefMean);
      e.neurons.push(channelId(ctx, c));
      found.set(s, e);
    }
  }
  return [...found.entries()]
    .sort((a, b) => b[1].gap - a[1].gap)
    .slice(0, count)
    .map(([s, e], rank) => ({
      stimulusId: stats.stimuli[s].id,
      setId: setOf.get(stats.stimuli[s].id) ?? stats.start.stimulusSetId,
      rank,
      strategy: 'confirm' as const,
      neurons: e.neurons.slice(0, 3),
      predicted: e.mean,
      uncertainty: null,
      reason: `above the preferred-category mean by ${e.gap.toFixed(2)} for ${e.neurons[0]} after only ${e.n} of ${ctx.confirmRepeats} presentations`,
    }));
}

/**
 * Why a strategy had no candidate at all, one sentence (so the experimenter sees why a list holds only
 * improve suggestions, say, instead of guessing).
 */
function emptyBecause(ctx: FollowupContext, strategy: Strategy): string {
  if (strategy === 'improve') return 'improve: the candidate pool is empty';
  if (strategy === 'confirm') return `confirm: no image outside a selected neuron's preferred category responds above that category's mean with fewer than ${ctx.confirmRepeats} presentations yet (setting: compute.confirmRepeats)`;
  if (!ctx.enc.ridge) return 'probe: no encoding models yet (they need a few stimuli with trials)';
  if (!ctx.neurons.some((c) => preferredCategory(ctx, c) >= 0)) return 'probe: none of the selected neurons has a preferred category yet';
  return `probe: every image outside the selected neurons' preferred categories has already been shown ${ctx.confirmRepeats} times or more, so nothing is left to probe; register more images and include their set in the request (settings: compute.confirmRepeats, poolSetIds)`;
}

/**
 * A mix of strategies: counts in proportion to the weights, no stimulus twice; when a strategy has fewer
 * candidates than its share (no drivers to confirm yet), the others fill the rest. Ranked in order.
 * `notes`: why each strategy asked for that had no candidate at all gave nothing.
 */
export function suggestWithNotes(ctx: FollowupContext, count: number, mix: Partial<Record<Strategy, number>>): { suggestions: Suggestion[]; notes: string[] } {
  const entries = (Object.entries(mix) as [Strategy, number][]).filter(([, w]) => w > 0);
  const total = entries.reduce((a, [, w]) => a + w, 0);
  const run = { probe: suggestProbe, improve: suggestImprove, confirm: suggestConfirm };
  const lists = new Map(entries.map(([name]) => [name, run[name](ctx, count)]));
  const out: Suggestion[] = [];
  const seen = new Set<string>();
  const take = (name: Strategy, want: number) => {
    for (const s of lists.get(name) ?? []) {
      if (want <= 0 || out.length >= count) break;
      if (seen.has(s.stimulusId)) continue;
      seen.add(s.stimulusId);
      out.push(s);
      want--;
    }
  };
  let assigned = 0;
  entries.forEach(([name, w], i) => {
    const want = i === entries.length - 1 ? count - assigned : Math.round((count * w) / total);
    assigned += want;
    take(name, want);
  });
  for (const [name] of entries) take(name, count - out.length);
  const notes = entries.filter(([name]) => !lists.get(name)!.length).map(([name]) => emptyBecause(ctx, name));
  return { suggestions: out.map((s, rank) => ({ ...s, rank })), notes };
}

/** suggestWithNotes without the notes. */
export const suggest = (ctx: FollowupContext, count: number, mix: Partial<Record<Strategy, number>>): Suggestion[] => suggestWithNotes(ctx, count, mix).suggestions;
