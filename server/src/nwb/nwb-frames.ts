/**
 * Turns the presentations and counts of an NWB file into sharedlens frames, in time order, reading the
 * counts one block of rows at a time (memory independent of the session's length). Spike times of a Units
 * table are binned here: a spike at t falls in bin floor((t - t0) / binWidth).
 */
import type { File as H5File } from 'h5wasm/node';
import type { Frame, SessionStart } from '@sharedlens/shared';
import { NwbLayoutError, readRows, readValues, type NwbLayout } from './read-nwb.ts';

export interface FrameOptions {
  sessionId: string;
  start: SessionStart;
  /** Rig time (ms) of the file's time zero. */
  zeroMs: number;
  /** Trials whose offset is missing get one at onset + latency + response window (files not from sharedlens). */
  synthesiseOffsets: boolean;
  /** Bins per counts:binned frame. */
  blockRows?: number;
}

/** Frames due at `tMs`; per-trial counts are read from the file only when their turn comes. */
type Event = { tMs: number; order: number; frames: Frame[]; rows?: number[] };

/** Rig milliseconds of file seconds, rounded to 1 ns so a sharedlens export gives back its exact times. */
export const rigMs = (s: number, zeroMs: number): number => Math.round((zeroMs + s * 1000) * 1e6) / 1e6;

/** Every frame after session:start, in time order, with seq numbers from 1. */
export function* nwbFrames(f: H5File, layout: NwbLayout, o: FrameOptions): Generator<Frame> {
  let seq = 0;
  const sessionId = o.sessionId;
  const t = o.start.timing;
  const trialMode = o.start.countsMode === 'trial';
  const rowsByTrial = trialMode && layout.counts.kind === 'trial' ? trialRows(f, layout) : null;
  const events: Event[] = [];
  layout.trials.forEach((tr, order) => {
    const onsetMs = rigMs(tr.onsetS, o.zeroMs);
    const onset: Frame = { type: 'stim:onset', sessionId, seq: 0, trial: tr.trial, stimulusId: tr.stimulusId, tMs: onsetMs };
    if (tr.aborted) {
      events.push({ tMs: onsetMs, order, frames: [onset, { type: 'trial:abort', sessionId, seq: 0, trial: tr.trial, ...(tr.abortReason ? { reason: tr.abortReason } : {}) }] });
      return;
    }
    events.push({ tMs: onsetMs, order, frames: [onset] });
    const offsetMs = tr.offsetS !== null ? rigMs(tr.offsetS, o.zeroMs) : o.synthesiseOffsets ? onsetMs + t.latencyMs + t.responseWindowMs : null;
    const after: Frame[] = offsetMs !== null ? [{ type: 'stim:offset', sessionId, seq: 0, trial: tr.trial, stimulusId: tr.stimulusId, tMs: offsetMs }] : [];
    const rows = rowsByTrial?.get(tr.trial);
    if (after.length || rows) events.push({ tMs: offsetMs ?? onsetMs, order, frames: after, ...(rows ? { rows } : {}) });
  });
  events.sort((a, b) => a.tMs - b.tMs || a.order - b.order);
  const stamp = (fr: Frame): Frame => ({ ...fr, seq: ++seq }) as Frame;
  let e = 0;
  const eventsBefore = function* (endMs: number) {
    while (e < events.length && events[e].tMs < endMs) {
      const ev = events[e++];
      for (const fr of ev.frames) yield stamp(fr);
      for (const row of ev.rows ?? []) yield stamp(trialCounts(f, layout, row, sessionId));
    }
  };
  if (!trialMode) {
    for (const block of binnedBlocks(f, layout, o)) {
      yield* eventsBefore(block.startMs + block.nBins * t.binWidthMs);
      yield stamp({ type: 'counts:binned', sessionId, seq: 0, startMs: block.startMs, binWidthMs: t.binWidthMs, nBins: block.nBins, counts: block.counts });
    }
  }
  yield* eventsBefore(Infinity);
  yield stamp({ type: 'session:end', sessionId, seq: 0 });
}

/** Rows of a sharedlens export's per-trial counts, by trial number (the trial column only). */
function trialRows(f: H5File, layout: NwbLayout): Map<number, number[]> {
  const c = layout.counts;
  const out = new Map<number, number[]>();
  if (c.kind !== 'trial') return out;
  const trials = readValues(f, `${c.path}/trial`, 0, c.rows);
  for (let i = 0; i < c.rows; i++) {
    const list = out.get(Number(trials[i])) ?? [];
    list.push(i);
    out.set(Number(trials[i]), list);
  }
  return out;
}

/** One row of per-trial counts as its counts:trial frame (baseline left out where it is NaN). */
function trialCounts(f: H5File, layout: NwbLayout, row: number, sessionId: string): Frame {
  const c = layout.counts;
  if (c.kind !== 'trial') throw new Error('not a trial-mode file');
  const trial = Number(readValues(f, `${c.path}/trial`, row, row + 1)[0]);
  const responseCounts = Float64Array.from(readRows(f, `${c.path}/response_counts`, row, row + 1));
  const b = c.baseline ? Float64Array.from(readRows(f, `${c.path}/baseline_counts`, row, row + 1)) : null;
  return { type: 'counts:trial', sessionId, seq: 0, trial, responseCounts, ...(b && !b.some(Number.isNaN) ? { baselineCounts: b } : {}) };
}

