/**
 * Synthetic neurons for the simulated rig: each channel has a preferred category, a baseline rate, a
 * rate per stimulus (category tuning times a stimulus-specific factor, a few planted out-of-category
 * drivers above the preferred-category mean) and emits Poisson spike counts.
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
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

/** Fisher-Yates shuffle in place. */
export function shuffle<T>(xs: T[], rand: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

/** Poisson sample by Knuth's product method; fine for the small means of 1 ms bins. */
export function poisson(rand: () => number, mean: number): number {
  if (mean <= 0) return 0;
  if (mean > 30) return Math.max(0, Math.round(mean + Math.sqrt(mean) * gaussian(rand)));
  return poissonKnuth(rand, Math.exp(-mean));
}

/** Knuth's product method given l = exp(-mean), for callers that look the exponential up instead of computing it. */
export function poissonKnuth(rand: () => number, l: number): number {
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

export interface FeatureNeuronOptions {
  /** The category most neurons prefer (default 'body': a body patch). */
  bodyCategory?: string;
  /**
   * 0 (default): the readout is dominated by the preferred category's direction, so few stimuli pin it
   * down. Towards 1: that much of the drive's variance is spread evenly over the top 32 principal
   * directions of the stimulus features instead, with random signs: a neuron with mixed tuning whose model
   * needs many informative stimuli.
   */
  spread?: number;
  /** Multiplies the peak and baseline rates (lower: fewer spikes, noisier means). Default 1. */
  rateScale?: number;
}

/**
 * Neurons that respond through known readout weights on CNN features (the ground truth for the encoding
 * models, drivers and maps): w = category direction (mean features of the preferred category minus the
 * mean of all) + a sparse random part + for planted drivers the direction of one out-of-category
 * stimulus (+ a mixed-tuning part, `spread`). The evoked rate is a softplus of the standardised drive,
 * scaled to a peak rate.
 */
export function createFeatureNeurons(n: number, stimuli: Stimulus[], features: Float32Array, dim: number, seed: number, opts: FeatureNeuronOptions = {}): FeatureNeuron[] {
  const bodyCategory = opts.bodyCategory ?? 'body';
  const spread = opts.spread ?? 0;
  const rateScale = opts.rateScale ?? 1;
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
  const pcs = spread > 0 ? principalReadouts(features, dim, S, mean, 32) : [];
  /** The drive w . x of every stimulus, and its mean and standard deviation over the stimuli. */
  const driveOf = (w: ArrayLike<number>) => {
    const drive = Float64Array.from({ length: S }, (_, s) => {
      let x = 0;
      for (let d = 0; d < dim; d++) x += w[d] * features[s * dim + d];
      return x;
    });
    const mu = drive.reduce((a, b) => a + b, 0) / S;
    const sd = Math.sqrt(drive.reduce((a, b) => a + (b - mu) ** 2, 0) / S) || 1;
    return { drive, mu, sd };
  };
  return Array.from({ length: n }, () => {
    const pref = cats.includes(bodyCategory) && rand() < 0.6 ? bodyCategory : others[Math.floor(rand() * others.length)] ?? cats[0];
    let w = new Float32Array(dim);
    const dir = dirs.get(pref)!;
    for (let d = 0; d < dim; d++) w[d] = dir[d];
    for (let k = 0; k < 40; k++) w[Math.floor(rand() * dim)] += (rand() - 0.5) * 0.5;
    const outside = stimuli.map((s, i) => (s.category !== pref ? i : -1)).filter((i) => i >= 0);
    const planted = rand() < 0.7 ? [outside[Math.floor(rand() * outside.length)]] : [];
    for (const o of planted) for (let d = 0; d < dim; d++) w[d] += 1.2 * (features[o * dim + d] - mean[d]);
    if (spread > 0) {
      // both parts' drives standardised, mixed so that `spread` of the variance is the mixed part
      const mixed = new Float64Array(dim);
      for (const pc of pcs) {
        const g = rand() < 0.5 ? -1 : 1;
        for (let d = 0; d < dim; d++) mixed[d] += g * pc[d];
      }
      const a = Math.sqrt(1 - spread) / driveOf(w).sd;
      const b = Math.sqrt(spread) / driveOf(mixed).sd;
      w = Float32Array.from(w, (v, d) => a * v + b * mixed[d]);
    }
    const { drive, mu, sd } = driveOf(w);
    const peak = rateScale * (30 + 40 * rand());
    const soft = Float64Array.from(drive, (x) => Math.log1p(Math.exp(1.5 * ((x - mu) / sd) - 0.5)));
    const top = Math.max(...soft);
    const trueRateHz = Float64Array.from(soft, (x) => (peak * x) / top);
    // ground truth from the rates themselves: the category with the highest mean rate, and the stimuli outside it above that mean
    const catRate = (cat: string) => stimuli.reduce((a, s, i) => (s.category === cat ? a + trueRateHz[i] : a), 0) / stimuli.filter((s) => s.category === cat).length;
    const truePref = cats.reduce((best, c) => (catRate(c) > catRate(best) ? c : best), cats[0]);
    const prefMean = catRate(truePref);
    const drivers = stimuli.map((s, i) => (s.category !== truePref && trueRateHz[i] > prefMean ? i : -1)).filter((i) => i >= 0);
    return { preferredCategory: truePref, baselineHz: rateScale * (5 + 10 * rand()), evokedHz: trueRateHz, drivers, weights: w, trueRateHz };
  });
}

/**
 * Readout vectors along the top `k` principal directions of the stimulus features, each scaled so that
 * its drive over the stimuli is the unit-norm principal component (equal variance per direction):
 * X_c^T u_j / lambda_j.
 */
function principalReadouts(features: Float32Array, dim: number, S: number, mean: Float64Array, k: number): Float64Array[] {
  const gram = new Matrix(S, S);
  for (let i = 0; i < S; i++) {
    for (let j = 0; j <= i; j++) {
      let v = 0;
      for (let d = 0; d < dim; d++) v += (features[i * dim + d] - mean[d]) * (features[j * dim + d] - mean[d]);
      gram.set(i, j, v);
      gram.set(j, i, v);
    }
  }
  const eig = new EigenvalueDecomposition(gram, { assumeSymmetric: true });
  const lambda = eig.realEigenvalues;
  const order = Array.from(lambda.keys()).sort((a, b) => lambda[b] - lambda[a]).slice(0, Math.min(k, S - 1));
  return order.map((j) => {
    const w = new Float64Array(dim);
    for (let s = 0; s < S; s++) {
      const u = eig.eigenvectorMatrix.get(s, j) / lambda[j];
      for (let d = 0; d < dim; d++) w[d] += u * (features[s * dim + d] - mean[d]);
    }
    return w;
  });
}
