/**
 * The refit worker thread: exact ridge refits (compute/encoding.ts fitJob: an eigendecomposition and
 * alphas x n^3 work, seconds at a thousand stimuli) off the event loop, so ingest and the live refreshes
 * never wait on them. In: `{ id, job }`. Out: `{ id, state }` (buffers transferred) or `{ id, error }`.
 */
import { parentPort } from 'node:worker_threads';
import { fitJob, type RefitJob } from '../compute/encoding.ts';
import type { RidgeState } from '../compute/ridge.ts';

/** Every buffer of a fitted state, for a zero-copy transfer. */
export function stateBuffers(s: RidgeState): ArrayBuffer[] {
  const b = s.basis;
  return [b.xc, b.xMean, ...b.g, ...b.k, ...b.kk, ...b.h, s.y, ...s.r, s.loss].map((a) => a.buffer as ArrayBuffer);
}

parentPort?.on('message', ({ id, job }: { id: number; job: RefitJob }) => {
  try {
    const state = fitJob(job);
    parentPort!.postMessage({ id, state }, stateBuffers(state));
  } catch (e) {
    parentPort!.postMessage({ id, error: (e as Error).message });
  }
});
