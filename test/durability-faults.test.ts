/**
 * Faults on real files: a full disk (ENOSPC, short writes) and a broken one (EIO) through the recorder's
 * injectable file calls, the free-space reserve, a flipped bit inside a log, a truncated meta.json, a
 * second server on one data folder, another rig's token, an absurd seq, a junk frame, a throwing handler.
 * Each checks: no acknowledged event lost, a clear error to the sender, the process alive.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { encodePayload } from '@sharedlens/shared';
import { Recorder } from '../server/src/sinks/recorder.ts';
import { LogWriter, encodeRecord, realFileOps, StorageError, type FileOps } from '../server/src/storage/session-log.ts';
import { OfflineStats } from '../server/src/sessions/offline-stats.ts';
import { checkLog } from '../server/src/storage/log-scan.ts';
import { precheckBytes } from '../server/src/sources/cheap-checks.ts';
import { applyFrame, createGuard, saveGuard } from '../server/src/sources/ingest-guard.ts';
import { DataDirLockedError, lockDataDir } from '../server/src/storage/data-dir-lock.ts';
import { dashboardSocket, demoStimuli, getJson, rawRig, root, send, sessionStart, spawnedServerUrl, startApp, testConfig, tmpDir, TOKEN, until } from './helpers.ts';
import { dashboardEvents } from '@sharedlens/shared';

const enospc = (): Error => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
const eio = (): Error => Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
/** Writes half of what it is given, then fails as a full disk does. */
const fullDisk: FileOps = {
  ...realFileOps,
  writeSync: (() => {
    let half = true;
    return (fd: number, buf: Uint8Array, off: number, len: number) => {
      if (half) {
        half = false;
        return realFileOps.writeSync(fd, buf, off, Math.max(1, len >> 1));
      }
      half = true;
      throw enospc();
    };
  })(),
};

test('a failed or short append leaves the log at its last whole record; the writer recovers when space returns', () => {
  const file = path.join(tmpDir(), 'log.bin');
  fs.writeFileSync(file, '');
  let ops: FileOps = realFileOps;
  const w = new LogWriter(file, 'interval', 60_000, undefined, { ops: { writeSync: (...a) => ops.writeSync(...a), fdatasyncSync: (fd) => ops.fdatasyncSync(fd), ftruncateSync: (fd, l) => ops.ftruncateSync(fd, l), freeBytes: (d) => ops.freeBytes(d) } });
  w.append({ atMs: 1 });
  const whole = fs.statSync(file).size;
  ops = fullDisk;
  assert.throws(() => w.append({ atMs: 2, pad: 'x'.repeat(5000) }), (e: unknown) => e instanceof StorageError && e.code === 'ENOSPC');
  assert.equal(fs.statSync(file).size, whole, 'half record cut back');
  // a short write of 0 bytes is a failure too, and a cut that fails is redone before the next append
  let cutFails = true;
  ops = { ...realFileOps, writeSync: () => 0, ftruncateSync: (fd, l) => (cutFails ? (() => { throw eio(); })() : realFileOps.ftruncateSync(fd, l)) };
  assert.throws(() => w.append({ atMs: 3 }), /short write/);
  assert.equal(w.fault !== null, true);
  cutFails = false;
  ops = realFileOps;
  w.append({ atMs: 4 });
  // the free-space reserve refuses before the disk is full
  ops = { ...realFileOps, freeBytes: () => 1000 };
  const reserved = new LogWriter(file, 'never', 1000, undefined, { ops: { ...ops }, minFreeBytes: 4096 });
  assert.throws(() => reserved.append({ atMs: 5 }), /disk nearly full: 1000 bytes free.*reserve of 4096/);
  reserved.close();
  // an fsync that fails in interval mode is never thrown from the timer; appends are refused until a sync works
  let syncFails = true;
  const errors: string[] = [];
  const s = new LogWriter(file, 'interval', 60_000, undefined, { ops: { ...realFileOps, fdatasyncSync: (fd) => (syncFails ? (() => { throw eio(); })() : realFileOps.fdatasyncSync(fd)) }, onSyncError: (m) => errors.push(m) });
  s.append({ atMs: 6 });
  assert.doesNotThrow(() => s.sync());
  assert.match(errors[0], /fsync of the session log failed \(EIO\)/);
  assert.throws(() => s.append({ atMs: 7 }), /refused until the disk accepts a sync/);
  syncFails = false;
  s.append({ atMs: 8 });
  s.close();
  w.close();
  const c = checkLog(file);
  assert.equal(c.tornBytes, 0);
  assert.deepEqual(c.damaged, []);
  assert.equal(c.records, 4, 'atMs 1, 4, 6, 8: every append that returned is in the log, no other');
});

