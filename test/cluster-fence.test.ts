/**
 * Split brain (a second server on one log): node A is cut off from the cluster's Redis while its rig stays
 * connected to it, and node B, which still reaches Redis, takes the session over once A's hold expired. A must
 * have stopped writing before that: every event A acknowledged is in the log B resumed from, A refuses the
 * rig's later events (and a follow-up asked on its dashboard) as `storage`, not recorded, saying why, the log has each seq once, and
 * once Redis answers again A does not take the lapsed hold again: it closes the session (its rig is told and
 * disconnected, to resume from the log) without writing to it.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { RigClient } from '@sharedlens/shared';
import { Recorder } from '../server/src/sinks/recorder.ts';
import { io, type Socket } from 'socket.io-client';
import { demoStimuli, sessionStart, signIn, tmpDir, SIGN_IN_TOKEN, TOKEN, until } from './helpers.ts';
import { clusterConfigFile, startNode, startRedis, type NodeProcess, type RedisServer } from './cluster-support.ts';

const C = 4;
const counts = () => {
  const bins = new Uint16Array(400 * C);
  for (let b = 150; b < 250; b += 7) bins[b * C + (b % C)] = 1;
  return bins;
};

/** A TCP relay to Redis that the test can cut: node A's only way to Redis. */
async function relayTo(target: string): Promise<{ url: string; cut(): void; restore(): void; close(): Promise<void> }> {
  const { hostname, port } = new URL(target);
  const open = new Set<net.Socket>();
  let cut = false;
  const server = net.createServer((client) => {
    if (cut) return client.destroy();
    const upstream = net.connect(Number(port), hostname);
    for (const s of [client, upstream]) {
      open.add(s);
      s.on('close', () => open.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `redis://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    cut: () => {
      cut = true;
      for (const s of open) s.destroy();
    },
    restore: () => void (cut = false),
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of open) s.destroy();
      }),
  };
}

let redis: RedisServer | undefined;
const nodes: NodeProcess[] = [];
after(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  await redis?.stop();
});

test('a node cut off from Redis stops writing a session before another node takes it over: nothing it acknowledged is lost, nothing is written twice', { timeout: 120_000 }, async () => {
  redis = await startRedis();
  const relay = await relayTo(redis.url);
  const dataDir = tmpDir();
  const configFile = clusterConfigFile();
  const a = await startNode({ redisUrl: relay.url, nodeId: 'node-a', dataDir, configFile });
  nodes.push(a);
  const b = await startNode({ redisUrl: redis.url, nodeId: 'node-b', dataDir, configFile });
  nodes.push(b);
  const rigA = new RigClient({ url: a.url, token: TOKEN, ackTimeoutMs: 10_000, socket: { reconnection: false } });
  const rigB = new RigClient({ url: b.url, token: TOKEN, ackTimeoutMs: 10_000, socket: { reconnection: false } });
  try {
    await rigA.connect();
    const sessionId = await rigA.startSession(sessionStart(C));
    // the rig on A sends a trial every 40 ms throughout: before the cut, while A is cut off, after B took over
    const ackedByA: number[] = [];
    const refusedByA: string[] = [];
    let sending = true;
    const loop = (async () => {
      for (let t = 0; sending; t++) {
        const s = demoStimuli[t % demoStimuli.length]!.id;
        const t0 = t * 400;
        const results = await Promise.allSettled([rigA.onset(t, s, t0 + 100), rigA.binned(t0, 1, counts()), rigA.offset(t, s, t0 + 300)]);
        for (const r of results) {
          if (r.status === 'fulfilled' && !r.value.duplicate) ackedByA.push(r.value.seq);
          if (r.status === 'rejected') refusedByA.push((r.reason as Error).message);
        }
        await new Promise((r) => setTimeout(r, 40));
      }
    })();
    await until(() => ackedByA.length >= 30, 'ten trials acknowledged by A');
    relay.cut();
    const cutAfter = Math.max(...ackedByA);
    // B takes the session over once A's hold expired in Redis (3 s after A's last heartbeat here)
    await rigB.connect();
    const resumedAt = await until(() => rigB.resume(sessionId).catch(() => null), 'the session taken over by B', 200);
    // A's rig goes on sending for a while after the takeover
    await new Promise((r) => setTimeout(r, 1500));
    sending = false;
    await loop;

    assert.ok(cutAfter <= resumedAt, `B resumed after seq ${resumedAt}, A had acknowledged up to ${cutAfter} before the cut`);
    assert.ok(Math.max(...ackedByA) <= resumedAt, `every event A acknowledged (up to seq ${Math.max(...ackedByA)}) was in the log B resumed from (up to ${resumedAt})`);
    assert.ok(refusedByA.length > 0, 'A refused the events that came after its hold lapsed');
    for (const m of refusedByA) assert.match(m, /^storage: not recorded, not acknowledged: .*(hold on session .* is not current|holds session .* now; resume it there)/);

    // a follow-up asked on A's dashboard while A is cut off is not recorded either
    const dashA: Socket = io(`${a.url}/dashboard`, { transports: ['websocket'], forceNew: true, extraHeaders: { cookie: await signIn(a.url, { token: SIGN_IN_TOKEN }) } });
    try {
      const fu = (await dashA.timeout(10_000).emitWithAck('followup:request', { sessionId, count: 3, strategy: 'improve' })) as { error?: { code: string; message: string } };
      assert.equal(fu.error?.code, 'storage', JSON.stringify(fu));
      assert.match(fu.error!.message, /^follow-up not recorded: this node's hold on session \S+ .* is not current/);
    } finally {
      dashA.close();
    }

    // B goes on with the rig's next trial; the log then holds each seq once, every acknowledged one among them
    const t0 = 10_000_000;
    const ackedByB = await Promise.all([rigB.onset(9999, demoStimuli[0]!.id, t0 + 100), rigB.binned(t0, 1, counts()), rigB.offset(9999, demoStimuli[0]!.id, t0 + 300)]);
    await rigB.end();
    const recorder = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 100 });
    const seqs = recorder.load(sessionId).records.map((r) => ('seq' in r.frame ? (r.frame.seq ?? 0) : 0)).filter((s) => s > 0);
    recorder.close();
    assert.equal(new Set(seqs).size, seqs.length, 'no seq written twice (one writer at a time)');
    assert.deepEqual([...seqs].sort((x, y) => x - y), seqs, 'seqs in order');
    for (const seq of [...ackedByA, ...ackedByB.map((x) => x.seq)]) assert.ok(seqs.includes(seq), `acknowledged seq ${seq} is in the log`);

    // Redis back: A's next heartbeat finds its hold gone (B ended the session and gave it up) and does not
    // take it again: A closes the session without writing to its log, and disconnects its rig so that it resumes
    let errorToRig = '';
    rigA.socket.on('rig:error', (m: { error: { message: string } }) => (errorToRig = m.error.message));
    relay.restore();
    await until(() => /session closed here: this node's hold on session \S+ expired in the cluster's Redis/.test(a.output()), 'A closing the session whose hold it lost', 400);
    await until(() => !rigA.socket.connected, "A disconnecting the session's rig");
    assert.match(errorToRig, /^session \S+ was closed on this node \(.*\); resume it: events not acknowledged here were not recorded$/);
    const again = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 100 });
    assert.equal(again.load(sessionId).records.length, seqs.length + 1, 'nothing written by A after Redis came back (the log: the start and the seqs above)');
    again.close();
  } finally {
    rigA.close();
    rigB.close();
    await relay.close();
  }
});

test('a node whose hold lapsed closes an idle session without writing its index entry (the node that holds it owns that)', { timeout: 120_000 }, async () => {
  redis ??= await startRedis();
  const relay = await relayTo(redis.url);
  const dataDir = tmpDir();
  // a session without its rig closes after 1 s
  const a = await startNode({ redisUrl: relay.url, nodeId: 'idle-a', dataDir, configFile: clusterConfigFile({ limits: { idleSessionCloseS: 1 } }) });
  nodes.push(a);
  const rig = new RigClient({ url: a.url, token: TOKEN, ackTimeoutMs: 10_000, socket: { reconnection: false } });
  try {
    await rig.connect();
    const sessionId = await rig.startSession(sessionStart(C));
    await rig.onset(0, demoStimuli[0]!.id, 100);
    const metaState = () => {
      const r = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 100 });
      try {
        return r.meta(sessionId)?.state;
      } finally {
        r.close();
      }
    };
    assert.equal(metaState(), 'live');
    relay.cut();
    // the hold lapses 0.9 x 3 s after A's last renewal; the rig leaves only then, so the idle close comes after
    await new Promise((r) => setTimeout(r, 3000));
    rig.close();
    await until(() => /idle session closed here without updating its index entry: this node's hold on session \S+ .* is not current/.test(a.output()), "A's idle close with the hold lapsed", 400);
    assert.equal(metaState(), 'live', 'the index entry untouched (an idle close with the hold writes "interrupted")');
  } finally {
    rig.close();
    await relay.close();
  }
});
