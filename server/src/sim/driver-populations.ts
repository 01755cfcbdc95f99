/**
 * Simulated populations for checking the statistics without sockets or features (test/drivers.test.ts,
 * test/scores.test.ts, bench/drivers.ts): synthetic neurons (createNeurons: category tuning, planted
 * out-of-category drivers well above the preferred-category mean) emitting Poisson spike counts in a
 * response window and an equally long baseline window, `repeats` presentations of every stimulus.
 */
import type { SessionStart, Stimulus } from '@sharedlens/shared';
import { addTrial, channelStats, createNeuronStats, pearson, type NeuronStatsState } from '../compute/neuron-stats.ts';
import { createNeurons, mulberry32, poisson, shuffle, type SyntheticNeuron } from './synthetic-neurons.ts';

export interface PopulationOptions {
  seed: number;
  channels: number;
  /** Presentations of every stimulus. */
  repeats: number;
  /** Stimuli per category (three categories: body, face, object). Default 24, as the demo set. */
  perCategory?: number;
  /** Categories reassigned at random over the stimuli after the neurons were built: no real selectivity. */
  shuffleCategories?: boolean;
  /** Response (and baseline) window in ms. Default 200. */
  windowMs?: number;
}

export interface Population {
  stimuli: Stimulus[];
  neurons: SyntheticNeuron[];
  state: NeuronStatsState;
}

/** Stimuli s0..: `perCategory` each of body, face, object. */
export function populationStimuli(perCategory: number): Stimulus[] {
  const cats = ['body', 'face', 'object'];
  return Array.from({ length: 3 * perCategory }, (_, i) => ({ id: `s${i}`, file: `s${i}.png`, category: cats[Math.floor(i / perCategory)] }));
}

const startFor = (C: number): SessionStart => ({
  rigId: 'sim',
  subject: 'sim',
  channels: Array.from({ length: C }, (_, c) => ({ id: `ch${c}`, label: `ch${c}` })),
  stimulusSetId: 'sim',
  timing: { responseWindowMs: 200, latencyMs: 0, baselineWindowMs: 200, binWidthMs: 10 },
  countsMode: 'trial',
});

/**
 * Simulates a session: every stimulus `repeats` times in shuffled blocks; a response is the window's count
 * minus the baseline window's count (as the trial assembler computes it for equal windows).
 */
export function simulatePopulation(opts: PopulationOptions): Population {
  const rand = mulberry32(opts.seed);
  const stimuli = populationStimuli(opts.perCategory ?? 24);
  const neurons = createNeurons(opts.channels, stimuli, opts.seed * 7919 + 1);
  const seen = opts.shuffleCategories ? relabel(stimuli, rand) : stimuli;
  const windowS = (opts.windowMs ?? 200) / 1000;
  const state = createNeuronStats(startFor(opts.channels), seen, null);
  let trial = 0;
  for (let r = 0; r < opts.repeats; r++) {
    for (const s of shuffle(stimuli.map((_, i) => i), rand)) {
      const responses = Float64Array.from(neurons, (n) => poisson(rand, (n.baselineHz + n.evokedHz[s]) * windowS) - poisson(rand, n.baselineHz * windowS));
      addTrial(state, { kind: 'completed', trial, stimulusId: stimuli[s].id, onsetMs: trial * 400, seq: trial, responses });
      trial++;
    }
  }
  return { stimuli: seen, neurons, state };
}

/** The same stimuli with their categories permuted at random. */
function relabel(stimuli: Stimulus[], rand: () => number): Stimulus[] {
  const cats = shuffle(stimuli.map((s) => s.category), rand);
  return stimuli.map((s, i) => ({ ...s, category: cats[i] }));
}

/**
 * Neurons whose model is the truth: per channel the correlation r of the true rates (the perfect model's
 * prediction) with the measured mean responses, and the noise ceiling R of those means. The perfect model's
 * expected r is sqrt(R).
 */
export function trueModelScores(opts: PopulationOptions): { r: number | null; ceiling: number | null }[] {
  const pop = simulatePopulation(opts);
  const { C } = pop.state;
  return channelStats(pop.state).map((ch, c) => {
    const measured = Float64Array.from(pop.stimuli, (_, s) => pop.state.mean[s * C + c]);
    return { r: pearson(Float64Array.from(pop.neurons[c].evokedHz), measured), ceiling: ch.noiseCeiling };
  });
}
