/**
 * Trial assembly as a plain state machine: validated frames in, completed or aborted trials out.
 * Response of a channel = count in [onset + latency, onset + latency + responseWindow) minus the count in
 * [onset - baselineWindow, onset) scaled to the response window's number of bins. A bin belongs to a
 * window when its start time falls inside it. In `binned` mode a trial completes once its stim:offset has
 * arrived and the bins cover its response window; in `trial` mode its counts:trial frame completes it.
 */
import type { Frame, SessionStart } from '@sharedlens/shared';

export interface CompletedTrial {
  kind: 'completed';
  trial: number;
  stimulusId: string;
  onsetMs: number;
  /** Sequence number of the frame whose arrival completed the trial (latency bookkeeping). */
  seq: number;
  /** Baseline-subtracted response per channel, spikes per response window. */
  responses: Float64Array;
  /** Raw counts per channel and PSTH bin, channel-major (C x nPsthBins); binned mode only. */
  psth?: Float64Array;
}
export interface AbortedTrial {
  kind: 'aborted';
  trial: number;
  stimulusId: string;
  onsetMs: number;
  seq: number;
}
export type TrialOutcome = CompletedTrial | AbortedTrial;

interface Chunk {
  startMs: number;
  nBins: number;
  counts: Uint16Array;
}
interface OpenTrial {
  trial: number;
  stimulusId: string;
  onsetMs: number;
  offsetSeen: boolean;
}

export interface PsthLayout {
  /** Start of the first PSTH bin relative to onset (negative: baseline). */
  startMs: number;
  binMs: number;
  nBins: number;
}

export interface AssemblerState {
  start: SessionStart;
  nChannels: number;
  psth: PsthLayout;
  chunks: Chunk[];
  coveredUntilMs: number;
  open: Map<number, OpenTrial>;
}

/** Millisecond slack kept behind the newest bin so a late onset still finds its baseline. */
const RETAIN_SLACK_MS = 5_000;
const EPS = 1e-9;
const STALE_TRIAL_MS = 60_000;

/** PSTH bins from onset - baseline to the end of the response window, at least one data bin wide. */
export function psthLayout(start: SessionStart, psthBinMs: number): PsthLayout {
  const t = start.timing;
  const binMs = Math.max(psthBinMs, t.binWidthMs);
  const startMs = -t.baselineWindowMs;
  const nBins = Math.max(1, Math.ceil((t.latencyMs + t.responseWindowMs - startMs) / binMs - EPS));
  return { startMs, binMs, nBins };
}

/** Fresh state for one session. */
export function createAssembler(start: SessionStart, psthBinMs: number): AssemblerState {
  return {
    start,
    nChannels: start.channels.length,
    psth: psthLayout(start, psthBinMs),
    chunks: [],
    coveredUntilMs: -Infinity,
    open: new Map(),
  };
}

/**
 * Applies one frame; returns the trials it completed or aborted, in onset order. Mutates `state`
 * (the caller owns it per subscription).
 */
export function stepAssembler(state: AssemblerState, frame: Frame): TrialOutcome[] {
  switch (frame.type) {
    case 'stim:onset':
      state.open.set(frame.trial, { trial: frame.trial, stimulusId: frame.stimulusId, onsetMs: frame.tMs, offsetSeen: false });
      return [];
    case 'stim:offset': {
      const t = state.open.get(frame.trial);
      if (!t) return [];
      t.offsetSeen = true;
      return state.start.countsMode === 'binned' ? completeCovered(state, frame.seq) : [];
    }
    case 'trial:abort': {
      const t = state.open.get(frame.trial);
      if (!t) return [];
      state.open.delete(frame.trial);
      return [{ kind: 'aborted', trial: t.trial, stimulusId: t.stimulusId, onsetMs: t.onsetMs, seq: frame.seq }];
    }
    case 'counts:binned': {
      state.chunks.push({ startMs: frame.startMs, nBins: frame.nBins, counts: frame.counts });
      state.coveredUntilMs = frame.startMs + frame.nBins * state.start.timing.binWidthMs;
      const done = completeCovered(state, frame.seq);
      dropOldChunks(state);
      return done;
    }
    case 'counts:trial': {
      const t = state.open.get(frame.trial);
      if (!t) return [];
      state.open.delete(frame.trial);
      return [{ kind: 'completed', trial: t.trial, stimulusId: t.stimulusId, onsetMs: t.onsetMs, seq: frame.seq, responses: trialResponses(state.start, frame.responseCounts, frame.baselineCounts) }];
    }
    default:
      return [];
  }
}

