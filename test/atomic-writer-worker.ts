/** Worker of test/feature-cache-atomic.test.ts: writes one file many times with writeFileAtomic. */
import { parentPort, workerData } from 'node:worker_threads';
import { writeFileAtomic } from '../server/src/compute/feature-model.ts';

const { file, times, fill } = workerData as { file: string; times: number; fill: number };
let failed: string | null = null;
for (let i = 0; i < times && !failed; i++) {
  try {
    writeFileAtomic(file, Buffer.alloc(1024 * 1024, fill));
  } catch (e) {
    failed = (e as Error).message;
  }
}
parentPort!.postMessage({ failed });
