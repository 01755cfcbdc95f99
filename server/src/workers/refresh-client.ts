/**
 * Main-thread side of the model thread (workers/refresh-worker.ts), the compute/encoding.ts ModelThread of
 * every session with encoding models: a completed trial only marks its stimulus; the marked stimuli go to
 * the thread in batches, at most one batch in flight per session, each with the means as they are when it
 * is sent (coalesced: a stimulus marked twice meanwhile goes once, with its latest means, so the last trial
 * is never dropped; the refresh is linear in the means, so this equals refreshing after every trial). A fitted
 * state is handed over (transferred, no copy) with the means of every observed stimulus. The thread sends
 * back a read-only snapshot of the models at most every `snapshotMs` and after the last batch; that is
 * `enc.ridge`, which reports, readouts and follow-ups read. While the set's features are being computed, the
 * rows that arrive are sent too (a batch of their own): the thread absorbs the observed stimuli among them.
 * When the thread fails the session falls back to models on the main thread, refitted from its statistics,
 * and the failure is reported.
 */
import { Worker } from 'node:worker_threads';
import type { EncodingState, ModelThread } from '../compute/encoding.ts';
import type { NeuronStatsState } from '../compute/neuron-stats.ts';
import { ridgeBuffers, ridgeSnapshot, type RidgeState } from '../compute/ridge.ts';
import { threadNice } from './thread-nice.ts';

/** Messages to the thread. */
export type ThreadIn =
  | { type: 'open'; key: number; features: Float32Array; D: number; N: number; S: number; /** Stimuli with features (1), null: all. */ ready: Uint8Array | null }
  | { type: 'features'; key: number; batch: number; rows: number[]; features: Float32Array; snapshot: boolean }
  | { type: 'batch'; key: number; batch: number; stimuli: number[]; y: Float64Array; snapshot: boolean }
  | { type: 'install'; key: number; batch: number; state: RidgeState; stimuli: number[]; y: Float64Array; snapshot: boolean }
  | { type: 'snapshot'; key: number; batch: number }
  | { type: 'close'; key: number };

export interface Snapshot {
  type: 'snapshot';
  key: number;
  /** The last batch it includes. */
  batch: number;
  state: RidgeState;
  /** The thread's version of the models' rows; `xcKept`: the state's centred features are left out (empty), as the previous snapshot of that version had them. */
  rowsVersion: number;
  xcKept: boolean;
}

type ThreadOut = Snapshot | { type: 'applied'; key: number; batch: number; shape: { n: number; exactN: number } | null } | { type: 'error'; key: number; message: string };

interface Entry {
  key: number;
  enc: EncodingState;
  /** Stimuli whose means changed since the last batch, and the statistics holding them. */
  dirty: Set<number>;
  stats: NeuronStatsState | null;
  /** Batches (and installs) sent, applied by the thread, and the last one a snapshot was asked for and got. */
  sent: number;
  applied: number;
  snapAsked: number;
  snapGot: number;
  lastSnapMs: number;
  /** The batch number of the last fitted state handed over (shapes of batches before it are the old models'). */
  installed: number;
  timer: NodeJS.Timeout | null;
  onSnapshot: () => void;
  /** The centred features of the last snapshot that carried them, and the rows' version they belong to. */
  xc: { rowsVersion: number; xc: Float64Array } | null;
}

export interface RefresherOptions {
  /** Snapshots at most this often while trials arrive (one always follows the last batch). */
  snapshotMs: number;
  onError: (message: string) => void;
}

export class ModelRefresher implements ModelThread {
  private worker: Worker | null = null;
  private readonly entries = new Map<number, Entry>();
  private readonly byEnc = new WeakMap<EncodingState, Entry>();
  private nextKey = 1;
  private scheduled = false;
  /** Batches sent, stimuli refreshed or absorbed in them, snapshots received (all sessions). */
  readonly counts = { batches: 0, stimuli: 0, snapshots: 0, xcKept: 0 };

  constructor(private readonly opts: RefresherOptions) {}

