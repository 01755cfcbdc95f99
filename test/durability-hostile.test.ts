/**
 * Hostile checks of the durability guarantees (issue 11), each a reproduction of something found by
 * attacking a real server on loopback: a resumed session's rebuild queue is bounded, a replay of a log
 * larger than a memory budget holds a bounded number of records, a stale lock whose pid now names an
 * unrelated live process is taken over, a damaged or lying checkpoint is ignored (resume reads the whole log).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { Recorder } from '../server/src/sinks/recorder.ts';
import { DataDirLockedError, lockDataDir, processStartTime } from '../server/src/storage/data-dir-lock.ts';
import { SessionStore } from '../server/src/sinks/session-store.ts';
import { applyFrame, createGuard, saveGuard } from '../server/src/sources/ingest-guard.ts';
import type { RecordSource } from '../server/src/sources/replay.ts';
import type { StoredItem } from '../server/src/storage/frame-record.ts';
import { demoStimuli, rawRig, send, sessionStart, startApp, testConfig, tmpDir, until } from './helpers.ts';

/** Writes a binned session of `trials` trials (onset, 400 bins of counts on 2 channels, offset); returns the last seq. */
/** A record source whose reads pass through `reader`, made anew for each `open` (the replay's reads, watched or failed). */
function observedSource(inner: RecordSource, reader: (fromIndex: number) => (next: () => IteratorResult<StoredItem>) => IteratorResult<StoredItem>): RecordSource {
  return {
    total: inner.total,
    open(fromIndex) {
      const it = inner.open(fromIndex);
      const read = reader(fromIndex);
      return {
        next: () => read(() => it.next() as IteratorResult<StoredItem>),
        return(v?: unknown) {
          return it.return?.(v as never) ?? { done: true, value: undefined };
        },
      };
    },
  };
}

function writeSession(rec: Recorder, id: string, trials: number, checkpoints = false): number {
  const start = { ...sessionStart(2), countsMode: 'binned' as const };
  const first = { type: 'session:start' as const, sessionId: id, startedAt: new Date().toISOString(), start: start as never, stimuli: demoStimuli };
  rec.create(first, 1, 'rig1');
  const guard = createGuard(id, first.start, demoStimuli);
  let seq = 0;
  for (let trial = 0; trial < trials; trial++) {
    const stim = demoStimuli[trial % 4].id;
    for (const f of [
      { type: 'stim:onset' as const, sessionId: id, seq: ++seq, trial, stimulusId: stim, tMs: trial * 400 + 100 },
      { type: 'counts:binned' as const, sessionId: id, seq: ++seq, startMs: trial * 400, binWidthMs: 1, nBins: 400, counts: new Uint16Array(800).fill(1) },
      { type: 'stim:offset' as const, sessionId: id, seq: ++seq, trial, stimulusId: stim, tMs: trial * 400 + 300 },
    ]) {
      rec.append({ atMs: trial, frame: f });
      applyFrame(guard, f);
      if (checkpoints) rec.maybeCheckpoint(id, seq + 1, () => saveGuard(guard));
    }
  }
  return seq;
}

/** The three events of one trial after `seq`, as the rig would send them. */
function trialEvents(id: string, trial: number, seq: number): [string, Record<string, unknown>][] {
  const stim = demoStimuli[trial % 4].id;
  return [
    ['stim:onset', { sessionId: id, seq: seq + 1, trial, stimulusId: stim, tMs: trial * 400 + 100 }],
    ['counts:binned', { sessionId: id, seq: seq + 2, startMs: trial * 400, binWidthMs: 1, nBins: 400, counts: Array.from({ length: 800 }, () => 1) }],
    ['stim:offset', { sessionId: id, seq: seq + 3, trial, stimulusId: stim, tMs: trial * 400 + 300 }],
  ];
}

