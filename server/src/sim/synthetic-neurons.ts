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

/** Ground truth of a feature-driven neuron: its readout weights on the CNN features. */
export interface FeatureNeuron extends SyntheticNeuron {
  /** Readout weights (length D) that generate its responses. */
  weights: Float32Array;
  /** Noise-free evoked rate per stimulus, Hz. */
  trueRateHz: Float64Array;
}

/**
 * Neurons that respond through known readout weights on CNN features (the ground truth for the encoding
 * models, drivers and maps): w = category direction (mean features of the preferred category minus the
 * mean of all) + a sparse random part + for planted drivers the direction of one out-of-category
 * stimulus. The evoked rate is a softplus of the standardised drive, scaled to a peak rate.
 */
export function createFeatureNeurons(n: number, stimuli: Stimulus[], features: Float32Array, dim: number, seed: number, bodyCategory = 'body'): FeatureNeuron[] {
  const rand = mulberry32(seed);
  const S = stimuli.length;
  const cats = [...new Set(stimuli.map((s) => s.category))].sort();
  const others = cats.filter((c) => c !== bodyCategory);
  const mean = new Float64Array(dim);
  for (let s = 0; s < S; s++) for (let d = 0; d < dim; d++) mean[d] += features[s * dim + d] / S;
  const catMean = (cat: string) => {
    const idx = stimuli.map((s, i) => (s.category === cat ? i : -1)).filter((i) => i >= 0);
    const m = new Float64Array(dim);
    for (const s of idx) for (let d = 0; d < dim; d++) m[d] += features[s * dim + d] / idx.length;
    return m;
  };
  const dirs = new Map(cats.map((c) => [c, catMean(c).map((v, d) => v - mean[d])]));
  return Array.from({ length: n }, () => {
    const pref = cats.includes(bodyCategory) && rand() < 0.6 ? bodyCategory : others[Math.floor(rand() * others.length)] ?? cats[0];
    const w = new Float32Array(dim);
    const dir = dirs.get(pref)!;
    for (let d = 0; d < dim; d++) w[d] = dir[d];
    for (let k = 0; k < 40; k++) w[Math.floor(rand() * dim)] += (rand() - 0.5) * 0.5;
    const outside = stimuli.map((s, i) => (s.category !== pref ? i : -1)).filter((i) => i >= 0);
    const planted = rand() < 0.7 ? [outside[Math.floor(rand() * outside.length)]] : [];
    for (const o of planted) for (let d = 0; d < dim; d++) w[d] += 1.2 * (features[o * dim + d] - mean[d]);
    const drive = Float64Array.from({ length: S }, (_, s) => {
      let x = 0;
      for (let d = 0; d < dim; d++) x += w[d] * features[s * dim + d];
      return x;
    });
    const mu = drive.reduce((a, b) => a + b, 0) / S;
    const sd = Math.sqrt(drive.reduce((a, b) => a + (b - mu) ** 2, 0) / S) || 1;
    const peak = 30 + 40 * rand();
    const soft = Float64Array.from(drive, (x) => Math.log1p(Math.exp(1.5 * ((x - mu) / sd) - 0.5)));
    const top = Math.max(...soft);
    const trueRateHz = Float64Array.from(soft, (x) => (peak * x) / top);
    // ground truth from the rates themselves: the category with the highest mean rate, and the stimuli outside it above that mean
    const catRate = (cat: string) => stimuli.reduce((a, s, i) => (s.category === cat ? a + trueRateHz[i] : a), 0) / stimuli.filter((s) => s.category === cat).length;
    const truePref = cats.reduce((best, c) => (catRate(c) > catRate(best) ? c : best), cats[0]);
    const prefMean = catRate(truePref);
    const drivers = stimuli.map((s, i) => (s.category !== truePref && trueRateHz[i] > prefMean ? i : -1)).filter((i) => i >= 0);
    return { preferredCategory: truePref, baselineHz: 5 + 10 * rand(), evokedHz: trueRateHz, drivers, weights: w, trueRateHz };
  });
}
