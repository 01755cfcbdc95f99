/**
 * The scale bench's feature line (bench/scale.ts): without BENCH_SCALE_COLD=1 the cold start is not
 * measured, and the line says so instead of printing "NaN s".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { coldLine } from '../bench/scale.ts';

test('scale bench: the cold start is printed when measured, "not measured" otherwise (never NaN)', () => {
  assert.equal(coldLine(20, 25), 'from a cold start 20.0 s vs 25.0 s -> 1.25x');
  const line = coldLine(NaN, 25.1);
  assert.doesNotMatch(line, /NaN/);
  assert.match(line, /cold start not measured/);
});