test("events sent while a resumed session's statistics are rebuilt wait in a bounded queue: beyond it they are refused (no ack, nothing recorded) and accepted when resent", async () => {
  const dataDir = tmpDir();
  const rec = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
  const trials = 5000;
  const lastSeq = writeSession(rec, 'rebuild-queue', trials);
  rec.close();
  const t = await startApp({ dataDir, limits: { ...testConfig().limits, maxRebuildQueue: 4 } }, 0);
  try {
    const s = await rawRig(t.url);
    const r = await s.timeout(20_000).emitWithAck('session:resume', JSON.stringify({ sessionId: 'rebuild-queue' }));
    assert.equal(r.data?.lastSeq, lastSeq, JSON.stringify(r).slice(0, 500));
    const rt = t.app.store.get('rebuild-queue')!;
    assert.ok(Array.isArray(rt.pending), 'the rebuild of 15000 records is still running');
    // a burst of three trials, sent without waiting for acks
    const events = [...trialEvents('rebuild-queue', trials, lastSeq), ...trialEvents('rebuild-queue', trials + 1, lastSeq + 3), ...trialEvents('rebuild-queue', trials + 2, lastSeq + 6)];
    const acks = await Promise.all(events.map(([e, p]) => s.timeout(20_000).emitWithAck(e, JSON.stringify(p))));
    const accepted = acks.filter((a) => 'data' in a);
    assert.ok(rt.pending !== null || accepted.length === events.length, 'still rebuilding after the burst');
    assert.equal(accepted.length, 4, JSON.stringify(acks.map((a) => a.error?.code ?? 'ok')));
    assert.deepEqual(acks.slice(0, 4).map((a) => a.data?.seq), [lastSeq + 1, lastSeq + 2, lastSeq + 3, lastSeq + 4]);
    for (const a of acks.slice(4)) {
      assert.equal(a.error?.code, 'rate-limited');
      assert.match(a.error.message, /rebuilding its statistics from the log .*limits\.maxRebuildQueue 4.*resend from seq \d+/);
    }
    assert.ok(rt.pending!.length <= 4, 'no more than the limit waits in memory');
    // once the rebuild is through, the refused events are resent and accepted, with no gap
    await until(() => rt.pending === null, 'rebuild finished', 2000);
    for (const [e, p] of events.slice(4)) {
      const a = await s.timeout(20_000).emitWithAck(e, JSON.stringify(p));
      assert.ok('data' in a && !a.data.gap && !a.data.duplicate, JSON.stringify(a));
    }
    await until(() => rt.latest?.trialsCompleted === trials + 3, 'statistics count every trial, old and new', 2000);
    assert.equal(rt.guard?.seqGaps, 0);
    s.close();
  } finally {
    await t.close();
  }
  // every acknowledged event is in the log, in order, once
  const again = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
  const seqs: number[] = [];
  for (const v of again.items('rebuild-queue')) if ('item' in v && 'frame' in v.item && 'seq' in v.item.frame) seqs.push(v.item.frame.seq as number);
  assert.deepEqual(seqs.slice(-9), Array.from({ length: 9 }, (_, i) => lastSeq + 1 + i));
  assert.equal(seqs.length, lastSeq + 9);
});

test('a replay of a log larger than a memory budget holds a bounded number of records at any time', async () => {
  const dataDir = tmpDir();
  const rec = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
  const trials = 1500;
  writeSession(rec, 'big-replay', trials);
  rec.close();
  const budgetBytes = 256 * 1024;
  const logBytes = fs.statSync(rec.logFile('big-replay')).size;
  assert.ok(logBytes > 8 * budgetBytes, `the log (${logBytes} bytes) is well beyond the budget`);
  const inner = rec.source('big-replay');
  let held = 0;
  let maxHeld = 0;
  let largest = 0;
  const store = new SessionStore({ psthBinMs: 10 });
  const position = (): number | null => store.all().find((r) => r.kind === 'replay')?.replay?.position ?? null;
  // counts the records taken out of the log that the replay has not yet passed to its statistics
  const counted = observedSource(inner, (fromIndex) => {
    let read = 0;
    return (next) => {
      const step = next();
      const at = position();
      if (!step.done && at !== null) {
        read++;
        largest = Math.max(largest, JSON.stringify(step.value, (_k, v) => (ArrayBuffer.isView(v) ? Array.from(v as Uint16Array) : v)).length);
        held = fromIndex + read - at;
        maxHeld = Math.max(maxHeld, held);
      }
      return step;
    };
  });
  const rt = store.startReplay('big-replay', counted, Infinity);
  await until(() => rt.replay!.done, 'replay done', 2000);
  assert.equal(rt.replay!.position, inner.total);
  assert.equal(rt.latest?.trialsCompleted, trials);
  assert.ok(maxHeld <= 2, `records held at once: ${maxHeld}`);
  assert.ok(maxHeld * largest < budgetBytes, `${maxHeld} records of up to ${largest} bytes fit the budget`);
  store.remove(rt);
});

