import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizePair } from '../server/src/compute/shared-feature-maps.ts';
import { pairBytes, topCount, topValues } from '../server/src/workers/pair-bytes.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';

/** The bytes as the map jobs made them before: the whole pair sorted (normalizePair), then 0-255. */
const reference = (a: Float32Array, b: Float32Array) => normalizePair(a, b).map((m) => Uint8Array.from(m, (v) => Math.round(255 * Math.min(1, Math.max(0, v)))));

test('pair bytes from the sides\' top values equal the whole pair sorted', () => {
  const r = mulberry32(4);
  const cases: [string, () => number, () => number][] = [
    ['heavy tails, one side larger', () => r() ** 8, () => 3 * r() ** 6],
    ['mostly zeros (the percentile is 0: the maximum scales)', () => (r() < 0.998 ? 0 : r()), () => 0],
    ['signed values and ties', () => Math.round(10 * (r() - 0.3)) / 10, () => Math.round(10 * (r() - 0.5)) / 10],
    ['all zeros', () => 0, () => 0],
  ];
  for (const size of [7, 112, 224]) {
    for (const [name, fa, fb] of cases) {
      const a = Float32Array.from({ length: size * size }, fa);
      const b = Float32Array.from({ length: size * size }, fb);
      const [da, db] = pairBytes(a, b, topValues(a), topValues(b));
      const [ra, rb] = reference(a, b);
      assert.deepEqual(da, ra, `${name}, ${size} px: driver map`);
      assert.deepEqual(db, rb, `${name}, ${size} px: reference map`);
      if (name.startsWith('heavy')) assert.ok([...da, ...db].some((v) => v === 255) && da.some((v) => v > 0 && v < 255), 'clipped and graded values both occur');
    }
  }
  assert.equal(topCount(224 * 224), 2 * 224 * 224 - Math.floor(0.995 * 2 * 224 * 224));
  assert.ok(topValues(new Float32Array(224 * 224)).length <= 0.011 * 224 * 224, 'a side sends about 1% of its values, not its map twice');
});
