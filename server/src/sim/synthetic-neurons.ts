/**
 * Synthetic neurons for the simulated rig: each channel has a preferred category, a baseline rate, a
 * rate per stimulus (category tuning times a stimulus-specific factor, a few planted out-of-category
 * drivers above the preferred-category mean) and emits Poisson spike counts.
 */
import type { Stimulus } from '@sharedlens/shared';

/** Seeded uniform [0, 1) generator (mulberry32; a few lines, so written here rather than a dependency). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Poisson sample by Knuth's product method; fine for the small means of 1 ms bins. */
export function poisson(rand: () => number, mean: number): number {
  if (mean <= 0) return 0;
  if (mean > 30) return Math.max(0, Math.round(mean + Math.sqrt(mean) * gaussian(rand)));
  const l = Math.exp(-mean);
  let k = 0;
  let p = rand();
  while (p > l) {
    k++;
    p *= rand();
  }
  return k;
}

function gaussian(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
}

export interface SyntheticNeuron {
  preferredCategory: string;
  baselineHz: number;
  /** Evoked rate above baseline per stimulus (same order as the stimulus list). */
  evokedHz: Float64Array;
  /** Indices of planted out-of-category drivers. */
  drivers: number[];
}

/** Builds `n` neurons; about 60% prefer `bodyCategory` when present (a body patch), the rest others. */
export function createNeurons(n: number, stimuli: Stimulus[], seed: number, bodyCategory = 'body'): SyntheticNeuron[] {
  const rand = mulberry32(seed);
  const cats = [...new Set(stimuli.map((s) => s.category))].sort();
  const others = cats.filter((c) => c !== bodyCategory);
  return Array.from({ length: n }, () => {
    const pref = cats.includes(bodyCategory) && rand() < 0.6 ? bodyCategory : others[Math.floor(rand() * others.length)] ?? cats[0];
    const peak = 30 + 50 * rand();
    const evokedHz = Float64Array.from(stimuli, (s) => peak * (s.category === pref ? 0.6 + 0.8 * rand() : 0.05 + 0.3 * rand()));
    const outside = stimuli.map((s, i) => (s.category !== pref ? i : -1)).filter((i) => i >= 0);
    const drivers: number[] = [];
    const nDrivers = rand() < 0.5 ? 1 : 2;
    for (let d = 0; d < nDrivers && outside.length; d++) {
      const i = outside.splice(Math.floor(rand() * outside.length), 1)[0];
      evokedHz[i] = peak * (1.3 + 0.3 * rand());
      drivers.push(i);
    }
    return { preferredCategory: pref, baselineHz: 5 + 15 * rand(), evokedHz, drivers };
  });
}