/** Response minus baseline scaled by window lengths, for rigs that send one count vector per trial. */
export function trialResponses(start: SessionStart, response: Float64Array, baseline?: Float64Array): Float64Array {
  const out = Float64Array.from(response);
  const { baselineWindowMs, responseWindowMs } = start.timing;
  if (baseline && baselineWindowMs > 0) {
    const scale = responseWindowMs / baselineWindowMs;
    for (let c = 0; c < out.length; c++) out[c] -= baseline[c] * scale;
  }
  return out;
}

function completeCovered(state: AssemblerState, seq: number): TrialOutcome[] {
  const { latencyMs, responseWindowMs } = state.start.timing;
  const ready: OpenTrial[] = [];
  for (const t of state.open.values()) {
    if (t.offsetSeen && t.onsetMs + latencyMs + responseWindowMs <= state.coveredUntilMs + EPS) ready.push(t);
  }
  ready.sort((a, b) => a.onsetMs - b.onsetMs || a.trial - b.trial);
  return ready.map((t) => {
    state.open.delete(t.trial);
    return { kind: 'completed' as const, trial: t.trial, stimulusId: t.stimulusId, onsetMs: t.onsetMs, seq, ...windowCounts(state, t.onsetMs) };
  });
}

/** Sums the response and baseline windows and the PSTH of one trial over the retained chunks. */
function windowCounts(state: AssemblerState, onsetMs: number): { responses: Float64Array; psth: Float64Array } {
  const C = state.nChannels;
  const { latencyMs, responseWindowMs, baselineWindowMs, binWidthMs: bw } = state.start.timing;
  const respFrom = onsetMs + latencyMs;
  const respTo = respFrom + responseWindowMs;
  const baseFrom = onsetMs - baselineWindowMs;
  const { psth: layout } = state;
  const resp = new Float64Array(C);
  const base = new Float64Array(C);
  const psth = new Float64Array(C * layout.nBins);
  let nResp = 0;
  let nBase = 0;
  for (const ch of state.chunks) {
    const chEnd = ch.startMs + ch.nBins * bw;
    if (chEnd <= baseFrom + EPS || ch.startMs >= respTo - EPS) continue;
    const i0 = Math.max(0, Math.ceil((baseFrom - ch.startMs) / bw - EPS));
    const i1 = Math.min(ch.nBins, Math.ceil((respTo - ch.startMs) / bw - EPS));
    for (let i = i0; i < i1; i++) {
      const tMs = ch.startMs + i * bw;
      const row = ch.counts.subarray(i * C, i * C + C);
      const p = Math.min(layout.nBins - 1, Math.floor((tMs - onsetMs - layout.startMs) / layout.binMs + EPS));
      for (let c = 0; c < C; c++) psth[c * layout.nBins + p] += row[c];
      if (tMs >= respFrom - EPS) {
        nResp++;
        for (let c = 0; c < C; c++) resp[c] += row[c];
      } else if (tMs < onsetMs - EPS) {
        nBase++;
        for (let c = 0; c < C; c++) base[c] += row[c];
      }
    }
  }
  if (nBase > 0 && nResp > 0) {
    const scale = nResp / nBase;
    for (let c = 0; c < C; c++) resp[c] -= base[c] * scale;
  }
  return { responses: resp, psth };
}

function dropOldChunks(state: AssemblerState): void {
  const t = state.start.timing;
  let keepFrom = state.coveredUntilMs - (t.baselineWindowMs + t.latencyMs + t.responseWindowMs + RETAIN_SLACK_MS);
  for (const o of state.open.values()) {
    // a trial whose offset never came stops holding memory after STALE_TRIAL_MS
    if (o.onsetMs > state.coveredUntilMs - STALE_TRIAL_MS) keepFrom = Math.min(keepFrom, o.onsetMs - t.baselineWindowMs);
  }
  let n = 0;
  while (n < state.chunks.length && state.chunks[n].startMs + state.chunks[n].nBins * t.binWidthMs <= keepFrom) n++;
  if (n > 0) state.chunks.splice(0, n);
}
