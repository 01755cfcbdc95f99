import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lastValueFrom } from 'rxjs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import type { SessionStart, Stimulus } from '@sharedlens/shared';
import { RigClient } from '@sharedlens/shared';
import { addTrial, createNeuronStats } from '../server/src/compute/neuron-stats.ts';
import { createEncoding, refit, type FeatureSet } from '../server/src/compute/encoding.ts';
import { suggest, suggestConfirm, suggestWithNotes, suggestImprove, suggestProbe, type FollowupContext } from '../server/src/compute/followup.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { runSimRig } from '../server/src/sim/sim-rig.ts';
import { ComputeClient } from '../server/src/workers/compute-client.ts';
import { dashboardSocket, demoStimuli, root, startApp, testConfig, TOKEN, until } from './helpers.ts';
import { io } from 'socket.io-client';

const D = 30;
const S = 24;
const stimuli: Stimulus[] = Array.from({ length: S }, (_, i) => ({ id: `s${i}`, file: 'x.png', category: i < 8 ? 'body' : i < 16 ? 'face' : 'object' }));
const start: SessionStart = { rigId: 'r', subject: 's', channels: [{ id: 'a', label: 'a' }, { id: 'b', label: 'b' }], stimulusSetId: 'x', timing: { responseWindowMs: 100, latencyMs: 50, baselineWindowMs: 50, binWidthMs: 1 }, countsMode: 'binned' };
const r = mulberry32(8);
const gauss = () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
const fs: FeatureSet = { features: Float32Array.from({ length: S * D }, () => Math.max(0, gauss())), dim: D, modelId: 't', backend: 'cpu' };
// neuron a: responds along feature 0 and prefers bodies; stimulus s20 (object) has a huge feature 0
fs.features[20 * D] = 8;
for (let i = 0; i < 8; i++) fs.features[i * D] += 2;

function context(): FollowupContext {
  const stats = createNeuronStats(start, stimuli, null);
  for (let k = 0; k < 200; k++) {
    const s = k % 18; // s18..s23 never shown
    const x = fs.features.subarray(s * D, (s + 1) * D);
    addTrial(stats, { kind: 'completed', trial: k, stimulusId: `s${s}`, onsetMs: 0, seq: k, responses: Float64Array.of(3 * x[0] + 0.3 * gauss(), x[1] + 0.3 * gauss()) });
  }
  addTrial(stats, { kind: 'completed', trial: 999, stimulusId: 's20', onsetMs: 0, seq: 999, responses: Float64Array.of(30, 0) });
  const enc = refit(createEncoding(fs, S), stats, { alphas: [0.1, 1, 10], refitEveryTrials: 5, minStimuli: 6 });
  const pool = stimuli.map((s, i) => ({ id: s.id, setId: 'x', category: s.category, features: fs.features.subarray(i * D, (i + 1) * D) }));
  return { stats, enc, preferred: [0, -1], pool, neurons: [0, 1], confirmRepeats: 6, alphas: [0.1, 1, 10] };
}

test('probe: the out-of-category candidate with the highest predicted response comes first, with its reason', () => {
  const out = suggestProbe(context(), 3);
  assert.equal(out[0].stimulusId, 's20');
  assert.ok(out.every((s) => !['s0', 's1', 's2', 's3', 's4', 's5', 's6', 's7'].includes(s.stimulusId)), 'never the preferred category');
  assert.deepEqual(out[0].neurons, ['a']);
  assert.match(out[0].reason, /predicted .* for a, .* SD above its preferred-category mean/);
});

test('improve: unseen stimuli first, and a duplicate of a pick is not picked again', () => {
  const ctx = context();
  // a duplicate of the unseen s21 in the pool
  ctx.pool.push({ ...ctx.pool[21], id: 's21-copy' });
  const out = suggestImprove(ctx, 5);
  assert.ok(out.slice(0, 3).every((s) => ['s18', 's19', 's21', 's22', 's23', 's21-copy'].includes(s.stimulusId)), out.map((s) => s.stimulusId).join());
  const ids = out.map((s) => s.stimulusId);
  assert.ok(!(ids.includes('s21') && ids.includes('s21-copy')), `both copies picked: ${ids}`);
  // greedy: each further trial removes no more of the summed variance than the one before
  const gains = out.map((s) => Number(/removes ([\d.]+)%/.exec(s.reason)![1]));
  for (let i = 1; i < gains.length; i++) assert.ok(gains[i] <= gains[i - 1] + 0.05, `gains ${gains}`);
  assert.ok(gains[0] > 0);
});

