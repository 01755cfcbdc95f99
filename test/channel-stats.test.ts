/**
 * The per-channel statistics the dashboard gets with every delta: the split-half reliability computed for
 * all channels at once in the statistics' memory order equals pearson() of each channel's two halves,
 * exactly (same sums, same order).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Stimulus } from '@sharedlens/shared';
import { addTrial, channelStats, createNeuronStats, pearson } from '../server/src/compute/neuron-stats.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { computeStart } from './helpers.ts';

test('split-half reliability of every channel at once equals pearson() channel by channel, exactly', () => {
  const C = 37;
  const S = 23;
  const r = mulberry32(11);
  const stimuli: Stimulus[] = Array.from({ length: S }, (_, i) => ({ id: `s${i}`, file: 'x.png', category: i % 3 ? 'face' : 'body' }));
  const stats = createNeuronStats(computeStart(C), stimuli, null);
  // stimuli 0-1 seen once (one half only): left out of the reliability
  for (let k = 0; k < 200; k++) {
    const s = k < 2 ? k : 2 + Math.floor(r() * (S - 2));
    addTrial(stats, { kind: 'completed', trial: k, stimulusId: `s${s}`, onsetMs: k * 400, seq: k, responses: Float64Array.from({ length: C }, (_, c) => (c === 5 ? 3 : r() * 10 + s * (c % 4))) });
  }
  const got = channelStats(stats);
  const both: number[] = [];
  for (let s = 0; s < S; s++) if (stats.halfN[0][s] > 0 && stats.halfN[1][s] > 0) both.push(s);
  assert.ok(both.length >= 10 && both.length < S);
  for (let c = 0; c < C; c++) {
    const a = both.map((s) => stats.halfSum[0][s * C + c] / stats.halfN[0][s]);
    const b = both.map((s) => stats.halfSum[1][s * C + c] / stats.halfN[1][s]);
    assert.equal(got[c].splitHalfR, pearson(a, b), `channel ${c}`);
    assert.equal(got[c].reliabilityStimuli, both.length);
  }
  assert.equal(got[5].splitHalfR, null, 'a constant channel has no correlation');
});
