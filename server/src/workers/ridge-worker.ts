/**
 * The refit worker thread: exact ridge refits (compute/encoding.ts fitJob: an eigendecomposition and
 * alphas x n^3 work, seconds at a thousand stimuli) off the event loop, so ingest and the live refreshes
 * never wait on them. After the fit it asks for the responses as they are now and applies the trials that
 * arrived during the fit here too, so the main thread only catches up with the last few.
 * In: `{ id, job }`, then `{ id, y }` on request. Out: `{ id, type: 'need-y' }`, then `{ id, type: 'fitted',
 * state }` (buffers transferred) or `{ id, type: 'error', message }`.
 */
import { parentPort } from 'node:worker_threads';
import { catchUp, fitJob, type RefitJob } from '../compute/encoding.ts';
import type { RidgeState } from '../compute/ridge.ts';

/** Every buffer of a fitted state, for a zero-copy transfer. */
function stateBuffers(s: RidgeState): ArrayBuffer[] {
  const b = s.basis;
  return [b.xc, b.xMean, ...b.g, ...b.k, ...b.kk, ...b.h, s.y, ...s.r, s.loss].map((a) => a.buffer as ArrayBuffer);
}

const waiting = new Map<number, (y: Float64Array) => void>();

parentPort?.on('message', async (msg: { id: number; job?: RefitJob; y?: Float64Array }) => {
  if (msg.y) return waiting.get(msg.id)?.(msg.y);
  try {
    const state = fitJob(msg.job!);
    const yNow = await new Promise<Float64Array>((resolve) => {
      waiting.set(msg.id, resolve);
      parentPort!.postMessage({ id: msg.id, type: 'need-y' });
    });
    waiting.delete(msg.id);
    catchUp(state, yNow);
    parentPort!.postMessage({ id: msg.id, type: 'fitted', state }, stateBuffers(state));
  } catch (e) {
    parentPort!.postMessage({ id: msg.id, type: 'error', message: (e as Error).message });
  }
});