  private start(): Worker {
    if (!this.worker) {
      const w = new Worker(new URL('./worker-entry.mjs', import.meta.url), { workerData: { module: './refresh-worker.ts', nice: threadNice() } });
      w.on('message', (msg: ThreadOut) => this.receive(msg));
      w.on('error', (e) => {
        this.worker = null;
        for (const e2 of [...this.entries.values()]) this.fallBack(e2, `model thread failed: ${e.message}`);
      });
      this.worker = w;
    }
    return this.worker;
  }

  private post(msg: ThreadIn, transfer: ArrayBuffer[] = []): void {
    const w = this.start();
    w.ref();
    w.postMessage(msg, transfer);
  }

  /** Puts a session's models in the thread (before they are fitted); `onSnapshot` hears of every new `enc.ridge`. */
  attach(enc: EncodingState, stats: NeuronStatsState, onSnapshot: () => void): void {
    const e: Entry = { key: this.nextKey++, enc, dirty: new Set(), stats, sent: 0, applied: 0, snapAsked: 0, snapGot: 0, lastSnapMs: -Infinity, installed: 0, timer: null, onSnapshot, xc: null };
    this.entries.set(e.key, e);
    this.byEnc.set(enc, e);
    enc.thread = this;
    const { features, dim } = enc.featureSet;
    this.post({ type: 'open', key: e.key, features, D: dim, N: stats.C, S: features.length / dim, ready: enc.withFeatures });
  }

  /** Drops a session's models from the thread (its last snapshot stays in `enc.ridge`). */
  detach(enc: EncodingState): void {
    const e = this.byEnc.get(enc);
    if (!e) return;
    if (e.timer) clearTimeout(e.timer);
    this.entries.delete(e.key);
    this.byEnc.delete(enc);
    this.worker?.postMessage({ type: 'close', key: e.key } satisfies ThreadIn);
    if (!this.entries.size) this.worker?.unref();
  }

  /** Nothing marked, sent or unsnapshotted: `enc.ridge` holds every trial so far. */
  idle(enc: EncodingState): boolean {
    const e = this.byEnc.get(enc);
    return !e || (e.dirty.size === 0 && e.applied === e.sent && e.snapGot === e.sent);
  }

