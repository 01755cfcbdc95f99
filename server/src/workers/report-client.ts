/**
 * Main-thread side of the model-report worker (workers/report-worker.ts). After every update of a session
 * the store asks for a report; at most one job per session is in flight and jobs start at most every
 * `minIntervalMs` and twice as long as the last one took (at 1,536 channels a report takes seconds; the
 * thread then leaves the cores half the time to the rig's event loop and the other workers), each built from the latest state (copies of the statistics and of each channel's
 * chosen-regularisation residuals: O(channels x stimuli), no features). `GET /models`, the dashboard's
 * snapshots and the map jobs read the latest finished report and its readouts, never computing one.
 */
import { Worker } from 'node:worker_threads';
import type { AnalysisGate } from './analysis-gate.ts';
import type { ModelSnapshot } from '@sharedlens/shared';
import type { EncodingConfig, EncodingState } from '../compute/encoding.ts';
import type { ReportRule } from '../compute/model-report.ts';
import type { NeuronStatsState } from '../compute/neuron-stats.ts';
import { chosenAlphas } from '../compute/ridge.ts';

/** One report to compute: the statistics without PSTHs, the models' responses and chosen residuals. */
export interface ReportJob {
  type: 'report';
  id: number;
  sessionId: string;
  stats: NeuronStatsState;
  /**
   * Null: `stats` is whole. Else only these stimuli changed since the session's previous job: `stats.mean`,
   * `m2` and both `halfSum` hold just their rows, in this order (the thread keeps the rest).
   */
  statsRows?: number[] | null;
  /**
   * The features (S x dim) the first time a session's job is sent, then null (the worker keeps them), or
   * with `featureRows` only the rows that arrived since (while the set's features are being computed).
   */
  features: Float32Array | null;
  featureRows?: number[] | null;
  /** Stimuli whose features the models know (1), while the set's are being computed; null: all. */
  ready: Uint8Array | null;
  dim: number;
  modelId: string;
  backend: string;
  version: number;
  config: EncodingConfig;
  rule: ReportRule;
  minWeightCosine: number;
  model: {
    rows: number[];
    refits: number;
    alphas: number[];
    /** Chosen regularisation index per channel, its residuals (N x n), the responses (N x n), per-alpha g and losses. */
    alphaIdx: Int32Array;
    rChosen: Float64Array;
    y: Float64Array;
    g: Float64Array[];
    loss: Float64Array;
  } | null;
}

interface Latest {
  report: ModelSnapshot;
  /** The report as JSON text, serialised in the thread. */
  json: string;
  weights: Float32Array;
  dim: number;
}

interface SessionSlot {
  latest: Latest | null;
  busy: boolean;
  /** Builds the job from the session's state as it is when the job starts. */
  next: (() => Omit<ReportJob, 'id' | 'features'> | null) | null;
  lastStartMs: number;
  /** How long the last report took: the next starts at least twice that after it (the thread busy half the time at most). */
  lastMs: number;
  timer: NodeJS.Timeout | null;
  featuresSent: Float32Array | null;
  /** The rows of those features the thread has (null: all of them, as sent). */
  rowsSent: Uint8Array | null;
  /** The statistics the thread holds (their per-stimulus arrays, and the trial counts sent), or null. */
  statsSent: { mean: Float64Array; nStim: Int32Array } | null;
}

/** The job of a session's current state, or null before its models exist. O(channels x stimuli) copies. */
export function reportJob(sessionId: string, stats: NeuronStatsState, enc: EncodingState, config: EncodingConfig, rule: ReportRule, minWeightCosine: number): Omit<ReportJob, 'id' | 'features'> {
  const ridge = enc.ridge;
  let model: ReportJob['model'] = null;
  if (ridge) {
    const { n, rows, alphas, g } = ridge.basis;
    const alphaIdx = chosenAlphas(ridge);
    const rChosen = new Float64Array(ridge.N * n);
    for (let t = 0; t < ridge.N; t++) rChosen.set(ridge.r[alphaIdx[t]].subarray(t * n, (t + 1) * n), t * n);
    model = { rows: rows.slice(), refits: enc.refits, alphas, alphaIdx, rChosen, y: ridge.y.slice(), g: g.map((x) => x.slice()), loss: ridge.loss.slice() };
  }
  // the PSTH sums (stimuli x channels x bins) are not part of a report; the stimuli x channels arrays are
  // the session's own here: the job is sent at once, with them whole or only their changed rows (pump)
  const slim: NeuronStatsState = { ...stats, psthSum: [], nStim: stats.nStim.slice(), nCat: stats.nCat.slice(), catMean: stats.catMean.slice(), catM2: stats.catM2.slice(), halfN: [stats.halfN[0].slice(), stats.halfN[1].slice()], recentOnsetsMs: stats.recentOnsetsMs.slice() };
  return { type: 'report', sessionId, stats: slim, ready: enc.withFeatures?.slice() ?? null, dim: enc.featureSet.dim, modelId: enc.featureSet.modelId, backend: enc.featureSet.backend, version: enc.version, config, rule, minWeightCosine, model };
}