test('a data folder lock whose pid now belongs to an unrelated live process (pid reused after a crash) is taken over; the live owner itself still holds it', async (t) => {
  const dir = tmpDir();
  const file = path.join(dir, 'server.pid');
  const other = spawn('sleep', ['30']);
  t.after(() => other.kill());
  await new Promise((r) => other.once('spawn', r));
  const pid = other.pid!;
  const started = processStartTime(pid);
  assert.ok(started, 'the start time of a live process is readable');
  // the lock names the pid with its real start time: that process holds the folder
  fs.writeFileSync(file, `${pid} ${started}\n`);
  assert.throws(() => lockDataDir(dir), (e: unknown) => e instanceof DataDirLockedError && e.pid === pid);
  // the pid with another start time: the server that wrote it is gone, the pid was reused
  fs.writeFileSync(file, `${pid} ${Number(started) + 1}\n`);
  let lock = lockDataDir(dir);
  assert.deepEqual(fs.readFileSync(file, 'utf8').trim().split(' '), [String(process.pid), processStartTime(process.pid)]);
  lock.release();
  // a bare pid (older form) of a live process that is not a node server: stale
  fs.writeFileSync(file, `${pid}\n`);
  lock = lockDataDir(dir);
  lock.release();
  // garbage in the lock file: taken over, replaced by a well-formed lock
  fs.writeFileSync(file, Buffer.from([0x00, 0xff, 0x31, 0x0a]));
  lock = lockDataDir(dir);
  assert.match(fs.readFileSync(file, 'utf8'), /^\d+ \d+\n$/);
  lock.release();
  assert.equal(fs.existsSync(file), false);
});

for (const [what, spoil] of [
  ['claims a later seq than its log holds', (cp: { state: { lastSeq: number; lastAcceptedSeq: number } }) => Object.assign(cp.state, { lastSeq: 1e9, lastAcceptedSeq: 1e9 })],
  ['holds no ingest state', (cp: { state: unknown }) => Object.assign(cp, { state: null })],
  ['is not JSON', null],
] as const) {
  test(`a checkpoint that ${what} is ignored: resume reads the whole log, reports the true last seq and records the next event`, async () => {
    const dataDir = tmpDir();
    const rec = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000, checkpointEveryBytes: 2000 });
    const lastSeq = writeSession(rec, 'cp-lies', 10, true);
    rec.close();
    const file = path.join(dataDir, 'sessions', 'cp-lies', 'checkpoint.json');
    assert.ok(rec.checkpoint('cp-lies'), 'a checkpoint was written and matches its log');
    if (spoil) {
      const cp = JSON.parse(fs.readFileSync(file, 'utf8'));
      spoil(cp);
      fs.writeFileSync(file, JSON.stringify(cp));
    } else fs.writeFileSync(file, '{"offset": 12, "sta');
    const t = await startApp({ dataDir });
    try {
      const s = await rawRig(t.url);
      const r = await send(s, 'session:resume', { sessionId: 'cp-lies' });
      assert.equal(r.data?.lastSeq, lastSeq, JSON.stringify(r));
      assert.ok(t.logs.some((l) => /checkpoint ignored, resume reads the whole log/.test(String(l.msg))));
      const next = await send(s, 'stim:onset', { sessionId: 'cp-lies', seq: lastSeq + 1, trial: 500, stimulusId: demoStimuli[0].id, tMs: 99_000 });
      assert.equal(next.data?.duplicate, false, JSON.stringify(next));
      s.close();
    } finally {
      await t.close();
    }
    const seqs: number[] = [];
    for (const v of new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000 }).items('cp-lies')) if ('item' in v && 'frame' in v.item && 'seq' in v.item.frame) seqs.push(v.item.frame.seq as number);
    assert.equal(seqs.at(-1), lastSeq + 1, 'the acknowledged event is in the log');
  });
}

test('damage in the first record (session:start): the session stays listed and its readable records replay, headed by the copy of its start record', async () => {
  const dataDir = tmpDir();
  const rec = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
  writeSession(rec, 'first-damaged', 10);
  rec.close();
  const file = rec.logFile('first-damaged');
  const buf = fs.readFileSync(file);
  buf[40] ^= 0x01; // inside the session:start record
  fs.writeFileSync(file, buf);
  fs.rmSync(path.join(dataDir, 'sessions', 'first-damaged', 'meta.json'));
  const logs: string[] = [];
  const again = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000, log: (_l, msg) => logs.push(msg) });
  const health = again.health('first-damaged');
  assert.equal(health.damage[0]?.fromByte, 0);
  assert.equal(health.damage[0]?.beforeSeq, 1);
  const meta = again.list().find((m) => m.sessionId === 'first-damaged');
  assert.equal(meta?.state, 'damaged', JSON.stringify(logs));
  assert.equal(meta?.channels, 2);
  const store = new SessionStore({ psthBinMs: 10 });
  const src = again.source('first-damaged');
  assert.equal(src.total, 31, 'the saved start record and the 30 readable records');
  const rt = store.startReplay('first-damaged', src, Infinity);
  await until(() => rt.replay!.done, 'replay done', 2000);
  assert.equal(rt.latest?.trialsCompleted, 10);
  store.remove(rt);
});