test('improve before the first fit: a design from the features alone, no pick twice, the duplicate left out', () => {
  const ctx = context();
  const fresh = { ...ctx, stats: createNeuronStats(start, stimuli, null), enc: createEncoding(fs, S) };
  fresh.pool.push({ ...fresh.pool[21], id: 's21-copy' });
  assert.equal(suggestProbe(fresh, 3).length, 0, 'probe needs fitted models');
  const out = suggestImprove(fresh, 8);
  assert.equal(out.length, 8);
  const ids = out.map((s) => s.stimulusId);
  assert.equal(new Set(ids).size, 8);
  assert.ok(!(ids.includes('s21') && ids.includes('s21-copy')), `both copies picked: ${ids}`);
  assert.ok(out.every((s) => /^\w+ image not shown yet: .* averaged over 3 regularisation values$/.test(s.reason)), out[0].reason);
  // each reason says how it differs from the one above it
  assert.match(out[0].reason, /\(the most of any candidate\)/);
  out.slice(1).forEach((s, i) => assert.ok(s.reason.includes(`(the suggestion above: ${/removes ([\d.]+)%/.exec(out[i].reason)![1]}%)`), s.reason));
  // the first pick is the candidate whose trial removes the most prior variance: s20, far out along feature 0
  assert.equal(ids[0], 's20');
});

test('improve equals an independent weight-space reference (numpy), and does not depend on the responses', () => {
  const ctx = context();
  const out = suggestImprove(ctx, 8);
  const observed = ctx.stats.stimuli.map((_, i) => i).filter((i) => ctx.stats.nStim[i] > 0);
  const row = (i: number) => Array.from(fs.features.subarray(i * D, (i + 1) * D));
  const py = spawnSync('/usr/bin/python3', [path.join(root, 'test/reference/improve_design.py')], {
    input: JSON.stringify({ pool: stimuli.map((_, i) => row(i)), observed: observed.map(row), counts: observed.map((i) => ctx.stats.nStim[i]), alphas: ctx.alphas, count: 8 }),
    encoding: 'utf8',
  });
  assert.equal(py.status, 0, py.stderr);
  const ref = JSON.parse(py.stdout) as { picks: number[]; percent: number[] };
  assert.deepEqual(out.map((s) => s.stimulusId), ref.picks.map((i) => `s${i}`));
  out.forEach((s, i) => assert.ok(Math.abs(Number(/removes ([\d.]+)%/.exec(s.reason)![1]) - ref.percent[i]) <= 0.051, `${s.reason} vs ${ref.percent[i]}`));
  // the same trials with other responses (every mean x100, another neuron's tuning): the same design
  const other = createNeuronStats(start, stimuli, null);
  ctx.stats.nStim.forEach((n, s) => {
    for (let k = 0; k < n; k++) addTrial(other, { kind: 'completed', trial: k, stimulusId: `s${s}`, onsetMs: 0, seq: s * 1000 + k, responses: Float64Array.of(100 * r(), -fs.features[s * D + 5]) });
  });
  const enc = refit(createEncoding(fs, S), other, { alphas: ctx.alphas, refitEveryTrials: 5, minStimuli: 6 });
  assert.deepEqual(suggestImprove({ ...ctx, stats: other, enc }, 8).map((s) => s.stimulusId), out.map((s) => s.stimulusId));
});

test('confirm: drivers above the preferred mean with too few presentations; mixes fill from the other strategies', () => {
  const ctx = context();
  const c = suggestConfirm(ctx, 5);
  assert.deepEqual(c.map((s) => s.stimulusId), ['s20']);
  assert.match(c[0].reason, /after only 1 of 6 presentations/);
  const mixed = suggest(ctx, 6, { confirm: 1, probe: 1, improve: 1 });
  assert.equal(mixed.length, 6);
  assert.equal(new Set(mixed.map((s) => s.stimulusId)).size, 6, 'no stimulus twice');
  assert.deepEqual(mixed.map((s) => s.rank), [0, 1, 2, 3, 4, 5]);
});

