/**
 * fsync off the event loop: `always` acknowledges after a group fdatasync on the threadpool that covers the
 * event (one sync for the events written while the previous one ran), a failed sync answers `storage` and
 * its resend is acknowledged after a sync that works; `interval` syncs never hold an acknowledgement.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { LogWriter, realFileOps, type FileOps } from '../server/src/storage/session-log.ts';
import { checkLog } from '../server/src/storage/log-scan.ts';
import { rawRig, send, sessionStart, startApp, tmpDir } from './helpers.ts';

/** File calls whose threadpool fdatasync completes only when the test says so (each call recorded). */
function heldSyncs(): { ops: FileOps; calls: { fd: number; finish: (err?: Error) => void }[] } {
  const calls: { fd: number; finish: (err?: Error) => void }[] = [];
  const ops: FileOps = {
    ...realFileOps,
    fdatasync: (fd, done) => {
      calls.push({ fd, finish: (err) => (err ? done(err) : (realFileOps.fdatasyncSync(fd), done(null))) });
    },
  };
  return { ops, calls };
}

const eio = () => Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });

test('always: acknowledgements wait for a sync that began after their record; one sync per group', () => {
  const file = path.join(tmpDir(), 'log.bin');
  fs.writeFileSync(file, '');
  const { ops, calls } = heldSyncs();
  const w = new LogWriter(file, 'always', 1000, undefined, { ops });
  const done: Record<string, string | null | undefined> = {};
  w.append({ atMs: 1 });
  w.afterSync((e) => (done.a = e));
  assert.equal(calls.length, 1, 'the first record starts a sync');
  assert.equal(done.a, undefined, 'not acknowledged before its sync ends');
  // written while that sync runs: they wait for the next one
  w.append({ atMs: 2 });
  w.afterSync((e) => (done.b = e));
  w.append({ atMs: 3 });
  w.afterSync((e) => (done.c = e));
  assert.equal(calls.length, 1, 'one sync at a time');
  calls[0].finish();
  assert.equal(done.a, null);
  assert.equal(done.b, undefined, 'b was written after the running sync began: it is not covered by it');
  assert.equal(calls.length, 2, 'the group written meanwhile gets one sync');
  calls[1].finish();
  assert.equal(done.b, null);
  assert.equal(done.c, null);
  // nothing written since: acknowledged at once
  let now: string | null | undefined;
  w.afterSync((e) => (now = e));
  assert.equal(now, null);
  // a failed sync: its group is told, and a later wait retries the sync (an append would retry it first too)
  w.append({ atMs: 4 });
  w.afterSync((e) => (done.d = e));
  calls[2].finish(eio());
  assert.match(String(done.d), /fsync of the session log failed \(EIO\)/);
  w.afterSync((e) => (done.e = e));
  assert.equal(calls.length, 4, 'waiting after a failure retries the sync');
  calls[3].finish();
  assert.equal(done.e, null);
  w.append({ atMs: 6 });
  w.close();
  assert.equal(checkLog(file).records, 5);
});

test('interval: the timer syncs on the threadpool; close waits for a running sync before closing the file', async () => {
  const file = path.join(tmpDir(), 'log.bin');
  fs.writeFileSync(file, '');
  const { ops, calls } = heldSyncs();
  const w = new LogWriter(file, 'interval', 20, undefined, { ops });
  w.append({ atMs: 1 });
  let acked: string | null | undefined;
  w.afterSync((e) => (acked = e));
  assert.equal(acked, null, 'interval acknowledges what is written');
  for (let i = 0; i < 100 && !calls.length; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(calls.length, 1, 'the timer started a background sync');
  w.append({ atMs: 2 });
  w.close();
  assert.throws(() => w.append({ atMs: 3 }), /is closed/);
  // the descriptor stays open until the running sync ends, so it is never synced after being reused
  assert.doesNotThrow(() => fs.fstatSync(calls[0].fd));
  calls[0].finish();
  assert.throws(() => fs.fstatSync(calls[0].fd), /EBADF/);
  assert.equal(checkLog(file).records, 2);
});

test('rig over sockets with fsync always: acks come after the slow sync, the event loop serves meanwhile, a failed sync is refused and its resend acknowledged', async () => {
  const t = await startApp({ recording: { fsync: 'always', fsyncIntervalMs: 200, minFreeBytes: 0 } });
  try {
    const s = await rawRig(t.url);
    const C = 2;
    const id = (await send(s, 'session:start', sessionStart(C))).data.sessionId as string;
    const ev = (n: number) => ({ sessionId: id, seq: n, startMs: n * 10, binWidthMs: 1, counts: new Uint16Array(10 * C).fill(1) });
    let syncs = 0;
    let fail = false;
    // each sync takes 300 ms on the threadpool side
    t.app.recorder.fileOps = {
      ...realFileOps,
      fdatasync: (fd, done) => {
        syncs++;
        const err = fail ? eio() : null;
        setTimeout(() => done(err), 300);
      },
    };
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 10);
    const t0 = performance.now();
    const acks = await Promise.all([1, 2, 3, 4, 5].map((n) => send(s, 'counts:binned', ev(n))));
    const ms = performance.now() - t0;
    clearInterval(ticker);
    for (const a of acks) assert.ok('data' in a && !a.data.duplicate, JSON.stringify(a));
    assert.ok(ms >= 300, `acknowledged after the sync (${ms.toFixed(0)} ms)`);
    assert.ok(syncs <= 2, `five events in at most two group syncs (${syncs})`);
    assert.ok(ticks >= 10, `the event loop ran timers while the syncs ran (${ticks} ticks)`);
    // a sync that fails: the event is refused (it is in the log, maybe not on disk) ...
    fail = true;
    const refused = await send(s, 'counts:binned', ev(6));
    assert.equal(refused.error?.code, 'storage', JSON.stringify(refused));
    assert.match(refused.error.message, /fsync failed/);
    // ... and its resend is acknowledged once a sync works
    fail = false;
    const again = await send(s, 'counts:binned', ev(6));
    assert.ok('data' in again && again.data.duplicate, JSON.stringify(again));
    const after = await send(s, 'counts:binned', ev(7));
    assert.ok('data' in after && !after.data.duplicate, JSON.stringify(after));
    s.close();
  } finally {
    await t.close();
  }
});
