// Worker threads do not inherit the parent's --import hooks on Node 20: register tsx here, then load the
// worker module named in workerData.module (relative to this folder).
//
// Every analysis thread runs at a lower scheduling priority than the event loop that acknowledges rig
// events (nice + workerData.nice: compute.workerNice, default 10, from thread-nice.ts; 0: off). On Linux a
// thread's nice value is its own: this thread's id from /proc/thread-self ("PID/task/TID") is reniced, not
// the process, and threads it starts later (wasm) inherit it. With two cores busy with features, maps,
// reports and refits, the rig's thread still gets a core at once. The feature/map threads ask for at most 4
// (compute-client.ts: their features are compared with a plain script that runs at the normal priority).
import fs from 'node:fs';
import os from 'node:os';
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

const nice = workerData.nice ?? 10;
if (nice > 0) {
  try {
    // workerData.niceThreadId: the thread to renice, for a test that needs it to fail (one that does not exist)
    const tid = workerData.niceThreadId ?? Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
    os.setPriority(tid, Math.min(19, os.getPriority(tid) + nice));
  } catch (e) {
    // not permitted (or not Linux): the thread runs at the process's priority; the main thread's log hears
    // why (thread-nice.ts listens on this channel: one counted warning)
    const channel = new BroadcastChannel('sharedlens:thread-nice');
    // a SystemError's errno name (EACCES, ESRCH) is in e.info.code; its own code is ERR_SYSTEM_ERROR
    channel.postMessage({ module: String(workerData.module).slice(0, 60), nice, code: e?.info?.code ?? e?.code ?? null, message: String(e?.message ?? e) });
    channel.close();
  }
}
register();
await import(new URL(workerData.module, import.meta.url).href);
