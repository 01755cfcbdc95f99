/**
 * Semantic checks of rig events against the state of their session, as plain functions: a schema-valid
 * payload becomes either a Frame or a rejection naming the problem. The guard is applied only after the
 * frame was recorded, so a rejected or unrecordable event changes nothing.
 */
import { z } from 'zod';
import { toFloat64, toUint16, type AckError, type Frame, type RigEventName, type SessionStart, type Stimulus } from '@sharedlens/shared';

export interface GuardState {
  sessionId: string;
  start: SessionStart;
  C: number;
  stimuli: Map<string, Stimulus>;
  /** Last sequence number consumed (accepted or rejected after parsing). */
  lastSeq: number;
  /** Last sequence number of an accepted (recorded) event; what a resuming rig is told. */
  lastAcceptedSeq: number;
  seqGaps: number;
  /** Trials with an onset and neither offset nor abort yet. */
  open: Map<number, { stimulusId: string; onsetMs: number }>;
  /** Trial-count mode: trials closed by their offset and waiting for counts:trial. */
  awaitingCounts: Set<number>;
  usedTrials: Set<number>;
  /** End of the last binned chunk (rig ms). */
  lastBinEndMs: number;
  ended: boolean;
}

const EPS = 1e-6;

/**
 * Bytes the statistics of a session would hold: per (stimulus, channel) a mean, a second moment and two
 * split-half sums, plus a PSTH sum per bin in binned sessions (8-byte floats). Checked against the memory
 * budget before a session starts.
 */
export function sessionMemoryBytes(start: SessionStart, nStimuli: number, psthBinMs: number): number {
  const t = start.timing;
  const binMs = Math.max(psthBinMs, t.binWidthMs);
  const psthBins = start.countsMode === 'binned' ? Math.ceil((t.baselineWindowMs + t.latencyMs + t.responseWindowMs) / binMs) : 0;
  return 8 * start.channels.length * nStimuli * (4 + psthBins);
}

/** The guard as JSON-safe data, for a checkpoint of the session log. */
export function saveGuard(g: GuardState): unknown {
  return { lastSeq: g.lastSeq, lastAcceptedSeq: g.lastAcceptedSeq, seqGaps: g.seqGaps, open: [...g.open], awaitingCounts: [...g.awaitingCounts], usedTrials: [...g.usedTrials], lastBinEndMs: Number.isFinite(g.lastBinEndMs) ? g.lastBinEndMs : null, ended: g.ended };
}

const seqNumber = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
/** What saveGuard writes; a checkpoint's state is checked against it before resume trusts it. */
const savedGuardSchema = z.object({
  lastSeq: seqNumber,
  lastAcceptedSeq: seqNumber,
  seqGaps: z.number().int().nonnegative(),
  open: z.array(z.tuple([z.number(), z.object({ stimulusId: z.string(), onsetMs: z.number() })])),
  awaitingCounts: z.array(z.number()),
  usedTrials: z.array(z.number()),
  lastBinEndMs: z.number().nullable(),
  ended: z.boolean(),
});

/**
 * Why a checkpoint's saved guard cannot be trusted, or null. `lastRecordSeq` is the seq of the log record
 * the checkpoint ends at: a checkpoint is written right after an accepted event, so both of its sequence
 * numbers are that record's (a checkpoint that claims more would acknowledge the rig's next events as
 * duplicates without recording them).
 */
export function checkSavedGuard(saved: unknown, lastRecordSeq: number): string | null {
  const parsed = savedGuardSchema.safeParse(saved);
  if (!parsed.success) return `its state is not a saved ingest state (${parsed.error.issues.map((i) => `${i.path.join('.') || 'state'}: ${i.message}`).join('; ')})`;
  const s = parsed.data;
  if (s.lastSeq !== lastRecordSeq || s.lastAcceptedSeq !== lastRecordSeq) return `its state says seq ${s.lastSeq} (accepted ${s.lastAcceptedSeq}) but the record it ends at has seq ${lastRecordSeq}`;
  return null;
}

