/**
 * The display bytes of a map pair (compute/shared-feature-maps.ts normalizePair, then 0-255) without
 * sorting the pair on the event loop: each side's thread sends its largest values (`topValues`), enough to
 * find the pair's 99.5th percentile, and `pairBytes` scales both maps with it in one pass. The same bytes
 * as toBytes(normalizePair(a, b)); a CPU profile of the scale bench found normalizePair's sort of 100,000
 * floats and a Uint8Array.from with a callback taking 15-35 ms per pair on the event loop.
 */

/** How many of the largest values of one side decide the percentile of a pair of two maps of `length` values each. */
export function topCount(length: number): number {
  const total = 2 * length;
  return total - Math.min(total - 1, Math.floor(0.995 * total));
}

/** The `topCount(map.length)` largest values of a map in ascending order (the typed-array sort's order), in its own thread. */
export function topValues(map: Float32Array): Float32Array {
  const sorted = Float32Array.from(map).sort();
  return sorted.slice(sorted.length - Math.min(sorted.length, topCount(map.length)));
}

/**
 * Both maps of a pair (equal lengths) on one scale, as bytes: value / (the pair's 99.5th percentile, or its
 * maximum when that is 0), clipped to [0, 1], times 255, rounded. `topA` and `topB`: each map's topValues.
 */
export function pairBytes(a: Float32Array, b: Float32Array, topA: Float32Array, topB: Float32Array): [Uint8Array, Uint8Array] {
  const total = a.length + b.length;
  const idx = Math.min(total - 1, Math.floor(0.995 * total));
  // the union of the two tails holds the pair's largest total - idx values, in the same order as a full sort
  const tail = new Float32Array(topA.length + topB.length);
  tail.set(topA);
  tail.set(topB, topA.length);
  tail.sort();
  const top = tail[tail.length - (total - idx)] || tail[tail.length - 1];
  const scale = top > 0 ? 1 / top : 0;
  const bytes = (m: Float32Array) => {
    const out = new Uint8Array(m.length);
    for (let i = 0; i < m.length; i++) {
      const v = Math.fround(Math.min(1, m[i] * scale)); // as the Float32Array normalizePair writes
      out[i] = Math.round(255 * Math.min(1, Math.max(0, v)));
    }
    return out;
  };
  return [bytes(a), bytes(b)];
}