test('a strategy asked for that gives nothing says why; none said when every strategy gave', () => {
  const ctx = context();
  const all = { probe: 1, improve: 1, confirm: 1 };
  // confirm's one candidate (s20) is probe's first too: in the list once, and no note for confirm
  assert.deepEqual(suggestWithNotes(ctx, 6, all).notes, []);
  // every candidate left in the pool has been shown confirmRepeats times: nothing to probe
  const known = { ...ctx, pool: ctx.pool.filter((c) => ctx.stats.nStim[ctx.stats.stimIndex.get(c.id)!] >= ctx.confirmRepeats) };
  const mix = { probe: 1, improve: 1 };
  const { suggestions: given, notes } = suggestWithNotes(known, 4, mix);
  assert.equal(given.length, 4);
  assert.ok(given.every((s) => s.strategy === 'improve'));
  assert.equal(notes.length, 1);
  // in plain words first, the settings named second
  assert.match(notes[0], /^probe: every image outside the selected neurons' preferred categories has already been shown 6 times or more, so nothing is left to probe; register more images .*\(settings: compute.confirmRepeats, poolSetIds\)$/);
  // a neuron without a preferred category: neither probe nor confirm has anything for it
  const b = { ...ctx, neurons: [1] };
  assert.deepEqual(suggestWithNotes(b, 4, all).notes, [
    'probe: none of the selected neurons has a preferred category yet',
    "confirm: no image outside a selected neuron's preferred category responds above that category's mean with fewer than 6 presentations yet (setting: compute.confirmRepeats)",
  ]);
});

test('over sockets: a rig asks for follow-ups; the dashboard pushes them to the rig; both are recorded', async () => {
  const base = testConfig();
  const t = await startApp({ compute: { ...base.compute, features: true, maps: { ...base.compute.maps, enabled: false } } });
  try {
    const client = new ComputeClient({ cacheDir: t.config.compute.cacheDir, dataDir: t.config.dataDir, backend: 'auto', workers: 1 });
    const f = await lastValueFrom(client.features$(demoStimuli.map((s) => path.join(root, 'stimuli/demo', s.file))));
    await client.close();
    if (f.type !== 'features') throw new Error('no features');
    const sim = await runSimRig({ url: t.url, token: TOKEN, stimuli: demoStimuli, stimulusSetId: 'demo', channels: 8, trials: 300, onMs: 200, offMs: 200, abortRate: 0, seed: 2, reconnectAfterTrials: 0, fast: true, keepOpen: true, features: { features: f.features, dim: f.dim } });
    await until(() => t.app.store.get(sim.sessionId)?.encoding?.ridge, 'models');
    // the rig asks
    const fromRig = await sim.client.followups(5, { mix: { probe: 2, improve: 1, confirm: 1 } });
    assert.equal(fromRig.length, 5);
    assert.ok(fromRig.every((s) => s.reason.length > 20 && s.setId === 'demo'));
    await assert.rejects(sim.client.followups(3, { neurons: ['nope'] }), /unknown-channel/);
    // the experimenter asks from the dashboard: the rig receives them
    const pushed = new Promise<unknown[]>((resolve) => sim.client.onFollowups(resolve));
    const dash = dashboardSocket(t);
    const ack = await dash.timeout(5000).emitWithAck('followup:request', { sessionId: sim.sessionId, count: 4, strategy: 'improve' });
    assert.equal(ack.data.suggestions.length, 4);
    assert.equal(ack.data.sentToRig, 1);
    assert.equal((await pushed).length, 4);
    const bad = await dash.timeout(5000).emitWithAck('followup:request', { sessionId: sim.sessionId, count: 0 });
    assert.equal(bad.error.code, 'invalid');
    dash.close();
    await sim.client.end();
    sim.client.close();
    // both are in the log, so a replay shows them too
    const given = t.app.recorder.load(sim.sessionId).records.filter((r) => r.frame.type === 'followup:suggested');
    assert.deepEqual(given.map((r) => (r.frame as { origin: string }).origin), ['rig', 'dashboard']);
    // and a replay shows the suggestions as they were given
    const dash2 = dashboardSocket(t);
    const rep = await dash2.timeout(5000).emitWithAck('session:replay', { sessionId: sim.sessionId, speed: 'max' });
    await until(() => t.app.store.get(rep.data.replayId)?.replay?.done, 'replay');
    const replayed = t.app.store.get(rep.data.replayId)!.followups!;
    assert.equal(replayed.origin, 'dashboard');
    assert.deepEqual(replayed.suggestions.map((x) => x.stimulusId), ack.data.suggestions.map((x: { stimulusId: string }) => x.stimulusId));
    dash2.close();
    // a session without models says why
    const rig = new RigClient({ url: t.url, token: TOKEN });
    await rig.connect();
    const r2 = await rig.startSession({ rigId: 'r2', subject: 's', stimulusSetId: 'demo', channels: [{ id: 'x', label: 'x' }], timing: { responseWindowMs: 100, latencyMs: 0, baselineWindowMs: 0, binWidthMs: 1 } });
    await until(() => t.app.store.get(r2)?.encoding, 'features of r2');
    await assert.rejects(rig.followups(3), /no encoding models yet.*probe needs a few stimuli with trials/);
    // improve needs no responses: it suggests the first images before any trial
    const first = await rig.followups(4, { strategy: 'improve' });
    assert.equal(new Set(first.map((s) => s.stimulusId)).size, 4);
    assert.ok(first.every((s) => s.strategy === 'improve' && /not shown yet/.test(s.reason)), first.map((s) => s.reason).join('\n'));
    // improve and confirm asked for before any trial: the acknowledgement says why confirm gave nothing
    const both = (await rig.send('followup:request', { count: 3, mix: { improve: 1, confirm: 1 } })) as unknown as { suggestions: { strategy: string }[]; notes?: string[] };
    assert.equal(both.suggestions.length, 3);
    assert.deepEqual(both.notes, ["confirm: no image outside a selected neuron's preferred category responds above that category's mean with fewer than 6 presentations yet (setting: compute.confirmRepeats)"]);
    rig.close();
  } finally {
    await t.close();
  }
});