interface Block {
  startMs: number;
  nBins: number;
  counts: Uint16Array;
}

const toCounts = (v: ArrayLike<number>, what: string): Uint16Array => {
  const out = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const x = Number(v[i]);
    if (!(x >= 0 && x <= 65_535 && Number.isInteger(x))) throw new Error(`${what}: count ${x} is not a whole number in 0-65535`);
    out[i] = x;
  }
  return out;
};

/** The counts as blocks of contiguous bins. */
function* binnedBlocks(f: H5File, layout: NwbLayout, o: FrameOptions): Generator<Block> {
  const c = layout.counts;
  const bw = o.start.timing.binWidthMs;
  const block = o.blockRows ?? 1000;
  if (c.kind === 'binned') {
    const C = c.channels;
    if (c.timestampsPath) {
      // bins at given times: a frame ends where the next bin does not follow on
      for (let r0 = 0; r0 < c.rows; r0 += block) {
        const r1 = Math.min(c.rows, r0 + block);
        const ts = readValues(f, c.timestampsPath, r0, r1);
        const rows = toCounts(readRows(f, `${c.path}/data`, r0, r1), c.path);
        let s = 0;
        for (let i = 1; i <= r1 - r0; i++) {
          if (i === r1 - r0 || Math.abs(rigMs(ts[i], o.zeroMs) - rigMs(ts[i - 1], o.zeroMs) - bw) > 1e-6) {
            yield { startMs: rigMs(ts[s], o.zeroMs), nBins: i - s, counts: rows.slice(s * C, i * C) };
            s = i;
          }
        }
      }
      return;
    }
    const firstMs = rigMs(c.startS, o.zeroMs);
    for (let r0 = 0; r0 < c.rows; r0 += block) {
      const r1 = Math.min(c.rows, r0 + block);
      yield { startMs: firstMs + r0 * bw, nBins: r1 - r0, counts: toCounts(readRows(f, `${c.path}/data`, r0, r1), c.path) };
    }
    return;
  }
  if (c.kind === 'units') yield* unitBlocks(f, layout, o, block);
}

/** Bins the spike times of every unit, one block of bins at a time, reading each unit's spikes in slices. */
function* unitBlocks(f: H5File, layout: NwbLayout, o: FrameOptions, block: number): Generator<Block> {
  const c = layout.counts;
  if (c.kind !== 'units') return;
  const bw = o.start.timing.binWidthMs;
  const t = o.start.timing;
  let firstMs = rigMs(c.firstS, o.zeroMs);
  let lastMs = rigMs(c.lastS, o.zeroMs);
  for (const tr of layout.trials) {
    const onset = rigMs(tr.onsetS, o.zeroMs);
    firstMs = Math.min(firstMs, onset - t.baselineWindowMs);
    lastMs = Math.max(lastMs, onset + t.latencyMs + t.responseWindowMs);
  }
  const t0 = Math.floor(firstMs / bw) * bw;
  const totalBins = Math.max(1, Math.ceil((lastMs - t0) / bw) + 1);
  const U = c.units;
  const SLICE = 65_536;
  const cursor = c.index.map((_, u) => (u === 0 ? 0 : c.index[u - 1]));
  const lastSpike = new Float64Array(U).fill(-Infinity);
  const bufs: { from: number; values: ArrayLike<number> }[] = c.index.map(() => ({ from: 0, values: [] }));
  const spikeAt = (u: number, i: number): number => {
    const b = bufs[u];
    if (i < b.from || i >= b.from + b.values.length) {
      bufs[u] = { from: i, values: readValues(f, 'units/spike_times', i, Math.min(c.index[u], i + SLICE)) };
    }
    return bufs[u].values[i - bufs[u].from];
  };
  for (let b0 = 0; b0 < totalBins; b0 += block) {
    const nBins = Math.min(block, totalBins - b0);
    const counts = new Uint16Array(nBins * U);
    const endMs = t0 + (b0 + nBins) * bw;
    for (let u = 0; u < U; u++) {
      while (cursor[u] < c.index[u]) {
        const ms = rigMs(spikeAt(u, cursor[u]), o.zeroMs);
        // binning block by block needs each unit's spike times in order (NWB asks for it; not every writer does)
        if (ms < lastSpike[u]) throw new NwbLayoutError(`the spike times of unit ${layout.channels[u].id} are not sorted (spike ${cursor[u]})`);
        lastSpike[u] = ms;
        if (ms >= endMs) break;
        const bin = Math.floor((ms - t0) / bw) - b0;
        if (bin >= 0) counts[bin * U + u] = Math.min(65_535, counts[bin * U + u] + 1);
        cursor[u]++;
      }
    }
    yield { startMs: t0 + b0 * bw, nBins, counts };
  }
}