  observe(enc: EncodingState, stats: NeuronStatsState, s: number): void {
    const e = this.byEnc.get(enc);
    if (!e) return;
    e.stats = stats;
    e.dirty.add(s);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        for (const x of this.entries.values()) this.flush(x);
      });
    }
  }

  install(enc: EncodingState, stats: NeuronStatsState, state: RidgeState): void {
    const e = this.byEnc.get(enc);
    if (!e) return;
    // the first models are read here at once (small: the first fit); later the models in use stay readable
    // until the thread's caught-up snapshot of the new ones follows. The state itself moves to the thread
    if (!enc.ridge) this.show(e, ridgeSnapshot(state));
    enc.shape = { n: state.basis.n, exactN: state.basis.exactN };
    const C = stats.C;
    const stimuli: number[] = [];
    for (let s = 0; s < stats.stimuli.length; s++) if (stats.nStim[s] > 0) stimuli.push(s);
    const y = new Float64Array(stimuli.length * C);
    stimuli.forEach((s, i) => y.set(stats.mean.subarray(s * C, (s + 1) * C), i * C));
    e.stats = stats;
    e.dirty.clear();
    e.sent++;
    e.installed = e.sent;
    e.snapAsked = e.sent;
    e.lastSnapMs = Date.now();
    this.counts.batches++;
    this.post({ type: 'install', key: e.key, batch: e.sent, state, stimuli, y, snapshot: true }, ridgeBuffers(state));
  }

  /** Stimuli `rows` got their features: sent to the thread (after the batches before), which absorbs the observed ones. */
  features(enc: EncodingState, rows: number[]): void {
    const e = this.byEnc.get(enc);
    if (!e || !rows.length) return;
    const { features, dim } = enc.featureSet;
    const packed = new Float32Array(rows.length * dim);
    rows.forEach((s, k) => packed.set(features.subarray(s * dim, (s + 1) * dim), k * dim));
    e.sent++;
    this.counts.batches++;
    this.post({ type: 'features', key: e.key, batch: e.sent, rows, features: packed, snapshot: this.snapshotDue(e) }, [packed.buffer]);
  }

  /** Whether the batch being sent asks for a snapshot (at most every `snapshotMs`; else a trailing one is scheduled). */
  private snapshotDue(e: Entry): boolean {
    const now = Date.now();
    const snapshot = now - e.lastSnapMs >= this.opts.snapshotMs;
    if (snapshot) {
      e.snapAsked = e.sent;
      e.lastSnapMs = now;
    } else this.trailingSnapshot(e);
    return snapshot;
  }

  /** Sends a session's marked stimuli with their means now, unless a batch of it is still in the thread. */
  private flush(e: Entry): void {
    if (!e.dirty.size || e.applied < e.sent || !e.stats) return;
    const stats = e.stats;
    const C = stats.C;
    const stimuli = [...e.dirty];
    e.dirty.clear();
    const y = new Float64Array(stimuli.length * C);
    stimuli.forEach((s, i) => y.set(stats.mean.subarray(s * C, (s + 1) * C), i * C));
    e.sent++;
    const snapshot = this.snapshotDue(e);
    this.counts.batches++;
    this.counts.stimuli += stimuli.length;
    this.post({ type: 'batch', key: e.key, batch: e.sent, stimuli, y, snapshot });
  }

  /** A snapshot after the last batch, at most `snapshotMs` after the previous one. */
  private trailingSnapshot(e: Entry): void {
    if (e.timer) return;
    e.timer = setTimeout(() => {
      e.timer = null;
      if (!this.entries.has(e.key) || e.snapAsked >= e.sent) return;
      e.snapAsked = e.sent;
      e.lastSnapMs = Date.now();
      this.post({ type: 'snapshot', key: e.key, batch: e.sent });
    }, Math.max(0, e.lastSnapMs + this.opts.snapshotMs - Date.now()));
  }

  private receive(msg: ThreadOut): void {
    const e = this.entries.get(msg.key);
    if (!e) return;
    if (msg.type === 'error') return this.fallBack(e, `model thread: ${msg.message}`);
    if (msg.type === 'applied') {
      e.applied = Math.max(e.applied, msg.batch);
      if (msg.shape && msg.batch >= e.installed) e.enc.shape = msg.shape;
      this.flush(e);
      return;
    }
    // every snapshot in order, kept or not, leaves its rows' features for the next ones of the same rows
    if (!msg.xcKept) e.xc = { rowsVersion: msg.rowsVersion, xc: msg.state.basis.xc };
    else if (e.xc?.rowsVersion === msg.rowsVersion) {
      msg.state.basis.xc = e.xc.xc;
      this.counts.xcKept++;
    }
    else return this.fallBack(e, `model thread: a snapshot of rows version ${msg.rowsVersion} without their features`);
    if (msg.batch < e.snapGot || msg.batch < e.installed) return;
    e.snapGot = msg.batch;
    this.counts.snapshots++;
    this.show(e, msg.state);
    e.onSnapshot();
  }

  /** Makes `state` what the main thread reads. */
  private show(e: Entry, state: RidgeState): void {
    const enc = e.enc;
    enc.ridge = state;
    enc.rowOf.fill(-1);
    state.basis.rows.forEach((s, i) => (enc.rowOf[s] = i));
    enc.version++;
  }

  /** The thread failed: the session's models go back to the main thread, refitted from its statistics. */
  private fallBack(e: Entry, message: string): void {
    this.opts.onError(`${message}; the session's models are refitted on the main thread`);
    const enc = e.enc;
    this.detach(enc);
    delete enc.thread;
    delete enc.shape;
    enc.ridge = null;
    enc.rowOf.fill(-1);
    let pending = 0;
    if (e.stats) for (let s = 0; s < e.stats.stimuli.length; s++) if (e.stats.nStim[s] > 0) pending++;
    enc.pending = pending;
    e.onSnapshot();
  }

  async close(): Promise<void> {
    for (const e of this.entries.values()) if (e.timer) clearTimeout(e.timer);
    this.entries.clear();
    await this.worker?.terminate();
    this.worker = null;
  }
}