test('disk full on the server: storage error, no ack, nothing half-written; after space returns every acknowledged event replays and resume continues the same log', async () => {
  const dataDir = tmpDir();
  let t = await startApp({ dataDir });
  const acked: number[] = [];
  const C = 2;
  const s = await rawRig(t.url);
  const id = (await send(s, 'session:start', sessionStart(C))).data.sessionId as string;
  let seq = 0;
  const ev = (n: number) => ({ sessionId: id, seq: n, startMs: n * 10, binWidthMs: 1, counts: new Uint16Array(10 * C).fill(1) });
  for (let i = 0; i < 5; i++) {
    const a = await send(s, 'counts:binned', ev(++seq));
    assert.ok('data' in a);
    acked.push(seq);
  }
  const file = t.app.recorder.logFile(id);
  const before = fs.statSync(file).size;
  t.app.recorder.fileOps = fullDisk;
  const failed = await send(s, 'counts:binned', ev(seq + 1));
  assert.equal(failed.error?.code, 'storage', JSON.stringify(failed));
  assert.match(failed.error.message, /ENOSPC/);
  assert.equal(fs.statSync(file).size, before, 'no half record left behind');
  assert.equal((await getJson(`${t.url}/api/health`)).body.status, 'ok');
  t.app.recorder.fileOps = realFileOps;
  // the rig resends the same seq, as the protocol says, then 20 more
  for (let i = 0; i < 21; i++) {
    const a = await send(s, 'counts:binned', ev(++seq));
    assert.ok('data' in a && !a.data.duplicate, JSON.stringify(a));
    acked.push(seq);
  }
  s.close();
  await t.close();
  const recorded = () => new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000 }).load(id).records.flatMap((r) => ('seq' in r.frame && r.frame.seq ? [r.frame.seq] : []));
  assert.deepEqual(recorded(), acked);
  // a new server process resumes the same log: nothing cut
  t = await startApp({ dataDir });
  try {
    const sizeBefore = fs.statSync(file).size;
    const s2 = await rawRig(t.url);
    const r = await send(s2, 'session:resume', { sessionId: id });
    assert.equal(r.data.lastSeq, acked.at(-1));
    assert.equal(fs.statSync(file).size, sizeBefore);
    assert.ok('data' in (await send(s2, 'counts:binned', ev(++seq))));
    acked.push(seq);
    s2.close();
  } finally {
    await t.close();
  }
  assert.deepEqual(recorded(), acked);
});

test('the free-space reserve refuses events on the rig and tells the dashboard', async () => {
  const t = await startApp();
  try {
    const s = await rawRig(t.url);
    const id = (await send(s, 'session:start', sessionStart(2))).data.sessionId as string;
    t.app.recorder.fileOps = { ...realFileOps, freeBytes: () => 10 };
    // the writer opened with the configured reserve (recording.minFreeBytes): a new writer picks it up on resume
    (t.app.recorder as unknown as { opts: { minFreeBytes: number } }).opts.minFreeBytes = 1 << 20;
    t.app.recorder.close1(id);
    t.app.store.remove(t.app.store.get(id)!);
    assert.ok('data' in (await send(s, 'session:resume', { sessionId: id })));
    const a = await send(s, 'stim:onset', { sessionId: id, seq: 1, trial: 0, stimulusId: demoStimuli[0].id, tMs: 5 });
    assert.equal(a.error?.code, 'storage');
    assert.match(a.error.message, /disk nearly full: 10 bytes free/);
    await until(() => t.app.rejectedCounts.byCode.storage === 1, 'counted as a rejection (the dashboard gets input:rejected)');
    s.close();
  } finally {
    await t.close();
  }
});