/** Rebuilds a guard from its session:start frame and a checkpoint written by saveGuard. */
export function restoreGuard(start: Extract<Frame, { type: 'session:start' }>, saved: unknown): GuardState {
  const s = saved as { lastSeq: number; lastAcceptedSeq: number; seqGaps: number; open: [number, { stimulusId: string; onsetMs: number }][]; awaitingCounts: number[]; usedTrials: number[]; lastBinEndMs: number | null; ended: boolean };
  const g = createGuard(start.sessionId, start.start, start.stimuli);
  g.lastSeq = s.lastSeq;
  g.lastAcceptedSeq = s.lastAcceptedSeq;
  g.seqGaps = s.seqGaps;
  g.open = new Map(s.open);
  g.awaitingCounts = new Set(s.awaitingCounts);
  g.usedTrials = new Set(s.usedTrials);
  g.lastBinEndMs = s.lastBinEndMs ?? -Infinity;
  g.ended = s.ended;
  return g;
}

export function createGuard(sessionId: string, start: SessionStart, stimuli: Stimulus[]): GuardState {
  return {
    sessionId,
    start,
    C: start.channels.length,
    stimuli: new Map(stimuli.map((s) => [s.id, s])),
    lastSeq: 0,
    lastAcceptedSeq: 0,
    seqGaps: 0,
    open: new Map(),
    awaitingCounts: new Set(),
    usedTrials: new Set(),
    lastBinEndMs: -Infinity,
    ended: false,
  };
}

type Parsed = Record<string, unknown> & { sessionId: string; seq: number };
const err = (code: AckError['code'], message: string): { error: AckError } => ({ error: { code, message } });

/** Checks one schema-valid event of an existing session; returns the Frame to record or the rejection. */
export function checkEvent(g: GuardState, event: Exclude<RigEventName, 'session:start' | 'session:resume' | 'followup:request'>, p: Parsed): { frame: Frame } | { error: AckError } {
  if (g.ended) return err('session-ended', `session ${g.sessionId} has ended; start a new session`);
  switch (event) {
    case 'stim:onset': {
      const { trial, stimulusId, tMs } = p as unknown as { trial: number; stimulusId: string; tMs: number };
      if (!g.stimuli.has(stimulusId)) return err('unknown-stimulus', `stimulus "${stimulusId}" is not in stimulus set ${g.start.stimulusSetId}`);
      if (g.usedTrials.has(trial)) return err('bad-trial-state', `trial ${trial} already had an onset`);
      return { frame: { type: 'stim:onset', sessionId: g.sessionId, seq: p.seq, trial, stimulusId, tMs } };
    }
    case 'stim:offset': {
      const { trial, stimulusId, tMs } = p as unknown as { trial: number; stimulusId: string; tMs: number };
      const o = g.open.get(trial);
      if (!o) return err('bad-trial-state', `stim:offset for trial ${trial} without an open onset`);
      if (o.stimulusId !== stimulusId) return err('bad-trial-state', `trial ${trial} showed "${o.stimulusId}", offset names "${stimulusId}"`);
      if (tMs < o.onsetMs) return err('bad-trial-state', `offset at ${tMs} ms precedes its onset at ${o.onsetMs} ms`);
      return { frame: { type: 'stim:offset', sessionId: g.sessionId, seq: p.seq, trial, stimulusId, tMs } };
    }
    case 'trial:abort': {
      const { trial, reason } = p as unknown as { trial: number; reason?: string };
      if (!g.open.has(trial)) return err('bad-trial-state', `trial:abort for trial ${trial}, which is not open (abort must precede stim:offset)`);
      return { frame: { type: 'trial:abort', sessionId: g.sessionId, seq: p.seq, trial, ...(reason !== undefined ? { reason } : {}) } };
    }
    case 'counts:binned': {
      const bad = checkChannelIds(g, p.channelIds);
      if (bad) return bad;
      if (g.start.countsMode !== 'binned') return err('invalid', 'this session was started with countsMode "trial"; send counts:trial');
      const { startMs, binWidthMs } = p as unknown as { startMs: number; binWidthMs: number };
      if (Math.abs(binWidthMs - g.start.timing.binWidthMs) > EPS) return err('wrong-size', `binWidthMs ${binWidthMs} differs from the session's ${g.start.timing.binWidthMs}`);
      const counts = toUint16(p.counts as Uint8Array | Uint16Array | number[]);
      if (typeof counts === 'string') return err('invalid', counts);
      if (counts.length === 0 || counts.length % g.C !== 0) return err('wrong-size', `counts hold ${counts.length} values, not a whole number of bins of ${g.C} channels`);
      if (startMs < g.lastBinEndMs - EPS) return err('bad-sequence', `bins start at ${startMs} ms, before the end of the previous bins (${g.lastBinEndMs} ms)`);
      return { frame: { type: 'counts:binned', sessionId: g.sessionId, seq: p.seq, startMs, binWidthMs, nBins: counts.length / g.C, counts } };
    }
    case 'counts:trial': {
      const bad = checkChannelIds(g, p.channelIds);
      if (bad) return bad;
      if (g.start.countsMode !== 'trial') return err('invalid', 'this session was started with countsMode "binned"; send counts:binned');
      const trial = p.trial as number;
      if (!g.awaitingCounts.has(trial)) return err('bad-trial-state', `counts:trial for trial ${trial}, which is not closed by a stim:offset and waiting for counts`);
      const responseCounts = toFloat64(p.responseCounts as number[]);
      if (typeof responseCounts === 'string') return err('invalid', responseCounts);
      if (responseCounts.length !== g.C) return err('wrong-size', `responseCounts has ${responseCounts.length} values for ${g.C} channels`);
      let baselineCounts: Float64Array | undefined;
      if (p.baselineCounts !== undefined) {
        const b = toFloat64(p.baselineCounts as number[]);
        if (typeof b === 'string') return err('invalid', b);
        if (b.length !== g.C) return err('wrong-size', `baselineCounts has ${b.length} values for ${g.C} channels`);
        baselineCounts = b;
      }
      return { frame: { type: 'counts:trial', sessionId: g.sessionId, seq: p.seq, trial, responseCounts, ...(baselineCounts ? { baselineCounts } : {}) } };
    }
    case 'session:end':
      return { frame: { type: 'session:end', sessionId: g.sessionId, seq: p.seq } };
  }
}

