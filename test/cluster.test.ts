/**
 * Two server processes on one Redis (cluster.redisUrl) and a shared data folder: a rig on node A, a dashboard
 * on node B. B sees A's session and its statistics as one process computes them, a follow-up asked for on B
 * reaches the rig on A, a replay running on A is paused and stopped from B's dashboard, and after A is killed
 * the rig resumes on B without losing an acknowledged event. A rig that leaves A (A alive) resumes on B at once.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { RigClient, type SessionSnapshot, type SessionSummary, type StatsDelta, type Suggestion } from '@sharedlens/shared';
import { Recorder } from '../server/src/sinks/recorder.ts';
import { ClusterNode } from '../server/src/cluster/cluster-node.ts';
import { demoStimuli, sessionStart, signIn, startApp, tmpDir, TOKEN, until, SIGN_IN_TOKEN, type TestApp } from './helpers.ts';
import { clusterConfigFile, startNode, startRedis, stopChild, type NodeProcess, type RedisServer } from './cluster-support.ts';

const C = 8;
/** Counts that differ by stimulus and channel, so categories, preferences and d' are not all alike. */
const countsOf = (trial: number, stimIndex: number) => {
  const bins = new Uint16Array(400 * C);
  for (let b = 150; b < 250; b++) for (let c = 0; c < C; c++) bins[b * C + c] = (stimIndex * 7 + c * 3 + trial) % 5 === 0 ? 2 : (stimIndex + c) % 3 === 0 ? 1 : 0;
  return bins;
};
/** One trial: onset, 400 ms of bins, offset; returns the three acknowledgements. */
const trial = (rig: RigClient, t: number) => {
  const s = t % demoStimuli.length;
  const t0 = t * 400;
  return [rig.onset(t, demoStimuli[s]!.id, t0 + 100), rig.binned(t0, 1, countsOf(t, s)), rig.offset(t, demoStimuli[s]!.id, t0 + 300)];
};

let redis: RedisServer;
let a: NodeProcess;
let b: NodeProcess;
let single: TestApp;
const dataDir = tmpDir();
const cookieOf = new Map<string, string>();
const api = async (url: string, p: string) => {
  const res = await fetch(`${url}${p}`, { headers: { cookie: cookieOf.get(url)! } });
  return { status: res.status, body: (await res.json()) as any, node: res.headers.get('x-sharedlens-node') };
};

before(async () => {
  redis = await startRedis();
  // features on (follow-ups need them), from the cache the other tests share; maps off (the BullMQ test has them)
  const configFile = clusterConfigFile({ compute: { cacheDir: path.join(os.tmpdir(), 'sharedlens-test-features'), maps: { enabled: false } } });
  [a, b] = await Promise.all([
    startNode({ redisUrl: redis.url, nodeId: 'node-a', dataDir, configFile, features: true }),
    startNode({ redisUrl: redis.url, nodeId: 'node-b', dataDir, configFile, features: true }),
  ]);
  for (const n of [a, b]) cookieOf.set(n.url, await signIn(n.url, { token: SIGN_IN_TOKEN }));
  single = await startApp();
});

after(async () => {
  await Promise.all([a?.stop(), b?.stop(), single?.close()]);
  await redis?.stop();
});

