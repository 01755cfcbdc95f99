import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import type { SessionStart, Stimulus } from '@sharedlens/shared';
import { addAbort, addTrial, channelStats, createNeuronStats, pearson, spearmanBrown, stimulusStats, trialsPerSec } from '../server/src/compute/neuron-stats.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { computeStart, root } from './helpers.ts';

const C = 5;
const stimuli: Stimulus[] = Array.from({ length: 15 }, (_, i) => ({ id: `s${i}`, file: `s${i}.png`, category: ['body', 'face', 'object'][i % 3] }));
const start: SessionStart = computeStart(C);

function randomTrials(seed: number, n: number) {
  const r = mulberry32(seed);
  return Array.from({ length: n }, (_, t) => {
    const s = Math.floor(r() * stimuli.length);
    // category tuning plus stimulus-specific signal plus noise, so reliability is well defined
    const responses = Array.from({ length: C }, (_, c) => (s % 3 === c % 3 ? 8 : 2) + (s * (c + 1)) % 5 + 3 * (r() - 0.5));
    return { stimulus: s, responses, onsetMs: t * 400 };
  });
}

const close = (a: number | null, b: number | null, what: string) => {
  assert.ok(a !== null && b !== null, `${what}: ${a} vs ${b}`);
  assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
};

test('per-neuron statistics equal numpy/scipy on the same trials', () => {
  const trials = randomTrials(11, 240);
  const state = createNeuronStats(start, stimuli, null);
  for (const t of trials) addTrial(state, { kind: 'completed', trial: 0, stimulusId: stimuli[t.stimulus].id, onsetMs: t.onsetMs, seq: 1, responses: Float64Array.from(t.responses) });
  const py = spawnSync('/usr/bin/python3', [path.join(root, 'test/reference/neuron_stats.py')], {
    input: JSON.stringify({ stimuli, channels: C, trials }),
    encoding: 'utf8',
  });
  assert.equal(py.status, 0, py.stderr);
  const ref = JSON.parse(py.stdout);
  const ours = channelStats(state);
  ours.forEach((ch, c) => {
    const r = ref.channels[c];
    for (const k of Object.keys(r.categoryMeans)) close(ch.categoryMeans[k], r.categoryMeans[k], `mean ${k} c${c}`);
    assert.equal(ch.preferredCategory, r.preferredCategory);
    close(ch.selectivityIndex, r.selectivityIndex, `SI c${c}`);
    close(ch.dPrime, r.dPrime, `d' c${c}`);
    close(ch.splitHalfR, r.splitHalfR, `split-half c${c}`);
    close(ch.noiseCeiling, r.noiseCeiling, `noise ceiling c${c}`);
    assert.equal(ch.nTrials, trials.length);
  });
  stimulusStats(state).forEach((s, i) => {
    assert.equal(s.nTrials, ref.stimuli[i].n);
    s.mean.forEach((m, c) => close(m, ref.stimuli[i].mean[c], `stim ${i} mean`));
    if (ref.stimuli[i].variance) s.variance.forEach((v, c) => close(v, ref.stimuli[i].variance[c], `stim ${i} var`));
  });
});

test('statistics are undefined (null) until there is data behind them', () => {
  const state = createNeuronStats(start, stimuli, null);
  const [ch] = channelStats(state);
  assert.equal(ch.preferredCategory, null);
  assert.equal(ch.selectivityIndex, null);
  assert.equal(ch.dPrime, null);
  assert.equal(ch.splitHalfR, null);
  assert.equal(ch.noiseCeiling, null);
  addTrial(state, { kind: 'completed', trial: 0, stimulusId: 's0', onsetMs: 0, seq: 1, responses: new Float64Array(C).fill(3) });
  const [after] = channelStats(state);
  assert.equal(after.preferredCategory, 'body');
  assert.equal(after.selectivityIndex, null, 'no other category yet');
});

test('a declared preferred category overrides the highest mean', () => {
  const state = createNeuronStats({ ...start, preferredCategory: 'object' }, stimuli, null);
  for (const t of randomTrials(3, 60)) addTrial(state, { kind: 'completed', trial: 0, stimulusId: stimuli[t.stimulus].id, onsetMs: t.onsetMs, seq: 1, responses: Float64Array.from(t.responses) });
  assert.ok(channelStats(state).every((c) => c.preferredCategory === 'object'));
});

test('aborted trials are counted and never change the statistics', () => {
  const state = createNeuronStats(start, stimuli, null);
  addTrial(state, { kind: 'completed', trial: 0, stimulusId: 's1', onsetMs: 0, seq: 1, responses: new Float64Array(C).fill(2) });
  const before = JSON.stringify(channelStats(state));
  addAbort(state);
  assert.equal(state.trialsAborted, 1);
  assert.equal(JSON.stringify(channelStats(state)), before);
});

test('trial rate over the last 10 s of rig time; Pearson and Spearman-Brown edge cases', () => {
  const state = createNeuronStats(start, stimuli, null);
  for (let i = 0; i < 100; i++) addTrial(state, { kind: 'completed', trial: i, stimulusId: 's0', onsetMs: i * 400, seq: 1, responses: new Float64Array(C) });
  close(trialsPerSec(state), 2.5, 'trials/s');
  assert.equal(pearson([1, 2], [1, 2]), null, 'too few points');
  assert.equal(pearson([1, 1, 1], [1, 2, 3]), null, 'no variance');
  close(pearson([1, 2, 3, 4], [2, 4, 6, 8]), 1, 'perfect');
  close(spearmanBrown(0.5), 2 / 3, 'SB 0.5');
  assert.equal(spearmanBrown(-1), null);
});
