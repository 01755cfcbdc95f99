/**
 * A new stimulus at S stimuli: absorbed into the fitted models incrementally (compute/encoding.ts
 * absorbStimulus, median of 5) against the exact refit of all S (fitJob), same features and responses,
 * N channels, same run. Timed in the steady state: the models fitted on S - 2 stimuli absorb stimulus
 * S - 2 (untimed), then S - 1 is timed, its sweep over the operators also writing the previous absorb's
 * pending rank-one term (ridge.ts addRow); the first absorb after an exact fit, which has none to write,
 * is reported beside it (firstAbsorbMs). Timed warm: the models' thread in a session has absorbed stimuli
 * before (every new stimulus of the first pass over the set), so WARM untimed rounds on copies go first
 * (in this bench's main thread the first rounds ran 1.5-2.5x slower while V8 compiled addRow's loops); the
 * first, cold round's time is reported beside it (coldAbsorbMs).
 */
import { performance } from 'node:perf_hooks';
import type { SessionStart, Stimulus } from '@sharedlens/shared';
import { addTrial, createNeuronStats } from '../server/src/compute/neuron-stats.ts';
import { absorbStimulus, createEncoding, fitJob, installRefit, refitJob } from '../server/src/compute/encoding.ts';
import type { RidgeState } from '../server/src/compute/ridge.ts';
import { mulberry32, poisson } from '../server/src/sim/synthetic-neurons.ts';

const alphas = [0.1, 1, 10, 100, 1000, 10000, 100000, 1000000];
/** Untimed rounds before the 5 timed ones. */
const WARM = 3;

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
  for (let s = 0; s < S - 2; s++) trial(s, s);
  const cfg = { alphas, refitEveryTrials: 10, minStimuli: 6 };
  const featureSet = { features, dim, modelId: 'bench', backend: 'none' };
  const enc = createEncoding(featureSet, S);
  installRefit(enc, stats, fitJob(refitJob(enc, stats, cfg)!));
  trial(S - 2, S - 2);
  trial(S - 1, S - 1);
  // the new stimulus absorbed (what the server does at its first trial), median of a few repeats on copies
  const times: number[] = [];
  const first: number[] = [];
  let coldAbsorbMs = NaN;
  for (let k = -WARM; k < 5; k++) {
    const copy = createEncoding(featureSet, S);
    copy.ridge = cloneState(enc.ridge!);
    copy.ridge.basis.rows.forEach((s, i) => (copy.rowOf[s] = i));
    const t0 = performance.now();
    absorbStimulus(copy, stats, S - 2);
    const t1 = performance.now();
    absorbStimulus(copy, stats, S - 1);
    if (k === -WARM) coldAbsorbMs = performance.now() - t1;
    if (k < 0) continue;
    times.push(performance.now() - t1);
    first.push(t1 - t0);
  }
  times.sort((a, b) => a - b);
  first.sort((a, b) => a - b);
  const t1 = performance.now();
  const job = refitJob(enc, stats, cfg)!;
  installRefit(enc, stats, fitJob(job));
  const fullRefitMs = performance.now() - t1;
  return { newStimulusAbsorbMs: times[2], firstAbsorbMs: first[2], coldAbsorbMs, fullRefitMs, absorbVsRefit: fullRefitMs / times[2], absorbStimuli: S, absorbChannels: N };
}

/** A deep copy of a fitted state (the absorb is timed on copies of the same models). */
function cloneState(s: RidgeState): RidgeState {
  return structuredClone(s);
}
