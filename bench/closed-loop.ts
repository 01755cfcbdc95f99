/**
 * Closed-loop benchmark, in simulation with known ground truth: neurons respond through known readout
 * weights on the CNN features (server/src/sim/synthetic-neurons.ts), Poisson counts. A candidate pool of
 * 360 images (the 72 demo images plus 288 composites: one demo object at a random size and place on grey)
 * with features from the real MobileNetV2. Sessions are blocks of trials chosen by a strategy (the category
 * population starts with a few random stimuli: probe needs fitted models; improve chooses from the first
 * trial on, as a lab would use it), with the statistics and encoding models of the server updated after every trial
 * (the same compute functions). Model quality is the correlation of the model's predictions with the true
 * tuning over the whole pool: what the dashboard's score (leave-one-out correlation over the noise
 * ceiling) estimates, measured here without noise. Two populations, against random order in the same run,
 * over seeds:
 *  - mixed: most of each neuron's drive spread over 32 principal feature directions, half the rates (a
 *    neuron that needs many informative stimuli). Trials until the median model score reaches 0.5 (the
 *    issue's threshold; 0.6 to 0.8 reported too), strategy improve vs random: `trialsRatioVsRandom`.
 *  - category: drive dominated by the preferred category's direction, with planted out-of-category
 *    drivers. True out-of-category drivers found (the server's driver rule) within the first 600 trials,
 *    strategy probe vs random: `driversRatioVsRandom`; trials to scores 0.8 to 0.95 reported as well
 *    (0.5 is reached by both orders within the first block here).
 */
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { lastValueFrom } from 'rxjs';
import type { SessionStart, Stimulus } from '@sharedlens/shared';
import { addTrial, channelStats, createNeuronStats } from '../server/src/compute/neuron-stats.ts';
import { createEncoding, stepEncoding, type FeatureSet } from '../server/src/compute/encoding.ts';
import { findDrivers } from '../server/src/compute/drivers.ts';
import { suggest, type Strategy } from '../server/src/compute/followup.ts';
import { chosenAlphas, neuronModel, predict } from '../server/src/compute/ridge.ts';
import { pearson } from '../server/src/compute/neuron-stats.ts';
import { createFeatureNeurons, mulberry32, poisson, shuffle, type FeatureNeuronOptions } from '../server/src/sim/synthetic-neurons.ts';
import { GREY } from '../server/src/compute/image-input.ts';
import { ComputeClient } from '../server/src/workers/compute-client.ts';
import { loadConfig } from '../server/src/config.ts';
import { demoStimuli, root } from './support.ts';

const NEURONS = 24;
const SEEDS_OVERRIDE = process.env.BENCH_CLOSED_LOOP_SEEDS ? Number(process.env.BENCH_CLOSED_LOOP_SEEDS) : null;
/** The first seed (default 1): seeds FIRST_SEED .. FIRST_SEED + seeds - 1. */
const FIRST_SEED = Number(process.env.BENCH_CLOSED_LOOP_FIRST_SEED ?? 1);
const DRIVER_TRIALS = 600;
/** Replaces every population's score targets (e.g. "0.5" for a quick many-seed check of the headline). */
const TARGETS_OVERRIDE = process.env.BENCH_CLOSED_LOOP_TARGETS?.split(',').map(Number);
/** The server's default regularisation grid (config/default.json): the models' choice and the improve design's prior, as a lab runs them. */
const { alphas, drivers: driverRule } = loadConfig(root, {}).compute;

interface Population {
  name: 'mixed' | 'category';
  neurons: FeatureNeuronOptions;
  /** Random stimuli shown first, and how often each. */
  seedStimuli: number;
  seedRepeats: number;
  block: number;
  maxTrials: number;
  /** Median model scores to reach; the first is the headline. */
  targets: number[];
  drivers: boolean;
  /** Sessions per strategy (seeds): the trials-to-score figures vary a lot from seed to seed. */
  seeds: number;
  /**
   * The random baseline: 'shuffled' shows the pool in a random order, each image once before any repeat
   * (how a lab presents a set); 'uniform' draws every trial independently (repeats early, which the
   * driver rule needs: 3 presentations).
   */
  random: 'shuffled' | 'uniform';
}

const populations: Population[] = [
  { name: 'mixed', neurons: { spread: 0.7, rateScale: 0.5 }, seedStimuli: 0, seedRepeats: 1, block: 6, maxTrials: 900, targets: [0.5, 0.6, 0.7, 0.8], drivers: false, seeds: 10, random: 'shuffled' },
  { name: 'category', neurons: {}, seedStimuli: 24, seedRepeats: 2, block: 12, maxTrials: 1500, targets: [0.95, 0.8, 0.9], drivers: true, seeds: 6, random: 'uniform' },
];

