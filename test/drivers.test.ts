/** Drivers by a controlled test: the Welch test, the selectivity gate, Benjamini-Hochberg, against scipy; planted and null populations. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import type { Stimulus } from '@sharedlens/shared';
import { benjaminiHochberg, findDrivers, selectivityTest, type DriverRule } from '../server/src/compute/drivers.ts';
import { welchTest } from '../server/src/compute/welch-test.ts';
import { addTrial, channelStats, createNeuronStats, type NeuronStatsState } from '../server/src/compute/neuron-stats.ts';
import { simulatePopulation } from '../server/src/sim/driver-populations.ts';
import { mulberry32, poisson } from '../server/src/sim/synthetic-neurons.ts';
import { computeStart, root } from './helpers.ts';

const rule: DriverRule = { minRepeats: 3, selectivityTest: 'welch', selectivityAlpha: 0.01, q: 0.05, permutations: 999 };

const python = (input: unknown) => {
  const py = spawnSync('/usr/bin/python3', [path.join(root, 'test/reference/driver_tests.py')], { input: JSON.stringify(input), encoding: 'utf8' });
  assert.equal(py.status, 0, py.stderr);
  return JSON.parse(py.stdout);
};
const close = (a: number, b: number, what: string, tol = 1e-9) => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
const prefIndex = (state: NeuronStatsState, c: number) => state.categories.indexOf(channelStats(state)[c].preferredCategory!);

test('Welch t-test from summaries equals scipy (t, Welch-Satterthwaite df, one-sided p)', () => {
  const rand = mulberry32(3);
  const pairs = Array.from({ length: 40 }, () => [0, 1].map(() => [2 + Math.floor(rand() * 60), 10 * rand() - 2, 0.01 + 20 * rand()]));
  const ref = python({ welch: pairs }).welch;
  pairs.forEach(([[na, ma, va], [nb, mb, vb]], i) => {
    const w = welchTest({ n: na, mean: ma, variance: va }, { n: nb, mean: mb, variance: vb })!;
    close(w.t, ref[i].t, `t ${i}`);
    close(w.df, ref[i].df, `df ${i}`);
    // relative accuracy of the tail, down to p of 1e-12
    assert.ok(Math.abs(w.p - ref[i].p) <= 1e-9 * ref[i].p + 1e-15, `p ${i}: ${w.p} vs ${ref[i].p}`);
  });
  assert.equal(welchTest({ n: 1, mean: 5, variance: 0 }, { n: 10, mean: 1, variance: 1 }), null, 'one value has no variance');
  assert.deepEqual(welchTest({ n: 3, mean: 5, variance: 0 }, { n: 3, mean: 1, variance: 0 }), { t: Infinity, df: 4, p: 0 });
});

test('Benjamini-Hochberg q-values: monotone in p, capped at 1, the step-up rule', () => {
  const q = benjaminiHochberg([0.01, 0.04, 0.03, 0.005, 0.9]);
  // sorted p 0.005 0.01 0.03 0.04 0.9 times 5/rank: 0.025 0.025 0.05 0.05 0.9
  [0.025, 0.05, 0.05, 0.025, 0.9].forEach((v, i) => close(q[i], v, `q ${i}`));
  assert.deepEqual(benjaminiHochberg([]), []);
  assert.deepEqual(benjaminiHochberg([0.5, 0.9]), [0.9, 0.9]);
});

/** Trials of C channels over `stimuli`: channel c's rate per stimulus from `rate(c, s)`, Poisson counts. */
function trialsFor(stimuli: Stimulus[], C: number, repeats: number, rate: (c: number, s: number) => number, seed: number) {
  const rand = mulberry32(seed);
  const trials: { stimulus: number; responses: number[] }[] = [];
  for (let r = 0; r < repeats; r++) for (let s = 0; s < stimuli.length; s++) trials.push({ stimulus: s, responses: Array.from({ length: C }, (_, c) => poisson(rand, rate(c, s))) });
  return trials;
}

