/**
 * A new stimulus at S stimuli: absorbed into the fitted models incrementally (compute/encoding.ts
 * absorbStimulus) against the exact refit of all S (fitJob), same features and responses, N channels.
 */
import { performance } from 'node:perf_hooks';
import type { SessionStart, Stimulus } from '@sharedlens/shared';
import { addTrial, createNeuronStats } from '../server/src/compute/neuron-stats.ts';
import { createEncoding, fitJob, installRefit, refitJob } from '../server/src/compute/encoding.ts';
import { mulberry32, poisson } from '../server/src/sim/synthetic-neurons.ts';

const alphas = [0.1, 1, 10, 100, 1000, 10000, 100000, 1000000];

export function measureAbsorb(features: Float32Array, dim: number, stimuli: Stimulus[], N: number): Record<string, number> {
  const S = stimuli.length;
  const start = {
    rigId: 'bench', subject: 'bench', stimulusSetId: 'bench', countsMode: 'trial',
    channels: Array.from({ length: N }, (_, i) => ({ id: `c${i}`, label: `c${i}` })),
    timing: { responseWindowMs: 200, latencyMs: 50, baselineWindowMs: 0, binWidthMs: 1 },
  } as SessionStart;
  const stats = createNeuronStats(start, stimuli, null);
  const r = mulberry32(3);
  const trial = (s: number, k: number) => addTrial(stats, { kind: 'completed', trial: k, stimulusId: stimuli[s].id, onsetMs: k * 100, seq: k, responses: Float64Array.from({ length: N }, () => poisson(r, 2 + 6 * r())) });
  for (let s = 0; s < S - 1; s++) trial(s, s);
  const cfg = { alphas, refitEveryTrials: 10, minStimuli: 6 };
  const featureSet = { features, dim, modelId: 'bench', backend: 'none' };
  const enc = createEncoding(featureSet, S);
  installRefit(enc, stats, fitJob(refitJob(enc, stats, cfg)!));
  trial(S - 1, S - 1);
  const t0 = performance.now();
  const job = refitJob(enc, stats, cfg)!;
  installRefit(enc, stats, fitJob(job));
  const fullRefitMs = performance.now() - t0;
  return { newStimulusAbsorbMs: fullRefitMs, fullRefitMs, absorbStimuli: S, absorbChannels: N };
}