test('live handover: a rig that left node A resumes its session on node B at once, with every acknowledged trial; while still connected to A it is refused, saying why', async () => {
  const rigA = new RigClient({ url: a.url, token: TOKEN, ackTimeoutMs: 3000, socket: { reconnection: false } });
  // B's answer may wait for A's (up to the cluster's 3 s): the rig waits longer than that
  const rigB = new RigClient({ url: b.url, token: TOKEN, ackTimeoutMs: 10_000, socket: { reconnection: false } });
  try {
    await rigA.connect();
    await rigB.connect();
    const sessionId = await rigA.startSession(sessionStart(C));
    // at once, before A's next heartbeat: A took the session's hold before acknowledging its start (before,
    // B could take a session its rig had just started on A)
    await assert.rejects(rigB.resume(sessionId), /is live on node "node-a"/);
    let lastSeq = 0;
    for (let t = 0; t < 10; t++) for (const ack of await Promise.all(trial(rigA, t))) lastSeq = Math.max(lastSeq, ack.seq);
    await until(async () => (await api(b.url, '/api/sessions')).body.some((s: { sessionId: string }) => s.sessionId === sessionId), "A's session known to B");
    await assert.rejects(rigB.resume(sessionId), /is live on node "node-a".*that node did not hand it over: .*still connected to its rig/);
    // the rig leaves A (A stays up): B takes the session over without waiting for A's idle close (10 min)
    rigA.close();
    const resumedAt = await until(() => rigB.resume(sessionId).catch(() => null), 'the session resumed on B', 200);
    assert.equal(resumedAt, lastSeq);
    for (let t = 10; t < 12; t++) await Promise.all(trial(rigB, t));
    await until(async () => (await api(b.url, `/api/sessions/${sessionId}/stats`)).body.trialsCompleted === 12, '12 trials on B: 10 from A and 2 after the handover');
    // A learns that B runs it at its next read of the nodes (every heartbeat, 200 ms here), then forwards to B
    await until(async () => (await api(a.url, `/api/sessions/${sessionId}/stats`)).node === 'node-b', 'A forwarding the session to B');
    await rigB.end();
  } finally {
    rigA.close();
    rigB.close();
  }
});