async function pool(): Promise<{ stimuli: Stimulus[]; features: FeatureSet }> {
  const dir = path.join(root, 'data', 'bench-closed-loop-pool');
  fs.mkdirSync(dir, { recursive: true });
  const r = mulberry32(77);
  const stimuli: Stimulus[] = demoStimuli.map((s) => ({ ...s, file: path.join(root, 'stimuli/demo', s.file) }));
  for (let k = 0; k < 288; k++) {
    const src = demoStimuli[k % demoStimuli.length];
    const size = 70 + Math.floor(r() * 110);
    const left = Math.floor(r() * (224 - size));
    const top = Math.floor(r() * (224 - size));
    const file = path.join(dir, `c${k}.png`);
    if (!fs.existsSync(file)) {
      const obj = await sharp(path.join(root, 'stimuli/demo', src.file)).resize(size, size).png().toBuffer();
      await sharp({ create: { width: 224, height: 224, channels: 3, background: GREY } }).composite([{ input: obj, left, top }]).png().toFile(file);
    }
    stimuli.push({ id: `composite-${k}-${src.id}`, file, category: src.category });
  }
  const client = new ComputeClient({ cacheDir: path.join(root, 'data', 'features'), dataDir: path.join(root, 'data'), backend: 'auto', workers: 1 });
  const f = await lastValueFrom(client.features$(stimuli.map((s) => s.file)));
  await client.close();
  if (f.type !== 'features') throw new Error('no features');
  return { stimuli, features: { features: f.features, dim: f.dim, modelId: f.modelId, backend: f.backend } };
}

interface Outcome {
  /** Trials to reach each of the population's targets (maxTrials when not reached). */
  trialsTo: number[];
  driversFound: number;
}

function session(stimuli: Stimulus[], fs: FeatureSet, seed: number, pop: Population, strategy: Strategy | 'random'): Outcome {
  const S = stimuli.length;
  const neurons = createFeatureNeurons(NEURONS, stimuli, fs.features, fs.dim, seed, pop.neurons);
  const start: SessionStart = {
    rigId: 'sim', subject: 'sim', stimulusSetId: 'pool',
    channels: neurons.map((_, i) => ({ id: `n${i}`, label: `n${i}` })),
    timing: { responseWindowMs: 200, latencyMs: 50, baselineWindowMs: 0, binWidthMs: 1 }, countsMode: 'trial',
  };
  const stats = createNeuronStats(start, stimuli, null);
  let enc = createEncoding(fs, S);
  // the models take in new stimuli after every block, before the next suggestions
  const encodingCfg = { alphas, refitEveryTrials: pop.block, minStimuli: 6 };
  const rand = mulberry32(seed * 7919 + 1);
  const show = (s: number, trial: number) => {
    const responses = Float64Array.from(neurons, (n) => poisson(rand, ((n.trueRateHz[s] + n.baselineHz) * 200) / 1000));
    addTrial(stats, { kind: 'completed', trial, stimulusId: stimuli[s].id, onsetMs: trial * 400, seq: trial, responses });
    enc = stepEncoding(enc, stats, s, encodingCfg);
  };
  const seedSet = Array.from({ length: S }, (_, i) => i).sort(() => rand() - 0.5).slice(0, pop.seedStimuli);
  let trial = 0;
  for (let rep = 0; rep < pop.seedRepeats; rep++) for (const s of seedSet) show(s, trial++);
  const score = () => {
    if (!enc.ridge) return 0;
    const alphas = chosenAlphas(enc.ridge);
    const rs = neurons.map((n, c) => {
      const m = neuronModel(enc.ridge!, c, alphas[c]);
      const pred = Array.from({ length: S }, (_, s) => predict(m, fs.features.subarray(s * fs.dim, (s + 1) * fs.dim)));
      return pearson(pred, n.trueRateHz) ?? 0;
    });
    return rs.sort((a, b) => a - b)[Math.floor(rs.length / 2)];
  };
  const trueDrivers = neurons.map((n) => new Set(n.drivers));
  const trialsTo = pop.targets.map(() => Infinity);
  let driversFound = 0;
  const idToIndex = new Map(stimuli.map((s, i) => [s.id, i]));
  const scoresDone = () => trialsTo.every(Number.isFinite);
  let shuffled: number[] = [];
  while (trial < pop.maxTrials) {
    let next: number[];
    if (strategy === 'random') {
      next = Array.from({ length: pop.block }, () => {
        if (pop.random === 'uniform') return Math.floor(rand() * S);
        if (!shuffled.length) shuffled = shuffle(Array.from({ length: S }, (_, i) => i), rand);
        return shuffled.pop()!;
      });
    } else {
      const cs = channelStats(stats);
      const ctx = {
        stats, enc, preferred: cs.map((c) => (c.preferredCategory ? stats.categories.indexOf(c.preferredCategory) : -1)),
        pool: stimuli.map((s, i) => ({ id: s.id, setId: 'pool', category: s.category, features: fs.features.subarray(i * fs.dim, (i + 1) * fs.dim) })),
        neurons: neurons.map((_, i) => i), confirmRepeats: 4, alphas,
      };
      // probe finds candidates; its drivers then need repeats to pass the rule, which confirm provides
      const mix = strategy === 'probe' ? { probe: 1, confirm: 1 } : { [strategy]: 1 };
      next = enc.ridge || strategy === 'improve' ? suggest(ctx, pop.block, mix).map((s) => idToIndex.get(s.stimulusId)!) : [];
      while (next.length < pop.block) next.push(Math.floor(rand() * S));
    }
    for (const s of next) show(s, trial++);
    if (!scoresDone() && strategy !== 'probe') {
      const r = score();
      pop.targets.forEach((t, i) => {
        if (trialsTo[i] === Infinity && r >= t) trialsTo[i] = trial;
      });
    }
    if (pop.drivers && strategy !== 'improve' && trial >= DRIVER_TRIALS && driversFound === 0) {
      const cs = channelStats(stats);
      driversFound = neurons.reduce((acc, _, c) => {
        const k = cs[c].preferredCategory ? stats.categories.indexOf(cs[c].preferredCategory!) : -1;
        return acc + findDrivers(stats, c, k, driverRule).drivers.filter((d) => trueDrivers[c].has(d.stimulus)).length;
      }, 0);
    }
    const driversDone = !pop.drivers || strategy === 'improve' || trial >= DRIVER_TRIALS;
    if ((scoresDone() || strategy === 'probe') && driversDone) break;
  }
  return { trialsTo: trialsTo.map((x) => (Number.isFinite(x) ? x : pop.maxTrials)), driversFound };
}

