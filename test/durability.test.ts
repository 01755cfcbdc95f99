/** Recording: no acknowledged event is lost when the server is killed; torn records are dropped on restart. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { RigClient, decodePayload, type Frame } from '@sharedlens/shared';
import { Recorder } from '../server/src/sinks/recorder.ts';
import { LogWriter, encodeRecord } from '../server/src/storage/session-log.ts';
import { checkLog, scanLog } from '../server/src/storage/log-scan.ts';
import { demoStimuli, root, sessionStart, spawnedServerUrl, startApp, tmpDir, TOKEN, until } from './helpers.ts';

test('a torn tail is told from damage inside the log; reopening cuts only the torn tail', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'log.bin');
  fs.writeFileSync(file, '');
  const w = new LogWriter(file, 'always', 1000);
  for (let i = 0; i < 5; i++) w.append({ atMs: i, payload: 'x'.repeat(i * 10) });
  w.close();
  const whole = fs.statSync(file).size;
  // a torn write: half of a sixth record
  const sixth = encodeRecord({ atMs: 5 });
  fs.appendFileSync(file, sixth.subarray(0, sixth.length - 3));
  let got = checkLog(file);
  assert.equal(got.records, 5);
  assert.equal(got.validBytes, whole);
  assert.equal(got.tornBytes, sixth.length - 3);
  assert.deepEqual(got.damaged, []);
  const w2 = new LogWriter(file, 'never', 1000, got.validBytes);
  w2.append({ atMs: 'after' });
  w2.close();
  const values = () => [...scanLog(file)].flatMap((s) => (s.kind === 'record' ? [(decodePayload(s.payload) as { atMs: unknown }).atMs] : []));
  assert.deepEqual(values(), [0, 1, 2, 3, 4, 'after']);
  assert.equal(checkLog(file).tornBytes, 0);
  // a flipped byte inside the third record: damage, resynchronised at the fourth; nothing counts as torn
  const buf = fs.readFileSync(file);
  const third = [...scanLog(file)].find((s) => s.kind === 'record' && s.index === 2) as { offset: number; end: number };
  buf[third.end - 2] ^= 0xff;
  fs.writeFileSync(file, buf);
  got = checkLog(file);
  assert.equal(got.records, 5);
  assert.deepEqual(got.damaged, [{ fromByte: third.offset, toByte: third.end }]);
  assert.equal(got.tornBytes, 0);
  assert.deepEqual(values(), [0, 1, 3, 4, 'after']);
  // a flipped bit in a length field: resynchronised by scanning for the next header with a valid checksum
  const buf2 = fs.readFileSync(file);
  const second = [...scanLog(file)].find((s) => s.kind === 'record' && s.index === 1) as { offset: number; end: number };
  buf2[second.offset + 2] ^= 0x10;
  fs.writeFileSync(file, buf2);
  got = checkLog(file);
  assert.deepEqual(got.damaged.map((d) => d.fromByte), [second.offset]);
  assert.deepEqual(values(), [0, 3, 4, 'after']);
});

test('a killed server loses no acknowledged event, and the rig resumes the session after a restart', async () => {
  const dataDir = tmpDir();
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'server/src/main.ts')], {
    cwd: root,
    env: { ...process.env, PORT: '0', DEMO: '0', DATA_DIR: dataDir, RIG_TOKENS: TOKEN, LOG_LEVEL: 'warn', FSYNC: 'never', FEATURES: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  // the banner prints the dashboard URL with its sign-in token
  const url = await spawnedServerUrl(child, () => out, 'the server');
  const rig = new RigClient({ url, token: TOKEN, ackTimeoutMs: 2000, socket: { reconnection: false } });
  await rig.connect();
  const sessionId = await rig.startSession(sessionStart(8));
  const acked = new Set<number>();
  const C = 8;
  let tMs = 0;
  const sent: Promise<void>[] = [];
  for (let trial = 0; trial < 400; trial++) {
    const stim = demoStimuli[trial % demoStimuli.length].id;
    const track = (p: Promise<{ seq: number }>) => sent.push(p.then((a) => void acked.add(a.seq), () => {}));
    track(rig.onset(trial, stim, tMs + 100));
    track(rig.binned(tMs, 1, new Uint16Array(400 * C).fill(trial % 3)));
    track(rig.offset(trial, stim, tMs + 300));
    tMs += 400;
    if (trial === 120) {
      // kill once a good part is acknowledged, while later events are still in flight
      await until(() => acked.size >= 200, 'acknowledgements before the kill');
      child.kill('SIGKILL');
    }
    await new Promise((r) => setImmediate(r));
  }
  if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once('exit', r));
  await Promise.race([Promise.all(sent), new Promise((r) => setTimeout(r, 3000))]);
  rig.close();
  assert.ok(acked.size > 30, `${acked.size} events acknowledged before the kill`);

  const recorder = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 100 });
  const { records } = recorder.load(sessionId);
  const recordedSeqs = new Set(records.map((r) => ('seq' in r.frame ? (r.frame.seq ?? 0) : 0)));
  for (const seq of acked) assert.ok(recordedSeqs.has(seq), `acknowledged seq ${seq} is in the log`);
  recorder.close();

  // a torn last record, as from a crash in the middle of a write
  const logFile = path.join(dataDir, 'sessions', sessionId, 'log.bin');
  fs.appendFileSync(logFile, encodeRecord({ atMs: 1, frame: { type: 'session:end' } }).subarray(0, 11));

  // restart on the same data folder; the rig resumes and finishes the session
  const t = await startApp({ dataDir });
  try {
    const listed = t.app.recorder.meta(sessionId);
    assert.equal(listed?.state, 'interrupted');
    const rig2 = new RigClient({ url: t.url, token: TOKEN });
    await rig2.connect();
    const lastSeq = await rig2.resume(sessionId);
    assert.equal(lastSeq, Math.max(...recordedSeqs));
    assert.ok(t.logs.some((l) => /torn last record/.test(String(l.msg)) && l.tornBytes === 11), 'torn tail logged');
    const completedBeforeKill = records.filter((r) => r.frame.type === 'stim:offset').length;
    await until(() => t.app.store.get(sessionId)?.latest?.trialsCompleted === completedBeforeKill, 'statistics rebuilt from the log');
    const before = completedBeforeKill;
    // continue with fresh trial numbers after the last bins
    const lastBin = records.map((r) => r.frame).filter((f): f is Extract<Frame, { type: 'counts:binned' }> => f.type === 'counts:binned').at(-1)!;
    const t0 = lastBin.startMs + lastBin.nBins;
    await rig2.onset(1000, demoStimuli[0].id, t0 + 100);
    await rig2.binned(t0, 1, new Uint16Array(400 * C).fill(1));
    await rig2.offset(1000, demoStimuli[0].id, t0 + 300);
    await rig2.end();
    await until(() => t.app.store.get(sessionId)?.latest?.trialsCompleted === before + 1, 'trial after resume');
    assert.equal(t.app.recorder.meta(sessionId)?.state, 'ended');
    rig2.close();
  } finally {
    await t.close();
  }
});

test('a sequence gap is reported to the rig and counted; a duplicate is acknowledged and ignored', async () => {
  const t = await startApp();
  try {
    const rig = new RigClient({ url: t.url, token: TOKEN });
    await rig.connect();
    const id = await rig.startSession(sessionStart(2));
    await rig.onset(0, demoStimuli[0].id, 10);
    // skip seq 2 and 3, as a rig that lost events would
    (rig as unknown as { nextSeq: number }).nextSeq = 4;
    const a = await rig.offset(0, demoStimuli[0].id, 20);
    assert.deepEqual(a.gap, { from: 2, to: 3 });
    assert.equal(t.app.store.get(id)!.guard!.seqGaps, 1);
    assert.ok(t.logs.some((l) => /sequence gap/.test(String(l.msg))));
    (rig as unknown as { nextSeq: number }).nextSeq = 4;
    const dup = await rig.offset(0, demoStimuli[0].id, 20);
    assert.equal(dup.duplicate, true);
    assert.equal(t.app.recorder.load(id).records.length, 3, 'start, onset, offset: the duplicate was not recorded');
    rig.close();
  } finally {
    await t.close();
  }
});
