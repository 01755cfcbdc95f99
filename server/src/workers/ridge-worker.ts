/**
 * The refit worker thread: exact ridge refits (compute/encoding.ts fitJob: an eigendecomposition and
 * alphas x n^3 work, seconds at a thousand stimuli) off the event loop, so ingest and the live refreshes
 * never wait on them. After the fit it asks for the responses as they are now and applies the trials that
 * arrived during the fit here too, and absorbs the stimuli first seen meanwhile (compute/ridge.ts addRow),
 * so the main thread only catches up with the last few.
 * In: `{ id, job, eigen? }` (eigen: the basis kernel's eigendecomposition, from a cluster worker), then
 * `{ id, catchUp }` on request. Out: `{ id, type: 'need-y', rows }` (one or more), then
 * `{ id, type: 'fitted', state }` (buffers transferred) or `{ id, type: 'error', message }`.
 * Also (a cluster worker's refit job, cluster/refit-jobs.ts): in `{ id, eigenOf: { features, D, n } }`, out
 * `{ id, type: 'eigen', eigen }` (ridge.ts basisEigen of the n x D features; buffers transferred).
 */
import { parentPort } from 'node:worker_threads';
import { applyCatchUp, fitJob, type CatchUp, type RefitJob } from '../compute/encoding.ts';
import { basisEigen, type KernelEigen, type RidgeState } from '../compute/ridge.ts';

/** Every buffer of a fitted state, for a zero-copy transfer. */
function stateBuffers(s: RidgeState): ArrayBuffer[] {
  const b = s.basis;
  return [b.xc, b.xCenter, b.xMean, ...b.g, ...b.kinv, ...b.z, s.y, ...s.r, s.loss].map((a) => a.buffer as ArrayBuffer);
}

const waiting = new Map<number, (c: CatchUp) => void>();

parentPort?.on('message', async (msg: { id: number; job?: RefitJob; eigen?: KernelEigen; catchUp?: CatchUp; eigenOf?: { features: Float32Array; D: number; n: number } }) => {
  if (msg.catchUp) return waiting.get(msg.id)?.(msg.catchUp);
  if (msg.eigenOf) {
    try {
      const { features, D, n } = msg.eigenOf;
      const eigen = basisEigen(features, D, Array.from({ length: n }, (_, i) => i));
      parentPort!.postMessage({ id: msg.id, type: 'eigen', eigen }, [eigen.lambda.buffer as ArrayBuffer, eigen.q.buffer as ArrayBuffer]);
    } catch (e) {
      parentPort!.postMessage({ id: msg.id, type: 'error', message: (e as Error).message });
    }
    return;
  }
  try {
    const state = fitJob(msg.job!, msg.eigen);
    // catch up with the trials and the new stimuli of the fit's duration; again for those of the catch-up
    // (each round is shorter), so the main thread is left with at most a few
    for (let round = 0; round < 4; round++) {
      const c = await new Promise<CatchUp>((resolve) => {
        waiting.set(msg.id, resolve);
        parentPort!.postMessage({ id: msg.id, type: 'need-y', rows: state.basis.rows });
      });
      waiting.delete(msg.id);
      if (applyCatchUp(state, c) <= 2) break;
    }
    parentPort!.postMessage({ id: msg.id, type: 'fitted', state }, stateBuffers(state));
  } catch (e) {
    parentPort!.postMessage({ id: msg.id, type: 'error', message: (e as Error).message });
  }
});
