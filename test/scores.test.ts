/** Model scores against the noise ceiling: normalised r = r / sqrt(R), fev = sign(r) r^2 / R, and why r / R is gone. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalisedScores } from '../server/src/compute/neuron-stats.ts';
import { trueModelScores } from '../server/src/sim/driver-populations.ts';

test('normalisedR and fev: the formulas, the sign of r kept, null with a reason below the minimum reliability', () => {
  const s = normalisedScores(0.6, 0.81, 0.1);
  assert.ok(Math.abs(s.normalisedR! - 0.6 / 0.9) < 1e-12 && Math.abs(s.fev! - 0.36 / 0.81) < 1e-12 && s.normalisedReason === null);
  const neg = normalisedScores(-0.3, 0.5, 0.1);
  assert.ok(neg.normalisedR! < 0 && Math.abs(neg.fev! + 0.09 / 0.5) < 1e-12, 'negative r keeps its sign in fev');
  const low = normalisedScores(0.2, 0.05, 0.1);
  assert.deepEqual([low.normalisedR, low.fev], [null, null]);
  assert.match(low.normalisedReason!, /noise ceiling 0\.050 below the minimum reliability 0\.1/);
  assert.match(normalisedScores(0.5, null, 0.1).normalisedReason!, /no noise ceiling yet/);
  assert.match(normalisedScores(null, 0.8, 0.1).normalisedReason!, /model correlation undefined/);
});

for (const repeats of [4, 8, 16]) {
  test(`neurons whose model is the truth (${repeats} repeats): mean normalised r is 1 within its standard error; r / ceiling exceeds 1`, () => {
    const norm: number[] = [];
    const old: number[] = [];
    for (let seed = 1; seed <= 6; seed++) {
      for (const { r, ceiling } of trueModelScores({ seed, channels: 40, repeats })) {
        const s = normalisedScores(r, ceiling, 0.1);
        if (s.normalisedR === null) continue;
        norm.push(s.normalisedR);
        old.push(r! / ceiling!);
      }
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const se = (xs: number[]) => Math.sqrt(xs.reduce((a, b) => a + (b - mean(xs)) ** 2, 0) / (xs.length - 1) / xs.length);
    assert.ok(norm.length >= 200, `neurons scored: ${norm.length}`);
    const m = mean(norm);
    // within two standard errors (one-SE bands miss the truth a third of the time) and 0.01
    assert.ok(Math.abs(m - 1) <= 2 * se(norm) && Math.abs(m - 1) < 0.01, `mean normalised r ${m.toFixed(4)} +- ${se(norm).toFixed(4)}`);
    assert.ok(mean(old) - 1 > 4 * se(old), `mean r / ceiling ${mean(old).toFixed(4)} +- ${se(old).toFixed(4)} exceeds 1`);
  });
}