test('rig on node A, dashboard on node B: same statistics as one process, follow-ups from B reach the rig, A\'s replay controlled from B, A killed and the session resumed on B', async () => {
  const dash: Socket = io(`${b.url}/dashboard`, { transports: ['websocket'], forceNew: true, extraHeaders: { cookie: cookieOf.get(b.url)! } });
  const lists: SessionSummary[][] = [];
  const deltas: StatsDelta[] = [];
  dash.on('sessions:updated', (l: SessionSummary[]) => lists.push(l));
  dash.on('stats:delta', (d: StatsDelta) => deltas.push(d));
  const rig = new RigClient({ url: a.url, token: TOKEN, ackTimeoutMs: 3000, socket: { reconnection: false } });
  const ref = new RigClient({ url: single.url, token: TOKEN });
  const rig2 = new RigClient({ url: b.url, token: TOKEN, ackTimeoutMs: 3000, socket: { reconnection: false } });
  try {
    await rig.connect();
    const sessionId = await rig.startSession(sessionStart(C));
    await ref.connect();
    const refId = await ref.startSession(sessionStart(C));
    const N = 72;
    for (let t = 0; t < N; t++) {
      await Promise.all(trial(rig, t));
      await Promise.all(trial(ref, t));
    }

    // B lists A's session (from A's heartbeat in Redis) and watches it: the snapshot comes from A through Redis
    await until(() => lists.some((l) => l.some((s) => s.sessionId === sessionId && (s as { node?: string }).node === 'node-a')), "A's session in B's list");
    const watched = (await dash.timeout(5000).emitWithAck('session:watch', { sessionId })) as { data: SessionSnapshot };
    assert.equal(watched.data.sessionId, sessionId);
    await until(() => single.app.store.get(refId)?.latest?.trialsCompleted === N, 'single-process statistics');
    const refSnap = single.app.store.snapshot(single.app.store.get(refId)!, true)!;
    // the room's deltas reach B's dashboard through the Redis adapter; statistics equal one process's
    const more = trial(rig, N);
    await Promise.all(more);
    await Promise.all(trial(ref, N));
    await until(() => deltas.find((d) => d.sessionId === sessionId && d.trialsCompleted === N + 1), "A's delta after one more trial on B's dashboard");
    await until(() => single.app.store.get(refId)?.latest?.trialsCompleted === N + 1, 'single-process statistics');
    const lastDelta = deltas.filter((d) => d.sessionId === sessionId).at(-1)!;
    assert.deepEqual(lastDelta.channels, single.app.store.snapshot(single.app.store.get(refId)!, false)!.channels);
    assert.equal(refSnap.trialsCompleted, N);
    assert.deepEqual(watched.data.channels.map((c) => c.id), refSnap.channels.map((c) => c.id));
    // HTTP on B for A's session is proxied to A (x-sharedlens-node), with per-stimulus detail
    const stats = await api(b.url, `/api/sessions/${sessionId}/stats?detail=1`);
    assert.equal(stats.status, 200);
    assert.equal(stats.node, 'node-a');
    const refDetail = single.app.store.snapshot(single.app.store.get(refId)!, true)!;
    assert.deepEqual(stats.body.channels, refDetail.channels);
    assert.deepEqual(stats.body.stimuli, refDetail.stimuli);
    assert.ok(refDetail.channels.some((c) => c.preferredCategory !== null), 'the counts give the channels preferences');

    // a follow-up asked for on B is computed and recorded on A and pushed to the rig connected to A
    await until(async () => (await api(a.url, '/api/health')).body.compute.features.demo === 'ready', "A's stimulus features", 2400);
    const pushed = new Promise<Suggestion[]>((resolve) => rig.onFollowups(resolve));
    const fu = (await dash.timeout(10_000).emitWithAck('followup:request', { sessionId, count: 3, strategy: 'improve' })) as { data?: { suggestions: Suggestion[]; sentToRig: number }; error?: unknown };
    assert.ok(fu.data, JSON.stringify(fu));
    assert.equal(fu.data.suggestions.length, 3);
    assert.equal(fu.data.sentToRig, 1);
    assert.deepEqual((await pushed).map((s) => s.stimulusId), fu.data.suggestions.map((s) => s.stimulusId));

    // a replay started on A is paused and stopped from B's dashboard (A runs it: B forwards the control)
    const dashA: Socket = io(`${a.url}/dashboard`, { transports: ['websocket'], forceNew: true, extraHeaders: { cookie: cookieOf.get(a.url)! } });
    try {
      const started = (await dashA.timeout(5000).emitWithAck('session:replay', { sessionId, speed: 1 })) as { data: { replayId: string } };
      const replayId = started.data.replayId;
      const paused = (await dash.timeout(5000).emitWithAck('replay:control', { replayId, action: 'pause' })) as { data?: { replayId: string; paused: boolean; sourceSessionId: string } };
      assert.deepEqual([paused.data?.replayId, paused.data?.paused, paused.data?.sourceSessionId], [replayId, true, sessionId], JSON.stringify(paused));
      const bad = (await dash.timeout(5000).emitWithAck('replay:control', { replayId, action: 'seek' })) as { error?: { message: string } };
      assert.match(bad.error?.message ?? '', /action "seek" needs toRecord/, "A's own answer to a bad control");
      assert.deepEqual(await dash.timeout(5000).emitWithAck('replay:control', { replayId, action: 'stop' }), { data: { stopped: true } });
      const gone = (await dash.timeout(5000).emitWithAck('replay:control', { replayId, action: 'resume' })) as { error?: { code: string; message: string } };
      assert.equal(gone.error?.code, 'unknown-session');
      assert.match(gone.error!.message, /on any node/);
    } finally {
      dashA.close();
    }

    // health on B names both nodes
    const health = await api(b.url, '/api/health');
    assert.deepEqual(health.body.cluster.nodes.map((n: { nodeId: string }) => n.nodeId).sort(), ['node-a', 'node-b']);

    // A is killed while events are in flight; whatever A acknowledged is in the shared log
    const acked = new Set<number>();
    const sent: Promise<void>[] = [];
    for (let t = N + 1; t < N + 200; t++) {
      for (const p of trial(rig, t)) sent.push(p.then((ack) => void acked.add(ack.seq), () => {}));
      if (t === N + 40) {
        await until(() => acked.size >= 60, 'acknowledgements before the kill');
        await stopChild(a.child, 'SIGKILL');
      }
      await new Promise((r) => setImmediate(r));
    }
    await Promise.race([Promise.all(sent), new Promise((r) => setTimeout(r, 4000))]);
    rig.close();
    assert.ok(acked.size >= 60);
    // with A gone its hold expires: B lists the session as interrupted, and its dashboards no longer list it as A's
    await until(async () => (await api(b.url, '/api/sessions')).body.find((s: { sessionId: string }) => s.sessionId === sessionId)?.state === 'interrupted', 'the session interrupted on B', 400);
    await until(() => lists.at(-1)?.every((s) => s.sessionId !== sessionId), "A's session gone from B's dashboard list");

    await rig2.connect();
    const lastSeq = await rig2.resume(sessionId);
    const recorder = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 100 });
    const records = recorder.load(sessionId).records;
    recorder.close();
    const recorded = new Set(records.map((r) => ('seq' in r.frame ? (r.frame.seq ?? 0) : 0)));
    for (const seq of acked) assert.ok(recorded.has(seq), `acknowledged seq ${seq} is in the log`);
    assert.equal(lastSeq, Math.max(...recorded));
    // B rebuilds the statistics from the log and goes on with the rig's next trial
    const completed = records.filter((r) => r.frame.type === 'stim:offset').length;
    await until(async () => (await api(b.url, `/api/sessions/${sessionId}/stats`)).body.trialsCompleted === completed, 'statistics rebuilt on B', 800);
    const lastBin = records.map((r) => r.frame).filter((f) => f.type === 'counts:binned').at(-1) as { startMs: number; nBins: number };
    const t0 = lastBin.startMs + lastBin.nBins;
    await rig2.onset(5000, demoStimuli[0]!.id, t0 + 100);
    await rig2.binned(t0, 1, countsOf(0, 0));
    await rig2.offset(5000, demoStimuli[0]!.id, t0 + 300);
    await rig2.end();
    await until(async () => (await api(b.url, `/api/sessions/${sessionId}/stats`)).body.trialsCompleted === completed + 1, 'the trial after resume on B');
    const nodes = (await api(b.url, '/api/health')).body.cluster.nodes.map((n: { nodeId: string }) => n.nodeId);
    assert.deepEqual(nodes, ['node-b']);
  } finally {
    for (const r of [rig, rig2, ref]) r.close();
    dash.close();
  }
});

