/** A whole simulated session over real sockets: reconnect mid-session, statistics, replay reproducing them exactly. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io, type Socket } from 'socket.io-client';
import { dashboardEvents, type SessionSnapshot, type StatsDelta } from '@sharedlens/shared';
import { runSimRig, type SimResult } from '../server/src/sim/sim-rig.ts';
import { dashboardSocket, demoStimuli, getJson, startApp, TOKEN, until, type TestApp } from './helpers.ts';

let t: TestApp;
let sim: SimResult;
let dash: Socket;
const deltas: StatsDelta[] = [];
const TRIALS = 160;

before(async () => {
  t = await startApp();
  dash = dashboardSocket(t);
  dash.on(dashboardEvents.statsDelta, (d: StatsDelta) => deltas.push(d));
  // watch the first session as soon as it appears
  dash.on(dashboardEvents.sessionsUpdated, (list: { sessionId: string; state: string }[]) => {
    const live = list.find((s) => s.state === 'live');
    if (live && !deltas.length) dash.emit(dashboardEvents.sessionWatch, { sessionId: live.sessionId }, () => {});
  });
  sim = await runSimRig({
    url: t.url,
    token: TOKEN,
    stimuli: demoStimuli,
    stimulusSetId: 'demo',
    channels: 24,
    trials: TRIALS,
    onMs: 200,
    offMs: 200,
    abortRate: 0.05,
    seed: 5,
    reconnectAfterTrials: 40,
    fast: true,
  });
  await until(() => t.app.store.get(sim.sessionId)?.state === 'ended', 'session end');
});
after(async () => {
  sim.client.close();
  dash.close();
  await t.close();
});

test('every trial the rig sent is in the statistics, across a dropped connection', async () => {
  const snap: SessionSnapshot = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/stats`)).body;
  assert.equal(sim.client.reports.resumes, 1, 'the rig reconnected once');
  assert.equal(snap.trialsCompleted + snap.trialsAborted, TRIALS);
  assert.equal(snap.trialsAborted, sim.aborted);
  assert.equal(snap.seqGaps, 0);
  assert.equal(snap.state, 'ended');
  assert.ok(snap.channels.every((c) => c.nTrials === snap.trialsCompleted));
});

test('the statistics recover the simulated neurons: preferred category and reliable responses', async () => {
  const snap: SessionSnapshot = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/stats`)).body;
  const hits = snap.channels.filter((c, i) => c.preferredCategory === sim.neurons[i].preferredCategory).length;
  assert.ok(hits >= 22, `${hits}/24 preferred categories recovered`);
  const ceilings = snap.channels.map((c) => c.noiseCeiling ?? -1).sort((a, b) => a - b);
  assert.ok(ceilings[12] > 0.5, `median noise ceiling ${ceilings[12]}`);
  assert.ok(snap.channels.every((c) => (c.selectivityIndex ?? 0) > 0 && (c.dPrime ?? 0) > 0));
});

test('the dashboard namespace streamed throttled deltas with rising trial counts', () => {
  assert.ok(deltas.length >= 1);
  for (let i = 1; i < deltas.length; i++) assert.ok(deltas[i].trialsCompleted >= deltas[i - 1].trialsCompleted);
});

test('the session index lists the recorded session', async () => {
  const { body } = await getJson(`${t.url}/api/sessions`);
  const row = body.find((s: any) => s.sessionId === sim.sessionId);
  assert.equal(row.state, 'ended');
  assert.equal(row.channels, 24);
});

test('replaying the recorded session reproduces exactly the statistics computed live', async () => {
  const live: SessionSnapshot = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/stats?detail=1`)).body;
  const ack = await dash.timeout(5000).emitWithAck(dashboardEvents.sessionReplay, { sessionId: sim.sessionId, speed: 'max' });
  assert.ok(ack.data, JSON.stringify(ack));
  const replayId = ack.data.replayId as string;
  await until(() => t.app.store.get(replayId)?.replay?.done, 'replay done');
  const replay: SessionSnapshot = (await getJson(`${t.url}/api/sessions/${replayId}/stats?detail=1`)).body;
  const strip = ({ sessionId, sourceSessionId, state, lastSeq, seqGaps, rejected, ...rest }: SessionSnapshot) => rest;
  assert.equal(replay.sourceSessionId, sim.sessionId);
  assert.ok(live.stimuli!.length === demoStimuli.length && live.psth);
  assert.deepEqual(strip(replay), strip(live));
});

test('a replay can be paused, seeked and sped up; a seek recomputes from the start', async () => {
  const ack = await dash.timeout(5000).emitWithAck(dashboardEvents.sessionReplay, { sessionId: sim.sessionId, speed: 1 });
  const replayId = ack.data.replayId as string;
  const paused = await dash.timeout(5000).emitWithAck(dashboardEvents.replayControl, { replayId, action: 'pause' });
  assert.equal(paused.data.paused, true);
  const pos = t.app.store.get(replayId)!.replay!.position;
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(t.app.store.get(replayId)!.replay!.position, pos, 'no progress while paused');
  const total = t.app.store.get(replayId)!.replay!.total;
  const seek = await dash.timeout(5000).emitWithAck(dashboardEvents.replayControl, { replayId, action: 'seek', toRecord: Math.floor(total / 2) });
  assert.ok(seek.data.position >= Math.floor(total / 2));
  const half = t.app.store.get(replayId)!.latest!.trialsCompleted;
  assert.ok(half > 0 && half < TRIALS);
  await dash.timeout(5000).emitWithAck(dashboardEvents.replayControl, { replayId, action: 'speed', speed: 'max' });
  await dash.timeout(5000).emitWithAck(dashboardEvents.replayControl, { replayId, action: 'resume' });
  await until(() => t.app.store.get(replayId)?.replay?.done, 'replay done after seek');
  const live = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/stats`)).body;
  assert.equal(t.app.store.get(replayId)!.latest!.trialsCompleted, live.trialsCompleted);
  const stop = await dash.timeout(5000).emitWithAck(dashboardEvents.replayControl, { replayId, action: 'stop' });
  assert.deepEqual(stop.data, { stopped: true });
  assert.equal(t.app.store.get(replayId), undefined);
});

test('bad dashboard commands get clear errors', async () => {
  const a = await dash.timeout(5000).emitWithAck(dashboardEvents.sessionReplay, { sessionId: '../../etc/passwd' });
  assert.equal(a.error.code, 'unknown-session');
  const b = await dash.timeout(5000).emitWithAck(dashboardEvents.replayControl, { replayId: 'nope', action: 'pause' });
  assert.equal(b.error.code, 'unknown-session');
  const c = await dash.timeout(5000).emitWithAck(dashboardEvents.replayControl, { replayId: 'x', action: 'explode' });
  assert.equal(c.error.code, 'invalid');
  const d = await dash.timeout(5000).emitWithAck(dashboardEvents.sessionWatch, { sessionId: 42 });
  assert.equal(d.error.code, 'invalid');
});

test('the replay CLI reproduces the same statistics offline', async () => {
  const { spawnSync } = await import('node:child_process');
  const path = await import('node:path');
  const { root } = await import('./helpers.ts');
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'server/src/replay-cli.ts'), sim.sessionId, '--json'], {
    cwd: root,
    env: { ...process.env, DATA_DIR: t.config.dataDir },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  assert.equal(r.status, 0, r.stderr);
  const offline: SessionSnapshot = JSON.parse(r.stdout);
  const live: SessionSnapshot = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/stats?detail=1`)).body;
  assert.deepEqual(offline.channels, live.channels);
  assert.deepEqual(offline.stimuli, live.stimuli);
  const bad = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'server/src/replay-cli.ts'), '../../etc'], { cwd: root, env: { ...process.env, DATA_DIR: t.config.dataDir }, encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /no recorded session/);
});