test('a flipped bit inside a log: never cut, session damaged with the unreadable seq range, replay reads both sides, resume refused', async () => {
  const dataDir = tmpDir();
  let t = await startApp({ dataDir });
  const s = await rawRig(t.url);
  const id = (await send(s, 'session:start', sessionStart(2))).data.sessionId as string;
  for (let seq = 1; seq <= 40; seq++) assert.ok('data' in (await send(s, 'counts:binned', { sessionId: id, seq, startMs: seq * 10, binWidthMs: 1, counts: new Uint16Array(20).fill(seq) })));
  s.close();
  await t.close();
  const file = path.join(dataDir, 'sessions', id, 'log.bin');
  const buf = fs.readFileSync(file);
  buf[Math.floor(buf.length / 2)] ^= 0x04;
  fs.writeFileSync(file, buf);
  t = await startApp({ dataDir });
  try {
    const s2 = await rawRig(t.url);
    const r = await send(s2, 'session:resume', { sessionId: id });
    assert.equal(r.error?.code, 'storage');
    assert.match(r.error.message, /damaged log \(unreadable: seq \d+\.\.\d+/);
    assert.deepEqual(fs.readFileSync(file), buf, 'the file is untouched');
    assert.equal(t.app.recorder.meta(id)?.state, 'damaged');
    const h = t.app.recorder.health(id);
    assert.equal(h.damage.length, 1);
    assert.equal(h.damage[0].beforeSeq! - h.damage[0].afterSeq!, 2, 'exactly one event unreadable');
    const { records } = t.app.recorder.load(id);
    assert.equal(records.length, 40, 'session:start and 39 of 40 events: both sides of the damage');
    // a dashboard replay runs over both sides too
    const dash = dashboardSocket(t);
    const rep = await dash.timeout(5000).emitWithAck(dashboardEvents.sessionReplay, { sessionId: id, speed: 'max' });
    assert.equal(rep.data.records, 40);
    dash.close();
    s2.close();
  } finally {
    await t.close();
  }
  // npm run verify reports it, with the unreadable range, and exits 1
  const v = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'server/src/verify-cli.ts')], { cwd: root, env: { ...process.env, DATA_DIR: dataDir }, encoding: 'utf8' });
  assert.equal(v.status, 1, v.stderr);
  assert.match(v.stdout, new RegExp(`${id}\\s+DAMAGED\\s+40 records`));
  assert.match(v.stdout, /unreadable: seq \d+\.\.\d+ \(bytes \d+-\d+\)/);
});

test('a truncated meta.json is rebuilt from the log with a log line; the session stays listed', async () => {
  const dataDir = tmpDir();
  const t = await startApp({ dataDir });
  const s = await rawRig(t.url);
  const id = (await send(s, 'session:start', sessionStart(2))).data.sessionId as string;
  assert.ok('data' in (await send(s, 'stim:onset', { sessionId: id, seq: 1, trial: 0, stimulusId: demoStimuli[0].id, tMs: 5 })));
  s.close();
  await t.close();
  const metaFile = path.join(dataDir, 'sessions', id, 'meta.json');
  fs.writeFileSync(metaFile, fs.readFileSync(metaFile, 'utf8').slice(0, 20));
  const lines: string[] = [];
  const rec = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000, log: (_l, msg) => lines.push(msg) });
  const listed = rec.list().find((m) => m.sessionId === id);
  assert.equal(listed?.state, 'interrupted');
  assert.equal(listed?.owner, 'rig1');
  assert.equal(listed?.records, 2);
  assert.ok(lines.some((l) => /rebuilt from the log/.test(l)));
  assert.equal(JSON.parse(fs.readFileSync(metaFile, 'utf8')).sessionId, id, 'meta.json rewritten');
});