for (const declared of [undefined, 'body'] as const) {
  test(`selectivity gate, candidates' Welch p, BH q and the driver list equal the scipy reference (preferred ${declared ? 'declared' : 'picked from the data'})`, () => {
    const stimuli: Stimulus[] = Array.from({ length: 24 }, (_, i) => ({ id: `s${i}`, file: 'x.png', category: ['body', 'face', 'object'][Math.floor(i / 8)] }));
    const C = 6;
    // c0-c2 body-selective with drivers 9 (face) and 20 (object) of growing strength; c3 weakly selective; c4-c5 untuned
    const rate = (c: number, s: number) => {
      if (c >= 4) return 6;
      if (c === 3) return s < 8 ? 7 : 6;
      return s < 8 ? 14 + (s % 3) : s === 9 ? 22 + 3 * c : s === 20 ? 18 + 2 * c : 3 + (s % 4);
    };
    const trials = trialsFor(stimuli, C, 8, rate, declared ? 21 : 5);
    trials.push({ stimulus: 15, responses: Array(C).fill(40) }); // one trial only: never a candidate
    const start = { ...computeStart(C), ...(declared ? { preferredCategory: declared } : {}) };
    const state = createNeuronStats(start, stimuli, null);
    trials.forEach((t, i) => addTrial(state, { kind: 'completed', trial: i, stimulusId: `s${t.stimulus}`, onsetMs: i * 400, seq: i, responses: Float64Array.from(t.responses) }));
    const ref = python({ stimuli, channels: C, trials, declared: declared ?? null, minRepeats: rule.minRepeats, selectivityAlpha: rule.selectivityAlpha, q: rule.q }).channels;
    let withDrivers = 0;
    for (let c = 0; c < C; c++) {
      const k = prefIndex(state, c);
      assert.equal(state.categories[k], ref[c].preferred, `preferred c${c}`);
      const res = findDrivers(state, c, k, rule);
      close(res.selectivity!.p, ref[c].selectivityP, `selectivity p c${c}`);
      assert.equal(res.selectivity!.significant, ref[c].selectivityP <= rule.selectivityAlpha);
      assert.equal(res.candidates, ref[c].candidates.length, `candidates c${c}`);
      assert.deepEqual(res.drivers.map((d) => d.stimulus).sort((a, b) => a - b), [...ref[c].drivers].sort((a: number, b: number) => a - b), `drivers c${c}`);
      for (const d of res.drivers) {
        const r = ref[c].candidates.find((x: { stimulus: number }) => x.stimulus === d.stimulus);
        close(d.t, r.t, `t c${c} s${d.stimulus}`);
        close(d.df, r.df, `df c${c} s${d.stimulus}`);
        close(d.p, r.p, `p c${c} s${d.stimulus}`, 1e-8);
        close(d.q, r.q, `q c${c} s${d.stimulus}`, 1e-8);
        assert.ok(d.q <= rule.q && d.mean > d.preferredMean);
      }
      for (let i = 1; i < res.drivers.length; i++) assert.ok(res.drivers[i - 1].mean >= res.drivers[i].mean, 'strongest first');
      if (res.drivers.length) withDrivers++;
      else assert.ok(res.reason && res.reason.length > 10, `a reason for no drivers on c${c}`);
    }
    assert.ok(withDrivers >= 2, `the selective channels have drivers (${withDrivers})`);
    const untuned = findDrivers(state, 5, prefIndex(state, 5), rule);
    assert.match(untuned.reason!, /not category-selective \(welch test p = /);
  });
}

test('permutation selectivity test: p-value agrees with exact enumeration of the label assignments', () => {
  const stimuli: Stimulus[] = Array.from({ length: 8 }, (_, i) => ({ id: `s${i}`, file: 'x.png', category: i < 3 ? 'a' : i < 6 ? 'b' : 'c' }));
  const levels = [[9, 8, 6, 7, 5, 6, 5, 4], [9, 3, 6, 7, 5, 6, 5, 8]];
  const cases: { means: number[]; labels: number[]; k: number; declared: boolean }[] = [];
  const ours: number[] = [];
  for (const declared of [false, true]) {
    for (const lv of levels) {
      const start = { ...computeStart(1), ...(declared ? { preferredCategory: 'a' } : {}) };
      const state = createNeuronStats(start, stimuli, null);
      lv.forEach((v, s) => [v - 0.5, v + 0.5].forEach((x, i) => addTrial(state, { kind: 'completed', trial: i, stimulusId: `s${s}`, onsetMs: 0, seq: 0, responses: Float64Array.of(x) })));
      const k = declared ? 0 : prefIndex(state, 0);
      const res = selectivityTest(state, 0, k, { selectivityTest: 'permutation', selectivityAlpha: 0.05, permutations: 20_000 })!;
      ours.push(res.p);
      cases.push({ means: lv, labels: Array.from(state.catOfStim), k, declared });
    }
  }
  const exact: number[] = python({ permutation: cases }).permutation;
  // Monte Carlo error of a p near 0.1 with 20,000 shuffles: SD 0.002
  ours.forEach((p, i) => assert.ok(Math.abs(p - exact[i]) < 0.01, `case ${i}: ${p} vs exact ${exact[i]}`));
  assert.ok(exact[2] <= exact[0] && exact[3] <= exact[1], 'picking the preferred category from the data is part of the null: a declared one has the smaller p');
});

test('planted out-of-category drivers: precision >= 0.9 over seeds (recall reported)', () => {
  let found = 0;
  let correct = 0;
  let truth = 0;
  for (let seed = 1; seed <= 5; seed++) {
    const pop = simulatePopulation({ seed, channels: 32, repeats: 12 });
    pop.neurons.forEach((n, c) => {
      const res = findDrivers(pop.state, c, prefIndex(pop.state, c), rule);
      truth += n.drivers.length;
      found += res.drivers.length;
      correct += res.drivers.filter((d) => n.drivers.includes(d.stimulus)).length;
    });
  }
  const precision = correct / found;
  console.log(`  planted drivers: precision ${precision.toFixed(3)} (${correct}/${found}), recall ${(correct / truth).toFixed(3)} (${correct}/${truth})`);
  assert.ok(found >= 20, `drivers found: ${found}`);
  assert.ok(precision >= 0.9, `precision ${precision}`);
});

for (const selectivity of ['welch', 'permutation'] as const) {
  test(`no selectivity (categories shuffled over the stimuli), ${selectivity} gate: channels with any driver <= q`, () => {
    let any = 0;
    let channels = 0;
    let gated = 0;
    for (let seed = 1; seed <= (selectivity === 'welch' ? 8 : 3); seed++) {
      const pop = simulatePopulation({ seed, channels: 40, repeats: 8, shuffleCategories: true });
      for (let c = 0; c < 40; c++) {
        const res = findDrivers(pop.state, c, prefIndex(pop.state, c), { ...rule, selectivityTest: selectivity });
        channels++;
        if (res.drivers.length) any++;
        if (res.selectivity && !res.selectivity.significant) gated++;
      }
    }
    // the same neurons with their true categories: the gate lets them through (the test has power)
    const real = simulatePopulation({ seed: 1, channels: 40, repeats: 8 });
    const passed = real.neurons.filter((_, c) => findDrivers(real.state, c, prefIndex(real.state, c), { ...rule, selectivityTest: selectivity }).selectivity?.significant).length;
    assert.ok(any / channels <= rule.q, `false-channel rate ${any}/${channels}`);
    assert.ok(gated >= 0.9 * channels, `gated ${gated}/${channels}`);
    assert.ok(passed >= 0.9 * 40, `selective channels passing the gate: ${passed}/40`);
  });
}

test('one category: no selectivity and no drivers, each with its reason; scores still computed', () => {
  const stimuli: Stimulus[] = Array.from({ length: 10 }, (_, i) => ({ id: `s${i}`, file: 'x.png', category: 'all' }));
  const state = createNeuronStats(computeStart(2), stimuli, null);
  for (let r = 0; r < 4; r++) for (let s = 0; s < 10; s++) addTrial(state, { kind: 'completed', trial: 0, stimulusId: `s${s}`, onsetMs: 0, seq: 0, responses: Float64Array.of(s + (r % 2), 10 - s + r) });
  const ch = channelStats(state)[0];
  assert.equal(ch.selectivityIndex, null);
  assert.equal(ch.dPrime, null);
  assert.match(ch.selectivityReason!, /one category/);
  assert.ok(ch.noiseCeiling! > 0.9, 'reliability works without categories');
  const res = findDrivers(state, 0, 0, rule);
  assert.deepEqual(res.drivers, []);
  assert.equal(res.selectivity, null);
  assert.match(res.reason!, /one category/);
});
