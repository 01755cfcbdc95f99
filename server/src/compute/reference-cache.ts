/**
 * Reference images cached per (channel, driver): the preferred-category stimulus x maximising the
 * readout-weighted cosine cos(w (.) phi(driver), w (.) phi(x)) (compute/drivers.ts referenceImage). An
 * entry is reused while the channel's readout has not changed materially (cosine of the weights it was
 * computed with and the current ones at least `minWeightCosine`, the rule of the map jobs) and its
 * candidates are the same; when candidates were only added (new stimuli in the model), just those are
 * compared. A recomputation compares all of a channel's new drivers with all its candidates at once
 * (drivers x candidates products of weighted features). `recomputed` counts (channel, driver) pairs
 * computed from scratch; `extended` pairs updated with new candidates only.
 */
export interface ReferenceResult {
  stimulus: number;
  similarity: number;
}

interface Entry {
  ref: ReferenceResult | null;
  weights: Float64Array;
  candidates: number[];
}

export interface ReferenceCache {
  entries: Map<string, Entry>;
  minWeightCosine: number;
  recomputed: number;
  extended: number;
}

export function createReferenceCache(minWeightCosine: number): ReferenceCache {
  return { entries: new Map(), minWeightCosine, recomputed: 0, extended: 0 };
}

/** Cosine similarity of two vectors (0 when either is all zeros): the rule for a material readout change. */
export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}

/**
 * Best candidate for each driver: w2 = w (.) w; sim(a, b) = sum w2 a b / sqrt(sum w2 a^2 * sum w2 b^2).
 * One pass over the candidates' features serves every driver. O(candidates x D x drivers).
 */
export function bestReferences(w: ArrayLike<number>, features: Float32Array, dim: number, drivers: number[], candidates: number[]): (ReferenceResult | null)[] {
  const w2 = new Float64Array(dim);
  for (let d = 0; d < dim; d++) w2[d] = w[d] * w[d];
  // drivers' features weighted by w2, and their weighted norms
  const a = drivers.map((s) => {
    const v = new Float64Array(dim);
    let nn = 0;
    for (let d = 0; d < dim; d++) {
      const x = features[s * dim + d];
      v[d] = w2[d] * x;
      nn += v[d] * x;
    }
    return { v, norm: Math.sqrt(nn) };
  });
  const best: (ReferenceResult | null)[] = drivers.map(() => null);
  const dots = new Float64Array(drivers.length);
  for (const s of candidates) {
    const o = s * dim;
    let nn = 0;
    dots.fill(0);
    for (let d = 0; d < dim; d++) {
      const x = features[o + d];
      nn += w2[d] * x * x;
      for (let k = 0; k < a.length; k++) dots[k] += a[k].v[d] * x;
    }
    const nb = Math.sqrt(nn);
    for (let k = 0; k < a.length; k++) {
      const sim = a[k].norm > 0 && nb > 0 ? dots[k] / (a[k].norm * nb) : 0;
      const b = best[k];
      if (!b || sim > b.similarity) best[k] = { stimulus: s, similarity: sim };
    }
  }
  return best;
}

/**
 * Reference images of channel `c`'s drivers for readout `w` among `candidates` (stimulus indices in
 * order), from the cache where still valid. Returns one result per driver, in order.
 */
export function referenceImages(cache: ReferenceCache, c: number, w: ArrayLike<number>, features: Float32Array, dim: number, drivers: number[], candidates: number[]): (ReferenceResult | null)[] {
  const out: (ReferenceResult | null)[] = new Array(drivers.length).fill(null);
  const fresh: number[] = [];
  const weights = Float64Array.from(w);
  const now = new Set(candidates);
  drivers.forEach((s, k) => {
    const key = `${c}|${s}`;
    const e = cache.entries.get(key);
    if (!e || cosine(e.weights, weights) < cache.minWeightCosine) return void fresh.push(k);
    // candidates only added (sorted stimulus indices): the best of the old ones stays valid
    const old = new Set(e.candidates);
    if (e.candidates.length > candidates.length || e.candidates.some((x) => !now.has(x))) return void fresh.push(k);
    const added = candidates.filter((x) => !old.has(x));
    if (added.length) {
      const [b] = bestReferences(e.weights, features, dim, [s], added);
      if (b && (!e.ref || b.similarity > e.ref.similarity)) e.ref = b;
      e.candidates = candidates.slice();
      cache.extended++;
    }
    out[k] = e.ref;
  });
  if (fresh.length) {
    const refs = bestReferences(weights, features, dim, fresh.map((k) => drivers[k]), candidates);
    fresh.forEach((k, i) => {
      cache.entries.set(`${c}|${drivers[k]}`, { ref: refs[i], weights, candidates: candidates.slice() });
      out[k] = refs[i];
      cache.recomputed++;
    });
  }
  return out;
}