test('one server per data folder: a live lock refuses naming the pid, a stale one is taken over', async () => {
  const dir = tmpDir();
  const file = path.join(dir, 'server.pid');
  fs.writeFileSync(file, `${process.pid}\n`);
  assert.throws(() => lockDataDir(dir, 999_999_999), (e: unknown) => e instanceof DataDirLockedError && e.pid === process.pid && new RegExp(`pid ${process.pid}`).test(e.message));
  const dead = spawn(process.execPath, ['-e', '0']);
  await new Promise((r) => dead.once('exit', r));
  fs.writeFileSync(file, `${dead.pid}\n`);
  const lock = lockDataDir(dir);
  assert.equal(fs.readFileSync(file, 'utf8').split(' ')[0].trim(), String(process.pid));
  lock.release();
  assert.equal(fs.existsSync(file), false);
  // two real servers on one folder: the second refuses and names the first
  const dataDir = tmpDir();
  const env = { ...process.env, PORT: '0', DEMO: '0', DATA_DIR: dataDir, RIG_TOKENS: TOKEN, LOG_LEVEL: 'warn', FEATURES: '0' };
  const first = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'server/src/main.ts')], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  first.stdout.on('data', (d) => (out += d));
  first.stderr.on('data', (d) => (out += d));
  try {
    await spawnedServerUrl(first, () => out, 'the first server');
    const second = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'server/src/main.ts')], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    second.stderr.on('data', (d) => (err += d));
    const code = await new Promise((r) => second.once('exit', r));
    assert.equal(code, 3);
    assert.match(err, new RegExp(`in use by another sharedlens server \\(pid ${first.pid}`));
    assert.equal(first.exitCode, null, 'the first server is untouched');
  } finally {
    first.kill('SIGTERM');
    await new Promise((r) => first.once('exit', r));
  }
});

test("another rig's token cannot write, resume or end a session; an absurd seq is refused, not a gap; replay counts rejections and gaps as live did", async () => {
  const TOKEN_B = 'second-rig-token';
  const t = await startApp({ rigTokens: { [TOKEN]: 'rig-a', [TOKEN_B]: 'rig-b' } });
  try {
    const a = await rawRig(t.url);
    const b = await rawRig(t.url, TOKEN_B);
    const id = (await send(a, 'session:start', sessionStart(2))).data.sessionId as string;
    assert.equal(t.app.recorder.meta(id)?.owner, 'rig-a');
    const onset = (seq: number, trial: number) => ({ sessionId: id, seq, trial, stimulusId: demoStimuli[0].id, tMs: trial * 100 });
    assert.ok('data' in (await send(a, 'stim:onset', onset(1, 0))));
    for (const [event, body] of [['stim:onset', onset(2, 1)], ['session:end', { sessionId: id, seq: 2 }], ['session:resume', { sessionId: id }]] as const) {
      const r = await send(b, event, body);
      assert.equal(r.error?.code, 'not-owner', `${event}: ${JSON.stringify(r)}`);
      assert.match(r.error.message, /belongs to rig "rig-a"/);
    }
    const huge = await send(a, 'stim:onset', onset(2 ** 53 - 1, 1));
    assert.equal(huge.error?.code, 'bad-sequence');
    assert.match(huge.error.message, /resend from 2/);
    const next = await send(a, 'stim:onset', onset(2, 1));
    assert.deepEqual(next.data, { seq: 2, duplicate: false }, 'the real next event is recorded, not a duplicate');
    // one rejected event (a second onset of trial 1) and one gap (seq 4 skipped)
    assert.equal((await send(a, 'stim:onset', onset(3, 1))).error?.code, 'bad-trial-state');
    assert.deepEqual((await send(a, 'trial:abort', { sessionId: id, seq: 5, trial: 1 })).data.gap, { from: 4, to: 4 });
    assert.ok('data' in (await send(a, 'session:end', { sessionId: id, seq: 6 })));
    const live = t.app.store.snapshot(t.app.store.get(id)!, false);
    const dash = dashboardSocket(t);
    const rep = await dash.timeout(5000).emitWithAck(dashboardEvents.sessionReplay, { sessionId: id, speed: 'max' });
    await until(() => t.app.store.get(rep.data.replayId)?.replay?.done, 'replay done');
    const replayed = t.app.store.snapshot(t.app.store.get(rep.data.replayId)!, false)!;
    assert.deepEqual(replayed.rejected, { 'bad-trial-state': 1 });
    assert.equal(replayed.seqGaps, 1);
    assert.equal(live?.seqGaps, 1);
    dash.close();
    a.close();
    b.close();
  } finally {
    await t.close();
  }
});

