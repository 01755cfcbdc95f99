/**
 * Absorb benchmark, the scale bench's `newStimulusAbsorbMs` alone (bench/scale-absorb.ts measureAbsorb, the
 * same code and sizes) in a minute instead of the scale bench's 25: a new stimulus absorbed into fitted
 * models (compute/ridge.ts addRow) against the exact refit of all stimuli, same data, same run, at 384
 * channels x 1,000 stimuli and 1,536 channels x 500 (keys suffixed 1536). Features: ReLU-like random
 * numbers of the feature model's width (1,792), not images: the absorb's cost depends on the sizes only.
 */
import type { Stimulus } from '@sharedlens/shared';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { measureAbsorb } from './scale-absorb.ts';

const D = 1792;
const RUNS = [{ channels: 384, stimuli: 1000, suffix: '' }, { channels: 1536, stimuli: 500, suffix: '1536' }];

const gaussian = (r: () => number) => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());

export async function run(): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = { baseline: 'the exact refit of the same data, same run (fullRefitMs)', features: `${D} ReLU-like random numbers per stimulus`, targets: { newStimulusAbsorbMs: 50, newStimulusAbsorbMs1536: 50 } };
  for (const { channels, stimuli: S, suffix } of RUNS) {
    const r = mulberry32(S + channels);
    const features = Float32Array.from({ length: S * D }, () => Math.max(0, gaussian(r)));
    const stimuli: Stimulus[] = Array.from({ length: S }, (_, i) => ({ id: `s${i}`, file: `s${i}.png`, category: ['body', 'face', 'object', 'scene'][i % 4] }));
    const m = measureAbsorb(features, D, stimuli, channels);
    console.log(`  ${channels} channels, ${S} stimuli: new stimulus absorbed in ${m.newStimulusAbsorbMs.toFixed(1)} ms (median of 5, warm; first after a fit ${m.firstAbsorbMs.toFixed(1)} ms, cold ${m.coldAbsorbMs.toFixed(1)} ms) vs exact refit ${m.fullRefitMs.toFixed(0)} ms -> ${m.absorbVsRefit.toFixed(0)}x`);
    for (const [k, v] of Object.entries(m)) out[`${k}${suffix}`] = v;
  }
  return out;
}
