/**
 * `npm run bench -- drivers`: the statistics of issue 14 on simulated populations (pure compute, no sockets).
 * - precision / recall: planted out-of-category drivers (createNeurons: 1.3-1.6x the peak rate outside the
 *   preferred category), 48 channels, 12 repeats, 10 seeds; recall also at 6 and 24 repeats.
 * - falseChannelRate: the same neurons with categories shuffled over the stimuli (no selectivity): the
 *   fraction of channels with any driver (target <= q = 0.05); Welch and permutation gates.
 * - meanNormalisedRTrueModel: neurons whose model is the truth (r of the true rates with the measured means),
 *   r / sqrt(ceiling) averaged over channels, 10 seeds, at 4, 8 and 16 repeats (target within 0.05 of 1).
 * Baseline, measured in the same run: the rule this replaced (mean - 1 SE above the preferred-category mean,
 * every candidate, no selectivity gate, no correction) and the old score r / ceiling.
 */
import { loadConfig } from '../server/src/config.ts';
import { channelStats, normalisedScores, type NeuronStatsState } from '../server/src/compute/neuron-stats.ts';
import { findDrivers, type DriverRule } from '../server/src/compute/drivers.ts';
import { simulatePopulation, trueModelScores } from '../server/src/sim/driver-populations.ts';
import { root } from './support.ts';

const SEEDS = Array.from({ length: Number(process.env.BENCH_DRIVERS_SEEDS ?? 10) }, (_, i) => i + 1);
const CHANNELS = 48;
const REPEATS = 12;

/** The replaced rule: out-of-category stimuli with >= 3 trials whose mean less one SE exceeds the preferred mean. */
function oldRule(state: NeuronStatsState, c: number, k: number): number[] {
  const { C } = state;
  const prefMean = state.catMean[k * C + c];
  const out: number[] = [];
  for (let s = 0; s < state.stimuli.length; s++) {
    const n = state.nStim[s];
    if (state.catOfStim[s] === k || n < 3) continue;
    const se = Math.sqrt(state.m2[s * C + c] / (n - 1) / n);
    if (state.mean[s * C + c] - se > prefMean) out.push(s);
  }
  return out;
}

function drivers(rule: DriverRule, repeats: number, shuffleCategories: boolean) {
  const acc = { found: 0, correct: 0, truth: 0, anyChannels: 0, channels: 0, oldFound: 0, oldCorrect: 0, oldAny: 0 };
  for (const seed of SEEDS) {
    const pop = simulatePopulation({ seed, channels: CHANNELS, repeats, shuffleCategories });
    channelStats(pop.state).forEach((ch, c) => {
      const k = pop.state.categories.indexOf(ch.preferredCategory!);
      const truth = new Set(pop.neurons[c].drivers);
      const ours = findDrivers(pop.state, c, k, rule).drivers.map((d) => d.stimulus);
      const old = oldRule(pop.state, c, k);
      acc.channels++;
      acc.truth += truth.size;
      acc.found += ours.length;
      acc.correct += ours.filter((s) => truth.has(s)).length;
      acc.anyChannels += ours.length ? 1 : 0;
      acc.oldFound += old.length;
      acc.oldCorrect += old.filter((s) => truth.has(s)).length;
      acc.oldAny += old.length ? 1 : 0;
    });
  }
  return acc;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const se = (xs: number[]) => Math.sqrt(xs.reduce((a, b) => a + (b - mean(xs)) ** 2, 0) / (xs.length - 1) / xs.length);
const r3 = (x: number) => Math.round(x * 1000) / 1000;

export async function run(): Promise<Record<string, unknown>> {
  const cfg = loadConfig(root, {}).compute;
  const rule = cfg.drivers;
  const t0 = performance.now();
  const planted = drivers(rule, REPEATS, false);
  const shuffled = drivers(rule, REPEATS, true);
  const shuffledPermutation = drivers({ ...rule, selectivityTest: 'permutation' }, REPEATS, true);
  const recallByRepeats: Record<string, number> = {};
  for (const repeats of [6, 12, 24]) {
    const p = repeats === REPEATS ? planted : drivers(rule, repeats, false);
    recallByRepeats[repeats] = r3(p.correct / p.truth);
  }
  const trueModel: Record<string, { normalisedR: number; se: number; oldRatio: number; channels: number }> = {};
  for (const repeats of [4, 8, 16]) {
    const norm: number[] = [];
    const old: number[] = [];
    for (const seed of SEEDS) {
      for (const { r, ceiling } of trueModelScores({ seed, channels: CHANNELS, repeats })) {
        const s = normalisedScores(r, ceiling, cfg.minReliability);
        if (s.normalisedR === null) continue;
        norm.push(s.normalisedR);
        old.push(r! / ceiling!);
      }
    }
    trueModel[repeats] = { normalisedR: r3(mean(norm)), se: Math.round(se(norm) * 1e5) / 1e5, oldRatio: r3(mean(old)), channels: norm.length };
  }
  const result = {
    seeds: SEEDS.length,
    channels: CHANNELS,
    repeats: REPEATS,
    rule,
    precision: r3(planted.correct / planted.found),
    recall: r3(planted.correct / planted.truth),
    recallByRepeats,
    driversFound: planted.found,
    plantedDrivers: planted.truth,
    falseChannelRate: r3(shuffled.anyChannels / shuffled.channels),
    falseChannelRatePermutation: r3(shuffledPermutation.anyChannels / shuffledPermutation.channels),
    meanNormalisedRTrueModel: trueModel[8].normalisedR,
    trueModel,
    baseline: {
      name: 'old rule: mean - 1 SE > preferred mean, uncorrected, no gate; old score r / ceiling',
      precision: r3(planted.oldCorrect / planted.oldFound),
      recall: r3(planted.oldCorrect / planted.truth),
      driversFound: planted.oldFound,
      falseChannelRate: r3(shuffled.oldAny / shuffled.channels),
      driversPerChannelShuffled: r3(shuffled.oldFound / shuffled.channels),
      meanRatioTrueModel: trueModel[8].oldRatio,
    },
    seconds: r3((performance.now() - t0) / 1000),
  };
  console.log(`  planted drivers (${SEEDS.length} seeds x ${CHANNELS} channels, ${REPEATS} repeats): precision ${result.precision} (baseline ${result.baseline.precision}), recall ${result.recall} (baseline ${result.baseline.recall}); recall at 6/12/24 repeats ${Object.values(recallByRepeats).join('/')}`);
  console.log(`  shuffled categories: channels with any driver ${result.falseChannelRate} (permutation gate ${result.falseChannelRatePermutation}; target <= ${rule.q}) vs baseline ${result.baseline.falseChannelRate} (${result.baseline.driversPerChannelShuffled} drivers per channel)`);
  for (const [k, v] of Object.entries(trueModel)) console.log(`  true-model neurons, ${k} repeats: mean normalised r ${v.normalisedR} +- ${v.se} (${v.channels} channels) vs baseline r / ceiling ${v.oldRatio} (${r3(v.oldRatio / v.normalisedR)}x)`);
  return result;
}