test('a session over the memory budget is refused with its size; a 4 MiB junk frame is refused by the cheap checks; thrown handler errors become error answers', async () => {
  const t = await startApp({ limits: { ...testConfig().limits, maxPayloadBytes: 4 * 1024 * 1024, sessionMemoryBytes: 1024 * 1024 } });
  try {
    const s = await rawRig(t.url);
    const big = await send(s, 'session:start', sessionStart(2048));
    assert.equal(big.error?.code, 'too-large');
    assert.match(big.error.message, /would need \d+ bytes \(2048 channels x 72 stimuli/);
    const id = (await send(s, 'session:start', sessionStart(2))).data.sessionId as string;
    const junk = encodePayload({ sessionId: id, seq: 1, startMs: 0, binWidthMs: 1, counts: Array.from({ length: 2_000_000 }, (_, i) => String.fromCharCode(97 + (i % 26))) });
    assert.ok(junk.byteLength > 3.5 * 1024 * 1024 && junk.byteLength <= 4 * 1024 * 1024, `${junk.byteLength} bytes`);
    const j = await send(s, 'counts:binned', junk, true);
    assert.equal(j.error?.code, 'invalid');
    assert.match(j.error.message, /more than 100000 values other than numbers/);
    // the same junk as JSON text is caught after parsing, before the schema
    const jt = await send(s, 'counts:binned', JSON.stringify({ sessionId: id, seq: 1, startMs: 0, binWidthMs: 1, counts: ['a', 'b'] }), true);
    assert.match(jt.error.message, /counts\[0\] is a string, not a number/);
    // a fault inside a rig handler and inside a dashboard handler: error answers, the server keeps running
    const get = t.app.store.get.bind(t.app.store);
    t.app.store.get = () => {
      throw new Error('injected fault');
    };
    const r = await send(s, 'stim:onset', { sessionId: id, seq: 1, trial: 0, stimulusId: demoStimuli[0].id, tMs: 5 });
    assert.match(r.error?.message, /the server failed on this event \(injected fault\)/);
    t.app.store.get = get;
    const source = t.app.recorder.source.bind(t.app.recorder);
    t.app.recorder.source = () => {
      throw new Error('EIO: i/o error, read');
    };
    const dash = dashboardSocket(t);
    const rep = await dash.timeout(5000).emitWithAck(dashboardEvents.sessionReplay, { sessionId: id, speed: 'max' });
    assert.equal(rep.error?.code, 'storage');
    assert.match(rep.error.message, /EIO/);
    t.app.recorder.source = source;
    assert.ok('data' in (await send(s, 'stim:onset', { sessionId: id, seq: 1, trial: 0, stimulusId: demoStimuli[0].id, tMs: 5 })), 'the same event goes through once the fault is gone');
    assert.equal((await getJson(`${t.url}/api/health`)).body.status, 'ok');
    dash.close();
    s.close();
  } finally {
    await t.close();
  }
});

test('an HTTP handler that fails answers with an error and the server keeps running', async () => {
  const dataDir = tmpDir();
  let t = await startApp({ dataDir });
  const s = await rawRig(t.url);
  const id = (await send(s, 'session:start', sessionStart(2))).data.sessionId as string;
  s.close();
  await t.close();
  // the log becomes unreadable (a folder where the file was): the offline statistics worker fails
  const file = path.join(dataDir, 'sessions', id, 'log.bin');
  fs.rmSync(file);
  fs.mkdirSync(file);
  t = await startApp({ dataDir });
  try {
    const r = await getJson(`${t.url}/api/sessions/${id}/stats`);
    assert.equal(r.status, 500);
    assert.match(r.body.error.message, /offline statistics failed: EISDIR/);
    assert.equal((await getJson(`${t.url}/api/health`)).body.status, 'ok');
  } finally {
    await t.close();
  }
});

test('sessions are capped per rig and in total', async () => {
  const t = await startApp({ limits: { ...testConfig().limits, maxSessionsPerRig: 1, maxSessions: 2 }, rigTokens: { [TOKEN]: 'rig-a', 'second-rig-token': 'rig-b', 'third-rig-token': 'rig-c' } });
  try {
    const [a, b, c] = await Promise.all([rawRig(t.url), rawRig(t.url, 'second-rig-token'), rawRig(t.url, 'third-rig-token')]);
    assert.ok('data' in (await send(a, 'session:start', sessionStart(2))));
    const again = await send(a, 'session:start', sessionStart(2));
    assert.equal(again.error?.code, 'too-large');
    assert.match(again.error.message, /rig "rig-a" has 1 sessions open, its limit \(limits.maxSessionsPerRig\)/);
    assert.ok('data' in (await send(b, 'session:start', sessionStart(2))));
    const third = await send(c, 'session:start', sessionStart(2));
    assert.match(third.error?.message, /2 sessions are open, the server's limit \(limits.maxSessions\)/);
    for (const s of [a, b, c]) s.close();
  } finally {
    await t.close();
  }
});

test('the byte-level cheap check passes every well-formed rig payload and stops junk before decoding', () => {
  const ok = [
    sessionStart(8192),
    { sessionId: 's', seq: 1, startMs: 0, binWidthMs: 1, counts: new Uint16Array(1000 * 384) },
    { sessionId: 's', seq: 2, startMs: 0, binWidthMs: 1, counts: Array.from({ length: 50_000 }, (_, i) => i % 65_536) },
    { sessionId: 's', seq: 3, trial: 1, responseCounts: [1.5, -2, 1e300, 0], baselineCounts: [0, 0, 0, 0] },
    { sessionId: 's', seq: 4, trial: 1, reason: 'x'.repeat(300), nested: { a: [null, true, false, -1, -40_000, 2 ** 40, 'é'] } },
  ];
  for (const v of ok) assert.equal(precheckBytes(encodePayload(v)), null, JSON.stringify(v).slice(0, 80));
  assert.match(precheckBytes(encodePayload({ counts: Array.from({ length: 200_000 }, () => 'a') }))!, /more than 100000 values other than numbers/);
  assert.match(precheckBytes(encodePayload({ a: [[[[[[[[[[1]]]]]]]]]] }))!, /nested deeper than 8 levels/);
  assert.match(precheckBytes(encodePayload({ s: 'x'.repeat(20_000) }))!, /a string of 20000 bytes/);
  // truncated or reserved bytes are left to the decoder, which answers malformed
  assert.equal(precheckBytes(Uint8Array.from([0xdd, 0xff, 0xff, 0xff, 0xff])), null);
  assert.equal(precheckBytes(Uint8Array.from([0xc1])), null);
});

test('offline statistics of a recorded session run in a worker thread, match the live ones (rejections and gaps included) and are cached per log version', async () => {
  const dataDir = tmpDir();
  let t = await startApp({ dataDir });
  const s = await rawRig(t.url);
  const id = (await send(s, 'session:start', sessionStart(3))).data.sessionId as string;
  let seq = 0;
  for (let trial = 0; trial < 6; trial++) {
    const stim = demoStimuli[trial % 4].id;
    assert.ok('data' in (await send(s, 'stim:onset', { sessionId: id, seq: ++seq, trial, stimulusId: stim, tMs: trial * 400 + 100 })));
    assert.ok('data' in (await send(s, 'counts:binned', { sessionId: id, seq: ++seq, startMs: trial * 400, binWidthMs: 1, counts: new Uint16Array(400 * 3).fill(trial % 3) })));
    assert.ok('data' in (await send(s, 'stim:offset', { sessionId: id, seq: ++seq, trial, stimulusId: stim, tMs: trial * 400 + 300 })));
  }
  assert.equal((await send(s, 'stim:offset', { sessionId: id, seq: ++seq, trial: 99, stimulusId: demoStimuli[0].id, tMs: 9999 })).error?.code, 'bad-trial-state');
  seq++;
  assert.ok('data' in (await send(s, 'session:end', { sessionId: id, seq: ++seq })));
  await until(() => t.app.store.get(id)?.latest?.trialsCompleted === 6, 'live trials');
  const live = (await getJson(`${t.url}/api/sessions/${id}/stats?detail=1`)).body;
  s.close();
  await t.close();
  t = await startApp({ dataDir });
  try {
    const offline = (await getJson(`${t.url}/api/sessions/${id}/stats?detail=1`)).body;
    assert.deepEqual(offline.channels, live.channels);
    assert.deepEqual(offline.stimuli, live.stimuli);
    assert.deepEqual(offline.rejected, { 'bad-trial-state': 1 });
    assert.equal(offline.seqGaps, 1);
    assert.equal(offline.trialsCompleted, 6);
  } finally {
    await t.close();
  }
  const rec = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
  const stats = new OfflineStats(rec, { psthBinMs: 10 });
  const [a, b] = await Promise.all([stats.snapshot(id, false), stats.snapshot(id, true)]);
  assert.equal(a!.trialsCompleted, 6);
  assert.ok(b!.psth);
  await stats.snapshot(id, false);
  assert.equal(stats.runs, 1, 'shared and cached: one worker run');
  fs.appendFileSync(rec.logFile(id), encodeRecord({ atMs: 1, note: { kind: 'gap', sessionId: id, seq: 100, from: 90, to: 99 } }));
  assert.equal((await stats.snapshot(id, false))!.seqGaps, 2, 'a new log version is computed again');
  assert.equal(stats.runs, 2);
});

test('resume reads only past the latest checkpoint; the statistics are rebuilt in the background and damage before the checkpoint is logged there', async () => {
  const dataDir = tmpDir();
  const rec = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000, checkpointEveryBytes: 2000 });
  const start = { ...sessionStart(2), countsMode: 'binned' as const };
  const first = { type: 'session:start' as const, sessionId: 'cp-session', startedAt: new Date().toISOString(), start: start as never, stimuli: demoStimuli };
  rec.create(first, 1, 'rig1');
  const guard = createGuard('cp-session', first.start, demoStimuli);
  let seq = 0;
  for (let trial = 0; trial < 30; trial++) {
    const stim = demoStimuli[trial % 4].id;
    for (const f of [
      { type: 'stim:onset' as const, sessionId: 'cp-session', seq: ++seq, trial, stimulusId: stim, tMs: trial * 400 + 100 },
      { type: 'counts:binned' as const, sessionId: 'cp-session', seq: ++seq, startMs: trial * 400, binWidthMs: 1, nBins: 400, counts: new Uint16Array(800).fill(1) },
      { type: 'stim:offset' as const, sessionId: 'cp-session', seq: ++seq, trial, stimulusId: stim, tMs: trial * 400 + 300 },
    ]) {
      rec.append({ atMs: 1, frame: f });
      applyFrame(guard, f);
      rec.maybeCheckpoint('cp-session', seq + 1, () => saveGuard(guard));
    }
  }
  rec.close();
  const cp = rec.checkpoint('cp-session')!;
  assert.ok(cp && cp.records > 10, 'a checkpoint was written');
  // damage a record before the checkpoint: resume does not read there, so it goes ahead
  const file = rec.logFile('cp-session');
  const buf = fs.readFileSync(file);
  buf[Math.floor(cp.offset / 2)] ^= 0x01;
  fs.writeFileSync(file, buf);
  const t = await startApp({ dataDir });
  try {
    const s = await rawRig(t.url);
    const r = await send(s, 'session:resume', { sessionId: 'cp-session' });
    assert.equal(r.data?.lastSeq, seq, JSON.stringify(r));
    assert.ok(t.logs.some((l) => /session reloaded from its log/.test(String(l.msg)) && l.fromCheckpoint === cp.offset));
    await until(() => t.logs.some((l) => /damage found while rebuilding statistics/.test(String(l.msg))), 'background rebuild reports the damage');
    assert.ok('data' in (await send(s, 'stim:onset', { sessionId: 'cp-session', seq: seq + 1, trial: 500, stimulusId: demoStimuli[0].id, tMs: 99_000 })));
    s.close();
  } finally {
    await t.close();
  }
});

