/**
 * The model thread: each session's encoding models (compute/ridge.ts state with its per-alpha operators)
 * live here, so the per-trial refresh (alphas x channels x stimuli) and a new stimulus's absorb (alphas x
 * stimuli^2) never run on the event loop that acknowledges rig events. It keeps per session the stimulus
 * features, the latest mean responses of every observed stimulus and the models; a fitted state handed to it
 * is caught up with those means (rows refreshed, stimuli it lacks absorbed) before it replaces the models.
 * Only stimuli with features are absorbed: while the set's are being computed, `features` brings rows as they
 * arrive and the observed stimuli among them join the models then.
 * In (workers/refresh-client.ts): `open`, `batch` (stimuli whose means changed, with their means now),
 * `install` (a fitted state, buffers transferred), `features` (rows of the features), `snapshot`, `close`.
 * Out: `applied` (the models' shape after a batch, install or features) and `snapshot` (what the main thread
 * reads, buffers transferred).
 */
import { parentPort } from 'node:worker_threads';
import { addRow, ridgeBuffers, ridgeSnapshot, updateRow, type RidgeState } from '../compute/ridge.ts';
import type { Snapshot, ThreadIn } from './refresh-client.ts';

interface Session {
  features: Float32Array;
  D: number;
  N: number;
  /** Latest mean responses per stimulus (S x N) and whether it was observed. */
  y: Float64Array;
  seen: Uint8Array;
  /** Whether its features are here (1). */
  ready: Uint8Array;
  state: RidgeState | null;
  rowOf: Int32Array;
  /** Bumped when the rows change (an absorb, an install); the version whose centred features the main thread holds. */
  rowsVersion: number;
  xcSent: number;
}

const sessions = new Map<number, Session>();

/** Refreshes or absorbs stimulus s with its latest means. */
function apply(ses: Session, s: number): void {
  const st = ses.state!;
  const y = ses.y.subarray(s * ses.N, (s + 1) * ses.N);
  const row = ses.rowOf[s];
  if (row >= 0) updateRow(st, row, y);
  else if (ses.ready[s]) {
    addRow(st, s, ses.features.subarray(s * ses.D, (s + 1) * ses.D), y);
    ses.rowOf[s] = st.basis.n - 1;
    ses.rowsVersion++;
  }
}

function shape(ses: Session): { n: number; exactN: number } | null {
  return ses.state ? { n: ses.state.basis.n, exactN: ses.state.basis.exactN } : null;
}

parentPort?.on('message', (msg: ThreadIn) => {
  try {
    if (msg.type === 'open') {
      sessions.set(msg.key, { features: msg.features, D: msg.D, N: msg.N, y: new Float64Array(msg.S * msg.N), seen: new Uint8Array(msg.S), ready: msg.ready ?? new Uint8Array(msg.S).fill(1), state: null, rowOf: new Int32Array(msg.S).fill(-1), rowsVersion: 0, xcSent: -1 });
      return;
    }
    if (msg.type === 'close') return void sessions.delete(msg.key);
    const ses = sessions.get(msg.key);
    if (!ses) return;
    if (msg.type === 'batch') {
      msg.stimuli.forEach((s, i) => {
        ses.y.set(msg.y.subarray(i * ses.N, (i + 1) * ses.N), s * ses.N);
        ses.seen[s] = 1;
        if (ses.state) apply(ses, s);
      });
      parentPort!.postMessage({ type: 'applied', key: msg.key, batch: msg.batch, shape: shape(ses) });
    } else if (msg.type === 'install') {
      // the means now of every observed stimulus, then the fitted state caught up with them
      msg.stimuli.forEach((s, i) => {
        ses.y.set(msg.y.subarray(i * ses.N, (i + 1) * ses.N), s * ses.N);
        ses.seen[s] = 1;
      });
      const st = msg.state;
      ses.state = st;
      ses.rowsVersion++;
      ses.rowOf.fill(-1);
      st.basis.rows.forEach((s, i) => (ses.rowOf[s] = i));
      const { n } = st.basis;
      for (let i = 0; i < n; i++) {
        const s = st.basis.rows[i];
        for (let t = 0; t < ses.N; t++) {
          if (st.y[t * n + i] !== ses.y[s * ses.N + t]) {
            apply(ses, s);
            break;
          }
        }
      }
      for (let s = 0; s < ses.seen.length; s++) if (ses.seen[s] && ses.rowOf[s] < 0) apply(ses, s);
      parentPort!.postMessage({ type: 'applied', key: msg.key, batch: msg.batch, shape: shape(ses) });
    } else if (msg.type === 'features') {
      msg.rows.forEach((s, k) => {
        ses.features.set(msg.features.subarray(k * ses.D, (k + 1) * ses.D), s * ses.D);
        ses.ready[s] = 1;
        if (ses.state && ses.seen[s]) apply(ses, s);
      });
      parentPort!.postMessage({ type: 'applied', key: msg.key, batch: msg.batch, shape: shape(ses) });
    }
    if ((msg.type === 'snapshot' || msg.snapshot) && ses.state) {
      // the centred features (rows x features: 10 MB at 1,000 stimuli, four times a second) only when the rows changed
      const xcKept = ses.xcSent === ses.rowsVersion;
      const state = ridgeSnapshot(ses.state, !xcKept);
      ses.xcSent = ses.rowsVersion;
      const out: Snapshot = { type: 'snapshot', key: msg.key, batch: msg.batch, state, rowsVersion: ses.rowsVersion, xcKept };
      parentPort!.postMessage(out, ridgeBuffers(state));
    }
  } catch (e) {
    parentPort!.postMessage({ type: 'error', key: 'key' in msg ? msg.key : -1, message: (e as Error).message });
  }
});