/**
 * The statistics of a job as the thread needs them: whole the first time (copies), then only the rows of the
 * stimuli whose trial count changed since the last job (a report at 1,536 channels x 500 stimuli
 * copied about 25 MB of statistics on the event loop; a second of trials changes about ten rows). A row's
 * means change only with a trial of its stimulus (neuron-stats.ts addTrial), so its count says it; comparing
 * every mean as well read stimuli x channels numbers per report on the event loop.
 */
function packStats(job: ReportJob, slot: SessionSlot): void {
  const st = job.stats;
  const C = st.C;
  const sent = slot.statsSent;
  if (!sent || sent.mean !== st.mean) {
    slot.statsSent = { mean: st.mean, nStim: st.nStim.slice() };
    job.stats = { ...st, mean: st.mean.slice(), m2: st.m2.slice(), halfSum: [st.halfSum[0].slice(), st.halfSum[1].slice()] };
    job.statsRows = null;
    return;
  }
  const rows: number[] = [];
  for (let s = 0; s < st.nStim.length; s++) if (st.nStim[s] !== sent.nStim[s]) rows.push(s);
  const pick = (a: Float64Array) => {
    const out = new Float64Array(rows.length * C);
    rows.forEach((s, i) => out.set(a.subarray(s * C, (s + 1) * C), i * C));
    return out;
  };
  sent.nStim.set(st.nStim);
  job.stats = { ...st, mean: pick(st.mean), m2: pick(st.m2), halfSum: [pick(st.halfSum[0]), pick(st.halfSum[1])] };
  job.statsRows = rows;
}

/**
 * The features of a job: whole the first time (and after a failure), then, while the set's are being
 * computed, only the rows the models learnt since the last job (`job.ready` against what was sent).
 */
function packFeatures(job: ReportJob, slot: SessionSlot, features: Float32Array): void {
  if (slot.featuresSent !== features) {
    job.features = features;
    job.featureRows = null;
    slot.featuresSent = features;
    slot.rowsSent = job.ready?.slice() ?? null;
    return;
  }
  const sent = slot.rowsSent;
  if (!sent) return;
  const rows: number[] = [];
  for (let s = 0; s < sent.length; s++) if (!sent[s] && (!job.ready || job.ready[s])) rows.push(s);
  if (!rows.length) return;
  const dim = job.dim;
  const packed = new Float32Array(rows.length * dim);
  rows.forEach((s, k) => {
    packed.set(features.subarray(s * dim, (s + 1) * dim), k * dim);
    sent[s] = 1;
  });
  job.features = packed;
  job.featureRows = rows;
  if (!job.ready) slot.rowsSent = null;
}

/** The job's own copies, moved to the thread without another copy (never the session's features). */
function jobBuffers(job: ReportJob): ArrayBuffer[] {
  const st = job.stats;
  const arrays: ArrayBufferView[] = [st.nStim, st.mean, st.m2, st.nCat, st.catMean, st.catM2, ...st.halfSum, ...st.halfN];
  if (job.featureRows && job.features) arrays.push(job.features);
  if (job.ready) arrays.push(job.ready);
  if (job.model) arrays.push(job.model.alphaIdx, job.model.rChosen, job.model.y, ...job.model.g, job.model.loss);
  return arrays.map((a) => a.buffer as ArrayBuffer);
}

export class ModelReports {
  private worker: Worker | null = null;
  private readonly slots = new Map<string, SessionSlot>();
  private readonly handlers = new Map<number, (msg: { type: string; report?: ModelSnapshot; json?: string; weights?: Float32Array; recomputed?: number; message?: string }) => void>();
  private nextId = 1;
  /**
   * Reports finished, (channel, driver) reference images computed from scratch, jobs that sent the
   * statistics whole and the stimulus rows sent by the others, over all sessions.
   */
  readonly counts = { reports: 0, referencesRecomputed: 0, statsWhole: 0, statsRows: 0 };

  /** Readout cosine below which a channel's reference images are recomputed (the map jobs' rule). */
  readonly minWeightCosine: number;

  /**
   * `onReport` hears of every finished report (the dashboards get it even when no update follows, e.g.
   * the one of an ended session).
   */
  constructor(private readonly opts: { minIntervalMs: number; minWeightCosine: number; onError: (message: string) => void; onReport?: (sessionId: string, report: ModelSnapshot) => void; /** Turns shared with the map jobs while a rig records. */ gate?: AnalysisGate }) {
    this.minWeightCosine = opts.minWeightCosine;
  }

  private start(): Worker {
    if (!this.worker) {
      // at the normal priority: reports are what GET /models, the score history and the dashboards show, and a
      // niced report thread fell behind a fast session (the first report after 250 of 700 trials); niced by
      // compute.workerNice it did not shorten the scale bench's stalls (quick runs: 47 ms niced, 35 ms not)
      const w = new Worker(new URL('./worker-entry.mjs', import.meta.url), { workerData: { module: './report-worker.ts', nice: 0 } });
      w.on('message', (msg: { id: number }) => this.handlers.get(msg.id)?.(msg as never));
      w.on('error', (e) => {
        this.worker = null;
        for (const h of [...this.handlers.values()]) h({ type: 'error', message: `report worker failed: ${e.message}` });
        for (const s of this.slots.values()) {
          s.featuresSent = null;
          s.rowsSent = null;
          s.statsSent = null;
        }
      });
      w.unref();
      this.worker = w;
    }
    return this.worker;
  }