test('a log damaged in the middle whose meta.json is lost is listed as damaged (its meta rebuilt once, not recursively) and the server starts', async () => {
  const dataDir = tmpDir();
  const rec = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
  writeSession(rec, 'middle-damaged', 10);
  rec.close();
  const file = rec.logFile('middle-damaged');
  const buf = fs.readFileSync(file);
  buf[Math.floor(buf.length / 2)] ^= 0x01;
  fs.writeFileSync(file, buf);
  fs.rmSync(path.join(dataDir, 'sessions', 'middle-damaged', 'meta.json'));
  const t = await startApp({ dataDir });
  try {
    const meta = t.app.recorder.list().find((m) => m.sessionId === 'middle-damaged');
    assert.equal(meta?.state, 'damaged');
    assert.equal(meta?.damaged?.length, 1);
    assert.ok(t.logs.some((l) => /rebuilt from the log/.test(String(l.msg))));
  } finally {
    await t.close();
  }
});

test('a disk fault while an idle session is closed by its timer is logged, the server keeps running, the session resumes', async () => {
  const t = await startApp({ limits: { ...testConfig().limits, idleSessionCloseS: 1 } });
  try {
    const s = await rawRig(t.url);
    const id = (await send(s, 'session:start', sessionStart(2))).data.sessionId as string;
    assert.ok('data' in (await send(s, 'stim:onset', { sessionId: id, seq: 1, trial: 0, stimulusId: demoStimuli[0].id, tMs: 100 })));
    // meta.json cannot be rewritten (its temporary file's name is taken by a folder: EISDIR, as root too)
    const tmp = path.join(t.app.recorder.root, id, 'meta.json.tmp');
    fs.mkdirSync(tmp);
    s.close();
    await until(() => t.logs.some((l) => /idle session closed, but its index entry could not be updated/.test(String(l.msg))), 'the failure is logged', 200);
    assert.equal(t.app.recorder.isOpen(id), false, 'the log is closed');
    fs.rmdirSync(tmp);
    const s2 = await rawRig(t.url);
    assert.equal((await send(s2, 'session:resume', { sessionId: id })).data?.lastSeq, 1);
    s2.close();
  } finally {
    await t.close();
  }
});

test("another rig's refused attempts on a session do not count in that session's rejections (the dashboard's figures stay the owner's)", async () => {
  const t = await startApp({ rigTokens: { 'tok-a': 'A', 'tok-b': 'B' } as never });
  try {
    const a = await rawRig(t.url, 'tok-a');
    const b = await rawRig(t.url, 'tok-b');
    const id = (await send(a, 'session:start', sessionStart(2))).data.sessionId as string;
    for (let seq = 1; seq <= 5; seq++) assert.equal((await send(b, 'stim:onset', { sessionId: id, seq, trial: seq, stimulusId: demoStimuli[0].id, tMs: seq * 100 })).error?.code, 'not-owner');
    assert.equal((await send(b, 'session:end', { sessionId: id, seq: 6 })).error?.code, 'not-owner');
    assert.equal((await send(a, 'stim:onset', { sessionId: id, seq: 1, trial: 1, stimulusId: demoStimuli[0].id, tMs: 100 })).data?.duplicate, false);
    assert.equal((await send(a, 'stim:offset', { sessionId: id, seq: 2, trial: 9, stimulusId: demoStimuli[0].id, tMs: 300 })).error?.code, 'bad-trial-state');
    await until(() => t.app.store.get(id)?.rejected['bad-trial-state'], "the owner's own rejection is counted");
    assert.deepEqual(t.app.store.get(id)?.rejected, { 'bad-trial-state': 1 });
    a.close();
    b.close();
  } finally {
    await t.close();
  }
});

test('a fault inside a session pipeline (the log fails to read mid-replay) is reported on the session, not thrown to the process', async () => {
  const dataDir = tmpDir();
  const rec = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
  writeSession(rec, 'eio-replay', 40);
  rec.close();
  const inner = rec.source('eio-replay');
  const failing = observedSource(inner, () => {
    let read = 0;
    return (next) => {
      if (++read > 30) throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
      return next();
    };
  });
  const reported: string[] = [];
  const store = new SessionStore({ psthBinMs: 10, onPipelineError: (_rt, message) => reported.push(message) });
  const rt = store.startReplay('eio-replay', failing, Infinity);
  await until(() => reported.length > 0, 'pipeline error reported', 2000);
  assert.match(reported[0]!, /EIO/);
  assert.match(rt.pipelineError ?? '', /EIO/);
  assert.ok((rt.latest?.trialsCompleted ?? 0) > 0, 'statistics up to the fault are kept');
  // the process is still here and the store still serves other sessions
  const ok = store.startReplay('eio-replay', inner, Infinity);
  await until(() => ok.replay!.done, 'second replay done', 2000);
  assert.equal(ok.latest?.trialsCompleted, 40);
  store.remove(rt);
  store.remove(ok);
});