export async function run(): Promise<Record<string, unknown>> {
  const { stimuli, features } = await pool();
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const out: Record<string, unknown> = {};
  const byPopulation: Record<string, unknown> = {};
  const only = process.env.BENCH_CLOSED_LOOP_POPULATIONS?.split(',');
  for (const pop of populations.filter((p) => !only || only.includes(p.name)).map((p) => (TARGETS_OVERRIDE ? { ...p, targets: TARGETS_OVERRIDE } : p))) {
    const strategies = pop.drivers ? (['random', 'improve', 'probe'] as const) : (['random', 'improve'] as const);
    const rows: Record<string, Outcome[]> = { random: [], improve: [], probe: [] };
    const seeds = SEEDS_OVERRIDE ?? pop.seeds;
    for (let seed = FIRST_SEED; seed < FIRST_SEED + seeds; seed++) {
      for (const strategy of strategies) rows[strategy].push(session(stimuli, features, seed, pop, strategy));
      const last = (k: string) => rows[k].at(-1)!;
      console.log(`  ${pop.name}, seed ${seed}: trials to median score ${pop.targets.join('/')}: random ${last('random').trialsTo.join('/')}, improve ${last('improve').trialsTo.join('/')}${pop.drivers ? `; true drivers in ${DRIVER_TRIALS} trials: random ${last('random').driversFound}, probe ${last('probe').driversFound}` : ''}`);
    }
    const byThreshold = Object.fromEntries(
      pop.targets.map((t, i) => {
        const random = mean(rows.random.map((o) => o.trialsTo[i]));
        const improve = mean(rows.improve.map((o) => o.trialsTo[i]));
        return [String(t), { random, improve, ratio: random / improve }];
      }),
    );
    for (const [t, v] of Object.entries(byThreshold).sort()) console.log(`  ${pop.name}: median score >= ${t}: random ${v.random.toFixed(0)} trials, improve ${v.improve.toFixed(0)} trials (${v.ratio.toFixed(2)}x)`);
    const entry: Record<string, unknown> = { seeds, random: pop.random, neurons: pop.neurons, seedStimuli: pop.seedStimuli, seedRepeats: pop.seedRepeats, block: pop.block, maxTrials: pop.maxTrials, byThreshold };
    if (pop.drivers) {
      const driversRandom = mean(rows.random.map((o) => o.driversFound));
      const driversProbe = mean(rows.probe.map((o) => o.driversFound));
      Object.assign(entry, { driversRandom, driversProbe });
      Object.assign(out, { driversRatioVsRandom: driversProbe / Math.max(1e-9, driversRandom), driversProbe, driversRandom });
      console.log(`  ${pop.name}: probe ${driversProbe.toFixed(1)} true drivers in ${DRIVER_TRIALS} trials vs random ${driversRandom.toFixed(1)} -> ${(driversProbe / Math.max(1e-9, driversRandom)).toFixed(2)}x (target 1.5x)`);
    } else {
      const head = byThreshold[String(pop.targets[0])];
      Object.assign(out, { trialsRatioVsRandom: head.ratio, trialsImprove: head.improve, trialsRandom: head.random, targetScore: pop.targets[0] });
      console.log(`  ${pop.name}: improve reaches a median score of ${pop.targets[0]} in ${head.improve.toFixed(0)} trials vs random ${head.random.toFixed(0)} -> ${head.ratio.toFixed(2)}x (target 1.5x)`);
    }
    byPopulation[pop.name] = entry;
  }
  return {
    ...out,
    byPopulation,
    pool: stimuli.length,
    neurons: NEURONS,
    baseline: 'random stimulus order, same simulated neurons and seeds, same run',
    targets: { trialsRatioVsRandom: 1.5, driversRatioVsRandom: 1.5 },
  };
}
