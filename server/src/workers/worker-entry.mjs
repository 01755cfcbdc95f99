// Worker threads do not inherit the parent's --import hooks on Node 20: register tsx here, then load the
// worker module named in workerData.module (relative to this folder).
//
// Every analysis thread runs at a lower scheduling priority than the event loop that acknowledges rig
// events (nice + workerData.nice, default 10; on Linux a thread's nice value is its own, and threads it
// starts inherit it): with two cores busy with features, maps, reports and refits, the rig's thread still
// gets a core at once. The feature/map threads ask for less (compute-client.ts: +4; their features are
// compared with a plain script that runs at the normal priority), the report thread for none
// (report-client.ts: what GET /models and the dashboards show must keep up with a fast session).
import os from 'node:os';
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

try {
  os.setPriority(0, Math.min(19, os.getPriority(0) + (workerData.nice ?? 10)));
} catch {
  // not permitted or not supported here: the thread runs at the process's priority
}
register();
await import(new URL(workerData.module, import.meta.url).href);
