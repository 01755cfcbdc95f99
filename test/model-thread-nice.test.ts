/**
 * Analysis threads run at a lower priority than the event loop (compute.workerNice): a thread started
 * through worker-entry.mjs with the configured value reports its own nice as that value (read from
 * /proc/self/task/TID/stat, field 19, independently of os.getPriority), a thread it starts inherits it, and
 * the main thread stays at its own. Linux only: this CI runs on Linux, and the test says so if it does not.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
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

async function runProbe(nice: number): Promise<Probe> {
  const w = new Worker(new URL('../server/src/workers/worker-entry.mjs', import.meta.url), { workerData: { module: probe, nice } });
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

test('threadNiceOf reads the nice value ps reports for a thread', () => {
  const ps = spawnSync('ps', ['-L', '-o', 'tid=,ni=', '-p', String(process.pid)], { encoding: 'utf8' });
  assert.equal(ps.status, 0, ps.stderr);
  const rows = ps.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
  assert.ok(rows.length > 1);
  for (const [tid, ni] of rows) assert.equal(threadNiceOf(tid), ni, `thread ${tid}`);
});