test('session holds: one node holds a session, another is refused with the holder named; of two claiming at once one wins; a stopped node frees its sessions', async () => {
  const opts = { redisUrl: redis.url, heartbeatMs: 100, ttlS: 1, prefix: 'hold-test:', log: () => {} };
  const x = await ClusterNode.connect({ ...opts, nodeId: 'x' });
  const y = await ClusterNode.connect({ ...opts, nodeId: 'y' });
  try {
    const summary = { sessionId: 's1', rigId: 'r', subject: 'M', stimulusSetId: 'demo', startedAt: '2026-01-01T00:00:00Z', state: 'live' as const, channels: 1, records: 1 };
    x.start('http://x.invalid:1', () => ({ summaries: [summary], owned: ['s1'] }));
    y.start('http://y.invalid:1', () => ({ summaries: [], owned: [] }));
    await until(() => y.ownerOf('s1') === 'x' && y.otherSessions().length === 1, "x's hold seen by y");
    assert.equal((y.otherSessions()[0] as { node?: string }).node, 'x');
    assert.equal(await x.claim('s1'), null);
    assert.match((await y.claim('s1'))!, /^session s1 is live on node "x" \(http:\/\/x\.invalid:1\); connect the rig there/);
    const both = await Promise.all([x.claim('s2'), y.claim('s2')]);
    assert.equal(both.filter((r) => r === null).length, 1, JSON.stringify(both));
    assert.deepEqual(y.nodes().map((n) => n.nodeId).sort(), ['x', 'y']);
  } finally {
    await x.close();
  }
  try {
    // x stopped cleanly: its hold is given up at once (a killed node's expires after ttlS, tested above)
    assert.equal(await y.claim('s1'), null);
    await until(() => y.nodes().length === 1, 'x gone from the nodes');
  } finally {
    await y.close();
  }
});
