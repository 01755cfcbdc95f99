/**
 * Analysis threads run at a lower priority than the event loop (compute.workerNice): a thread started
 * through worker-entry.mjs with the configured value reports its own nice as that value (read from
 * /proc/self/task/TID/stat, field 19, independently of os.getPriority), a thread it starts inherits it, and
 * the main thread stays at its own. Linux only: this CI runs on Linux, and the test says so if it does not.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { configureThreadNice, currentThreadId, perThreadNiceSupported, threadNice, threadNiceCounts, threadNiceOf } from '../server/src/workers/thread-nice.ts';

// a module run by worker-entry.mjs: posts its thread id, its nice from /proc, and those of a thread it starts
const probe = `data:text/javascript,${encodeURIComponent(`
import fs from 'node:fs';
import { parentPort, Worker } from 'node:worker_threads';
const nice = (tid) => { const s = fs.readFileSync('/proc/self/task/' + tid + '/stat', 'utf8'); return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[16]); };
const tid = Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
const child = new Worker("import fs from 'node:fs'; import { parentPort } from 'node:worker_threads'; parentPort.postMessage(Number(fs.readlinkSync('/proc/thread-self').split('/').pop()));", { eval: true });
child.once('message', (childTid) => { parentPort.postMessage({ tid, nice: nice(tid), childTid, childNice: nice(childTid) }); child.terminate(); });
`)}`;

type Probe = { tid: number; nice: number; childTid: number; childNice: number };

async function runProbe(nice: number, niceThreadId?: number): Promise<Probe> {
  const w = new Worker(new URL('../server/src/workers/worker-entry.mjs', import.meta.url), { workerData: { module: probe, nice, ...(niceThreadId ? { niceThreadId } : {}) } });
  try {
    return await new Promise<Probe>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
  } finally {
    await w.terminate();
  }
}

test('this CI runs on Linux, where threads have nice values of their own', () => {
  assert.equal(process.platform, 'linux', 'the thread-priority tests below need Linux (/proc/thread-self)');
  assert.ok(perThreadNiceSupported());
});

test('an analysis thread started with compute.workerNice 10 runs at nice 10, a thread it starts too; the main thread does not', async () => {
  const mainTid = currentThreadId();
  assert.equal(mainTid, process.pid, 'the test runs on the main thread');
  const mainBefore = threadNiceOf(mainTid);
  configureThreadNice(10, () => assert.fail('no warning on Linux'));
  assert.equal(threadNice(), 10);
  assert.equal(threadNice(4), 4, 'feature threads ask for at most 4');
  const p = await runProbe(threadNice());
  assert.notEqual(p.tid, mainTid);
  assert.equal(p.nice, Math.min(19, mainBefore + 10));
  assert.equal(p.childNice, p.nice, 'a thread the analysis thread starts inherits its nice');
  assert.equal(threadNiceOf(mainTid), mainBefore, 'the main thread is not reniced');
  assert.equal(os.getPriority(0), mainBefore);
  assert.equal(threadNiceCounts.warnings, 0);
});

test('compute.workerNice 0 leaves analysis threads at the main thread\'s priority', async () => {
  configureThreadNice(0, () => assert.fail('no warning for 0'));
  assert.equal(threadNice(), 0);
  const p = await runProbe(threadNice());
  assert.equal(p.nice, threadNiceOf(currentThreadId()));
  configureThreadNice(10, () => {});
});

test('a thread that cannot renice itself is reported to the main thread\'s log once, with the reason; every failure counted', async () => {
  const warnings: string[] = [];
  configureThreadNice(10, (m) => warnings.push(m));
  const before = { ...threadNiceCounts };
  // a thread id above the kernel's pid_max exists nowhere: setpriority fails with ESRCH
  const missing = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8')) + 1;
  const waitFor = async (n: number) => {
    for (let i = 0; i < 200 && threadNiceCounts.reniceFailures < n; i++) await new Promise((r) => setTimeout(r, 10));
  };
  const p = await runProbe(10, missing);
  await waitFor(before.reniceFailures + 1);
  assert.equal(p.nice, threadNiceOf(currentThreadId()), 'the thread runs at the process\'s priority');
  assert.equal(threadNiceCounts.reniceFailures, before.reniceFailures + 1);
  assert.equal(warnings.length, before.reniceFailures === 0 ? 1 : 0);
  if (warnings.length) assert.match(warnings[0]!, /could not lower its priority by 10 \(ESRCH: /);
  await runProbe(10, missing);
  await waitFor(before.reniceFailures + 2);
  assert.equal(threadNiceCounts.reniceFailures, before.reniceFailures + 2, 'the second failure counted');
  assert.ok(warnings.length <= 1, 'and not logged again');
  assert.equal(threadNiceCounts.warnings, before.warnings + warnings.length);
});

test('threadNiceOf reads the nice value ps reports for a thread', () => {
  const ps = spawnSync('ps', ['-L', '-o', 'tid=,ni=', '-p', String(process.pid)], { encoding: 'utf8' });
  assert.equal(ps.status, 0, ps.stderr);
  const rows = ps.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
  assert.ok(rows.length > 1);
  for (const [tid, ni] of rows) assert.equal(threadNiceOf(tid), ni, `thread ${tid}`);
});
