/**
 * The dashboard bench's simulated rig in a thread of its own (issue 16): a rig is another machine, so its
 * synthetic spike counts (Poisson draws for 384 channels at 1 ms bins) should not compete with the server's
 * event loop as they did when the rig ran inside the bench's process. `startRigThread` starts it; `stop`
 * ends the session (session:end) and resolves with the session id and the trials sent.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { runSimRig, type SimOptions } from '../server/src/sim/sim-rig.ts';

type RigOptions = Omit<SimOptions, 'signal' | 'onTrial' | 'features' | 'timing'>;

/** Starts the simulated rig in a worker thread. */
export function startRigThread(options: RigOptions): { stop: () => Promise<{ sessionId: string; trials: number }> } {
  // the server's worker entry registers tsx (threads do not inherit --import on Node 20); nice 0: a rig's pace
  const worker = new Worker(new URL('../server/src/workers/worker-entry.mjs', import.meta.url), { workerData: { module: '../../../bench/dashboard-rig.ts', nice: 0, options } });
  const done = new Promise<{ sessionId: string; trials: number }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the rig thread exited (${code}) before its session ended`)));
  });
  return {
    stop: async () => {
      worker.postMessage('stop');
      const r = await done;
      await worker.terminate();
      return r;
    },
  };
}

if (!isMainThread && parentPort) {
  const stop = new AbortController();
  parentPort.once('message', () => stop.abort());
  const r = await runSimRig({ ...(workerData as { options: RigOptions }).options, signal: stop.signal });
  r.client.close();
  parentPort.postMessage({ sessionId: r.sessionId, trials: r.trials });
}
