// Worker threads do not inherit the parent's --import hooks on Node 20: register tsx here, then load the
// worker module named in workerData.module (relative to this folder).
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(new URL(workerData.module, import.meta.url).href);