  /**
   * Asks for a report of session `sessionId`; `build` is called when the job starts (the latest state then).
   * `final` (the session has ended: no update will follow) starts it as soon as none is running.
   */
  request(sessionId: string, features: Float32Array, build: () => Omit<ReportJob, 'id' | 'features'> | null, final = false): void {
    let slot = this.slots.get(sessionId);
    if (!slot) this.slots.set(sessionId, (slot = { latest: null, busy: false, next: null, lastStartMs: -Infinity, lastMs: 0, timer: null, featuresSent: null, rowsSent: null, statsSent: null }));
    slot.next = build;
    if (final && slot.timer) {
      clearTimeout(slot.timer);
      slot.timer = null;
      slot.lastStartMs = -Infinity;
    } else if (final) slot.lastStartMs = -Infinity;
    this.pump(sessionId, slot, features);
  }

  private pump(sessionId: string, slot: SessionSlot, features: Float32Array): void {
    if (slot.busy || slot.timer || !slot.next) return;
    const wait = slot.lastStartMs + Math.max(this.opts.minIntervalMs, 2 * slot.lastMs) - Date.now();
    if (wait > 0) {
      slot.timer = setTimeout(() => {
        slot.timer = null;
        this.pump(sessionId, slot, features);
      }, wait);
      slot.timer.unref();
      return;
    }
    const gate = this.opts.gate;
    if (!gate) return void this.startJob(sessionId, slot, features, () => undefined);
    // a turn among the analysis jobs (analysis-gate.ts); meanwhile later requests only replace slot.next
    slot.busy = true;
    gate.run((done) => {
      slot.busy = false;
      if (this.slots.get(sessionId) !== slot || !this.startJob(sessionId, slot, features, done)) done();
    });
  }

  /** Starts the job `slot.next` builds now; false when it builds none. `done` is called when it has ended. */
  private startJob(sessionId: string, slot: SessionSlot, features: Float32Array, done: () => void): boolean {
    const body = slot.next?.() ?? null;
    slot.next = null;
    if (!body) return false;
    const id = this.nextId++;
    const job: ReportJob = { ...body, id, features: null };
    packFeatures(job, slot, features);
    packStats(job, slot);
    if (job.statsRows) this.counts.statsRows += job.statsRows.length;
    else this.counts.statsWhole++;
    slot.busy = true;
    slot.lastStartMs = Date.now();
    this.handlers.set(id, (msg) => {
      this.handlers.delete(id);
      slot.busy = false;
      done();
      slot.lastMs = Date.now() - slot.lastStartMs;
      if (msg.type === 'report' && msg.report && msg.weights) {
        slot.latest = { report: msg.report, json: msg.json ?? JSON.stringify(msg.report), weights: msg.weights, dim: body.dim };
        this.counts.reports++;
        this.counts.referencesRecomputed += msg.recomputed ?? 0;
        if (this.slots.get(sessionId) === slot) this.opts.onReport?.(sessionId, msg.report);
      } else {
        slot.featuresSent = null;
        slot.rowsSent = null;
        slot.statsSent = null;
        this.opts.onError(`model report failed: ${msg.message}`);
      }
      if (!this.handlers.size) this.worker?.unref();
      if (this.slots.get(sessionId) === slot) this.pump(sessionId, slot, features);
    });
    const w = this.start();
    w.ref();
    w.postMessage(job, jobBuffers(job));
    return true;
  }

  /** The latest finished report of a session, or null before the first. */
  report(sessionId: string): ModelSnapshot | null {
    return this.slots.get(sessionId)?.latest?.report ?? null;
  }

  /** The latest finished report of a session as JSON text (serialised in the thread), or null. */
  reportJson(sessionId: string): string | null {
    return this.slots.get(sessionId)?.latest?.json ?? null;
  }

  /** Readout weights of channel `c` in the latest report, or null. */
  readout(sessionId: string, c: number): Float32Array | null {
    const l = this.slots.get(sessionId)?.latest;
    return l ? l.weights.slice(c * l.dim, (c + 1) * l.dim) : null;
  }

  /** Whether a report is being computed or waiting to start for a session. */
  pending(sessionId: string): boolean {
    const s = this.slots.get(sessionId);
    return !!s && (s.busy || !!s.next);
  }

  /** Drops a session's reports and the worker's caches for it. */
  forget(sessionId: string): void {
    const s = this.slots.get(sessionId);
    if (s?.timer) clearTimeout(s.timer);
    this.slots.delete(sessionId);
    this.worker?.postMessage({ type: 'forget', sessionId });
  }

  async close(): Promise<void> {
    for (const s of this.slots.values()) if (s.timer) clearTimeout(s.timer);
    this.slots.clear();
    await this.worker?.terminate();
    this.worker = null;
  }
}