/** An optional channelIds list must name the session's channels in the session's order. */
function checkChannelIds(g: GuardState, ids: unknown): { error: AckError } | null {
  if (ids === undefined) return null;
  const list = ids as string[];
  const known = new Set(g.start.channels.map((c) => c.id));
  const unknown = list.filter((c) => !known.has(c));
  if (unknown.length) return err('unknown-channel', `unknown channel ids: ${unknown.slice(0, 10).join(', ')}${unknown.length > 10 ? ` and ${unknown.length - 10} more` : ''}`);
  if (list.length !== g.C || list.some((c, i) => c !== g.start.channels[i].id)) return err('wrong-size', `channelIds must list the session's ${g.C} channels in session order`);
  return null;
}

/** Advances the guard by an accepted (recorded) frame; also used to rebuild it from a log. */
export function applyFrame(g: GuardState, f: Frame): void {
  if ('seq' in f && f.seq !== undefined) g.lastAcceptedSeq = Math.max(g.lastAcceptedSeq, f.seq);
  g.lastSeq = Math.max(g.lastSeq, g.lastAcceptedSeq);
  switch (f.type) {
    case 'stim:onset':
      g.usedTrials.add(f.trial);
      g.open.set(f.trial, { stimulusId: f.stimulusId, onsetMs: f.tMs });
      break;
    case 'stim:offset':
      g.open.delete(f.trial);
      if (g.start.countsMode === 'trial') g.awaitingCounts.add(f.trial);
      break;
    case 'trial:abort':
      g.open.delete(f.trial);
      break;
    case 'counts:binned':
      g.lastBinEndMs = f.startMs + f.nBins * f.binWidthMs;
      break;
    case 'counts:trial':
      g.awaitingCounts.delete(f.trial);
      break;
    case 'session:end':
      g.ended = true;
      break;
  }
}