test('a disconnected session left idle closes its file and leaves memory; resume reloads it from disk', async () => {
  const t = await startApp({ limits: { ...testConfig().limits, idleSessionCloseS: 1 } });
  try {
    const s = await rawRig(t.url);
    const id = (await send(s, 'session:start', sessionStart(2))).data.sessionId as string;
    assert.ok('data' in (await send(s, 'stim:onset', { sessionId: id, seq: 1, trial: 0, stimulusId: demoStimuli[0].id, tMs: 100 })));
    s.close();
    await until(() => !t.app.store.get(id) && !t.app.recorder.isOpen(id), 'idle session closed', 200);
    assert.equal(t.app.recorder.openCount(), 0);
    const s2 = await rawRig(t.url);
    assert.equal((await send(s2, 'session:resume', { sessionId: id })).data.lastSeq, 1);
    assert.ok('data' in (await send(s2, 'stim:offset', { sessionId: id, seq: 2, trial: 0, stimulusId: demoStimuli[0].id, tMs: 300 })));
    s2.close();
  } finally {
    await t.close();
  }
});

test('replays are capped; finished ones are freed when room is needed', async () => {
  const t = await startApp({ limits: { ...testConfig().limits, maxReplays: 1 } });
  try {
    const s = await rawRig(t.url);
    const id = (await send(s, 'session:start', sessionStart(2))).data.sessionId as string;
    for (let seq = 1; seq <= 5; seq++) {
      assert.ok('data' in (await send(s, 'stim:onset', { sessionId: id, seq, trial: seq, stimulusId: demoStimuli[0].id, tMs: seq * 100 })));
      await new Promise((r) => setTimeout(r, 30));
    }
    const dash = dashboardSocket(t);
    const ask = (speed: number | 'max') => dash.timeout(5000).emitWithAck(dashboardEvents.sessionReplay, { sessionId: id, speed });
    const slow = await ask(0.01);
    assert.ok(slow.data?.replayId);
    const refused = await ask('max');
    assert.equal(refused.error?.code, 'invalid');
    assert.match(refused.error.message, /1 replays are running, the limit \(limits.maxReplays 1\)/);
    await dash.timeout(5000).emitWithAck(dashboardEvents.replayControl, { replayId: slow.data.replayId, action: 'stop' });
    const fast = await ask('max');
    await until(() => t.app.store.get(fast.data.replayId)?.replay?.done, 'fast replay done');
    const next = await ask('max');
    assert.ok(next.data?.replayId);
    assert.equal(t.app.store.get(fast.data.replayId), undefined, 'the finished replay was freed');
    dash.close();
    s.close();
  } finally {
    await t.close();
  }
});
