/**
 * Follow-up stimuli while the animal is in the rig (closed loop), as plain functions over the encoding
 * models. Strategies, mixable:
 *  - probe:   candidates outside a neuron's preferred category with the highest predicted response
 *             (relative to its preferred-category mean), across the selected neurons;
 *  - improve: candidates that most reduce model uncertainty: the Bayesian-ridge posterior predictive
 *             variance in the dual form, s(c) = k(c,c) - k_c^T (K + a I)^-1 k_c, picked greedily with the
 *             exact update after each pick, s'(c) = s(c) - s(c,p)^2 / (s(p) + a);
 *  - confirm: repeats of drivers (above the preferred mean) that have too few presentations.
 * Every suggestion carries its reason.
 */
import type { Suggestion } from '@sharedlens/shared';
import type { EncodingState } from './encoding.ts';
import type { NeuronStatsState } from './neuron-stats.ts';
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
}

const channelId = (ctx: FollowupContext, c: number) => ctx.stats.start.channels[c].id;

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
    const k = ctx.preferred[c];
    if (k < 0 || stats.nCat[k] === 0) continue;
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

/** (b) Improve the models: greedy maximal posterior predictive variance (pooled regularisation). */
export function suggestImprove(ctx: FollowupContext, count: number): Suggestion[] {
  const ridge = ctx.enc.ridge;
  if (!ridge) return [];
  const { n, D, xc, xMean, h, alphas } = ridge.basis;
  const chosen = chosenAlphas(ridge);
  const sortedIdx = ctx.neurons.map((c) => chosen[c]).sort((a, b) => a - b);
  const a = sortedIdx[Math.floor(sortedIdx.length / 2)] ?? 0;
  const alpha = alphas[a];
  const H = h[a];
  const M = ctx.pool.length;
  // centred candidate features, their kernel with the training stimuli, and H k_c
  const cc = ctx.pool.map((cand) => Float64Array.from({ length: D }, (_, d) => cand.features[d] - xMean[d]));
  const kc = cc.map((x) => Float64Array.from({ length: n }, (_, i) => {
    let s = 1;
    for (let d = 0; d < D; d++) s += x[d] * xc[i * D + d];
    return s;
  }));
  const hk = kc.map((k) => Float64Array.from({ length: n }, (_, i) => {
    let s = 0;
    for (let j = 0; j < n; j++) s += H[i * n + j] * k[j];
    return s;
  }));
  const kern = (p: number, q: number) => {
    let s = 1;
    for (let d = 0; d < D; d++) s += cc[p][d] * cc[q][d];
    let t = 0;
    for (let i = 0; i < n; i++) t += kc[p][i] * hk[q][i];
    return s - t;
  };
  const s = Float64Array.from({ length: M }, (_, p) => kern(p, p));
  const picked: number[] = [];
  const covWithPicked: Float64Array[] = [];
  const out: Suggestion[] = [];
  for (let r = 0; r < Math.min(count, M); r++) {
    let best = -1;
    for (let p = 0; p < M; p++) if (!picked.includes(p) && (best < 0 || s[p] > s[best])) best = p;
    if (best < 0) break;
    const variance = s[best] / alpha;
    // conditional covariances of every candidate with the pick (given earlier picks), then the update
    const cov = Float64Array.from({ length: M }, (_, q) => {
      let v = kern(q, best);
      picked.forEach((p, j) => (v -= (covWithPicked[j][q] * covWithPicked[j][best]) / (covWithPicked[j][p] + alpha)));
      return v;
    });
    const denom = s[best] + alpha;
    for (let q = 0; q < M; q++) s[q] -= (cov[q] * cov[q]) / denom;
    picked.push(best);
    covWithPicked.push(cov);
    out.push({
      stimulusId: ctx.pool[best].id,
      setId: ctx.pool[best].setId,
      rank: r,
      strategy: 'improve',
      neurons: ctx.neurons.slice(0, 3).map((c) => channelId(ctx, c)),
      predicted: null,
      uncertainty: variance,
      reason: `largest remaining posterior variance of the model prediction (${variance.toExponential(2)} in units of the noise variance, regularisation ${alpha}) given the stimuli seen and the suggestions above`,
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
    const k = ctx.preferred[c];
    if (k < 0 || stats.nCat[k] === 0) continue;
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
 * A mix of strategies: counts in proportion to the weights, no stimulus twice; when a strategy has fewer
 * candidates than its share (no drivers to confirm yet), the others fill the rest. Ranked in order.
 */
export function suggest(ctx: FollowupContext, count: number, mix: Partial<Record<Strategy, number>>): Suggestion[] {
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
  return out.map((s, rank) => ({ ...s, rank }));
}
