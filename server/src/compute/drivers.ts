/**
 * Out-of-category drivers and their reference images (METHOD.md steps 3 and 4).
 * A driver of a channel is a stimulus outside its preferred category whose mean response, less `z`
 * standard errors, exceeds the channel's mean response to its preferred category, with at least
 * `minRepeats` trials. Its reference image is the preferred-category stimulus x maximising the cosine
 * similarity of w (.) phi(driver) and w (.) phi(x).
 */
import type { NeuronStatsState } from './neuron-stats.ts';

export interface DriverRule {
  minRepeats: number;
  z: number;
}

export interface DriverCandidate {
  stimulus: number;
  mean: number;
  nTrials: number;
  /** Mean response to the preferred category (trial mean). */
  preferredMean: number;
}

/** Drivers of channel `c` given its preferred category index, strongest first. */
export function findDrivers(stats: NeuronStatsState, c: number, prefCategory: number, rule: DriverRule): DriverCandidate[] {
  const { C } = stats;
  if (prefCategory < 0 || stats.nCat[prefCategory] === 0) return [];
  const preferredMean = stats.catMean[prefCategory * C + c];
  const out: DriverCandidate[] = [];
  for (let s = 0; s < stats.stimuli.length; s++) {
    const n = stats.nStim[s];
    if (stats.catOfStim[s] === prefCategory || n < rule.minRepeats) continue;
    const mean = stats.mean[s * C + c];
    const se = n > 1 ? Math.sqrt(stats.m2[s * C + c] / (n - 1) / n) : Infinity;
    if (mean - rule.z * se > preferredMean) out.push({ stimulus: s, mean, nTrials: n, preferredMean });
  }
  return out.sort((a, b) => b.mean - a.mean);
}

/** Readout-weighted cosine similarity of two feature vectors: cos(w (.) a, w (.) b). */
export function weightedCosine(w: ArrayLike<number>, a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let d = 0; d < w.length; d++) {
    const x = w[d] * a[d];
    const y = w[d] * b[d];
    ab += x * y;
    aa += x * x;
    bb += y * y;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}

/** The preferred-category stimulus most similar to `driver` as the neuron weighs features. */
export function referenceImage(w: ArrayLike<number>, features: Float32Array, dim: number, driver: number, candidates: number[]): { stimulus: number; similarity: number } | null {
  const a = features.subarray(driver * dim, (driver + 1) * dim);
  let best: { stimulus: number; similarity: number } | null = null;
  for (const s of candidates) {
    const sim = weightedCosine(w, a, features.subarray(s * dim, (s + 1) * dim));
    if (!best || sim > best.similarity) best = { stimulus: s, similarity: sim };
  }
  return best;
}
