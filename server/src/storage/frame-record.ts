/**
 * Frames as stored in the session log, and their validation on the way back in: a recorded file is
 * outside input too, so every record passes a schema before it becomes a Frame again.
 */
import { z } from 'zod';
import {
  countsBinnedSchema,
  countsTrialSchema,
  fieldErrors,
  sessionEndSchema,
  sessionStartSchema,
  stimOnsetSchema,
  stimulusSchema,
  suggestionSchema,
  toFloat64,
  toUint16,
  trialAbortSchema,
  type Frame,
} from '@sharedlens/shared';

export interface LogRecord {
  /** Server wall-clock time of acceptance (ms since epoch); paces 1x replays. */
  atMs: number;
  frame: Frame;
}

/**
 * What a live session counted besides its frames: a rejected rig event (by code) or a sequence gap.
 * Recorded as records of their own kind so a replay reproduces every count the live session showed.
 */
export type Note = { kind: 'rejected'; sessionId: string; seq?: number; event: string; code: string } | { kind: 'gap'; sessionId: string; seq: number; from: number; to: number };
export interface NoteRecord {
  atMs: number;
  note: Note;
}
/** Any record of a session log. */
export type StoredItem = LogRecord | NoteRecord;

const frameSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('session:start'), sessionId: z.string(), startedAt: z.string(), start: sessionStartSchema, stimuli: z.array(stimulusSchema), owner: z.string().optional() }),
  stimOnsetSchema.extend({ type: z.literal('stim:onset') }),
  stimOnsetSchema.extend({ type: z.literal('stim:offset') }),
  countsBinnedSchema.extend({ type: z.literal('counts:binned'), nBins: z.number().int().min(0) }),
  countsTrialSchema.extend({ type: z.literal('counts:trial') }),
  trialAbortSchema.extend({ type: z.literal('trial:abort') }),
  sessionEndSchema.extend({ type: z.literal('session:end') }),
  z.object({ type: z.literal('followup:suggested'), sessionId: z.string(), seq: z.number().int().optional(), origin: z.enum(['rig', 'dashboard']), atMs: z.number(), suggestions: z.array(suggestionSchema), by: z.string().optional() }),
]);
const recordSchema = z.object({ atMs: z.number(), frame: frameSchema });
const noteSchema = z.object({
  atMs: z.number(),
  note: z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('rejected'), sessionId: z.string(), seq: z.number().int().optional(), event: z.string(), code: z.string() }),
    z.object({ kind: z.literal('gap'), sessionId: z.string(), seq: z.number().int(), from: z.number().int(), to: z.number().int() }),
  ]),
});

/** The storable form of a record: typed arrays become bytes or plain arrays. */
export function toStored(rec: LogRecord): unknown {
  const f = rec.frame;
  if (f.type === 'counts:trial') {
    return { atMs: rec.atMs, frame: { ...f, responseCounts: Array.from(f.responseCounts), ...(f.baselineCounts ? { baselineCounts: Array.from(f.baselineCounts) } : {}) } };
  }
  return rec;
}

/** Validates a decoded record and rebuilds its Frame (or note); returns an error message instead of throwing. */
export function fromStored(value: unknown): StoredItem | string {
  if (value !== null && typeof value === 'object' && 'note' in value) {
    const note = noteSchema.safeParse(value);
    return note.success ? note.data : fieldErrors(note.error).join('; ');
  }
  const parsed = recordSchema.safeParse(value);
  if (!parsed.success) return fieldErrors(parsed.error).join('; ');
  const { atMs, frame } = parsed.data;
  switch (frame.type) {
    case 'counts:binned': {
      const counts = toUint16(frame.counts);
      if (typeof counts === 'string') return counts;
      return { atMs, frame: { ...frame, counts } };
    }
    case 'counts:trial': {
      const responseCounts = toFloat64(frame.responseCounts);
      const baselineCounts = frame.baselineCounts ? toFloat64(frame.baselineCounts) : undefined;
      if (typeof responseCounts === 'string') return responseCounts;
      if (typeof baselineCounts === 'string') return baselineCounts;
      const { baselineCounts: _raw, ...rest } = frame;
      return { atMs, frame: { ...rest, responseCounts, ...(baselineCounts ? { baselineCounts } : {}) } };
    }
    default:
      return { atMs, frame };
  }
}
