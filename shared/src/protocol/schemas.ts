/**
 * The rig wire contract as zod schemas. Every payload from outside the process is `unknown` until one of
 * these accepts it; the TypeScript types of the protocol are inferred from them (events.ts), never
 * written twice. Units are in the names: milliseconds of rig time end in `Ms`.
 */
import { z } from 'zod';

const id = z.string().min(1).max(128);
const finite = z.number().refine(Number.isFinite, 'must be a finite number');
const rigMs = finite.describe('rig timestamp in milliseconds');
const trialNumber = z.number().int().min(0).max(2 ** 31);
/** Per-rig, per-session sequence number: 1 for the first event after session:start, then +1 each. */
const seq = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

export const channelSchema = z.object({
  id,
  label: z.string().max(128),
  area: z.string().max(64).optional(),
  depthUm: finite.optional(),
});

export const timingSchema = z.object({
  /** Length of the response window, counted from onset + latency. */
  responseWindowMs: finite.pipe(z.number().positive().max(10_000)),
  latencyMs: finite.pipe(z.number().min(0).max(5_000)),
  /** Baseline window just before onset; 0 disables baseline subtraction. */
  baselineWindowMs: finite.pipe(z.number().min(0).max(10_000)),
  /** Width of one bin of binned counts. */
  binWidthMs: finite.pipe(z.number().positive().max(1_000)),
});

export const sessionStartSchema = z.object({
  rigId: id,
  subject: id,
  channels: z
    .array(channelSchema)
    .min(1)
    .max(8192)
    .refine((cs) => new Set(cs.map((c) => c.id)).size === cs.length, 'channel ids must be unique'),
  stimulusSetId: id,
  timing: timingSchema,
  /** `binned`: counts:binned frames (PSTHs available); `trial`: one counts:trial vector per trial. */
  countsMode: z.enum(['binned', 'trial']).default('binned'),
  /** Declared preferred category for every channel; otherwise the highest-mean category is used. */
  preferredCategory: id.optional(),
});

const sessionRef = { sessionId: id, seq };

export const stimOnsetSchema = z.object({ ...sessionRef, trial: trialNumber, stimulusId: id, tMs: rigMs });
export const stimOffsetSchema = stimOnsetSchema;

/** A non-negative count vector: plain numbers, or packed little-endian uint16 bytes. */
const countVector = z.union([
  z.array(finite.pipe(z.number().min(0).max(1e9))).max(65_536),
  z.instanceof(Uint8Array),
  z.instanceof(Uint16Array),
]);

export const countsBinnedSchema = z.object({
  ...sessionRef,
  /** Rig time of the start of the first bin. */
  startMs: rigMs,
  binWidthMs: finite.pipe(z.number().positive()),
  /** Optional check: the channel ids in the order of the columns; must be the session's channel list. */
  channelIds: z.array(id).max(8192).optional(),
  /** bins x channels, row-major (all channels of bin 0 first), little-endian uint16. */
  counts: z.union([z.instanceof(Uint8Array), z.instanceof(Uint16Array), z.array(z.number())]),
});

export const countsTrialSchema = z.object({
  ...sessionRef,
  trial: trialNumber,
  /** Optional check: the channel ids in the order of the vectors; must be the session's channel list. */
  channelIds: z.array(id).max(8192).optional(),
  /** Spike count per channel in the response window (onset + latency, responseWindowMs long). */
  responseCounts: countVector,
  /** Spike count per channel in the baseline window; omitted means no baseline subtraction. */
  baselineCounts: countVector.optional(),
});

export const trialAbortSchema = z.object({ ...sessionRef, trial: trialNumber, reason: z.string().max(256).optional() });
export const sessionEndSchema = z.object({ ...sessionRef });
export const sessionResumeSchema = z.object({ sessionId: id });

export const strategySchema = z.enum(['probe', 'improve', 'confirm']);

/** One follow-up suggestion with its reason. */
export const suggestionSchema = z.object({
  stimulusId: id,
  setId: id,
  rank: z.number().int().min(0),
  strategy: strategySchema,
  neurons: z.array(id),
  predicted: z.number().nullable(),
  uncertainty: z.number().nullable(),
  reason: z.string(),
});

/** Ask for follow-up stimuli: one strategy, or a mix with weights; optionally for some neurons only. */
export const followupRequestSchema = z
  .object({
    ...sessionRef,
    count: z.number().int().min(1).max(200),
    strategy: strategySchema.optional(),
    mix: z.partialRecord(strategySchema, z.number().min(0)).optional(),
    /** Channel ids to serve (default: all). */
    neurons: z.array(id).max(8192).optional(),
    /** Registered stimulus sets to draw candidates from besides the session's own. */
    poolSetIds: z.array(id).max(32).optional(),
  })
  .refine((r) => !(r.strategy && r.mix), 'give strategy or mix, not both');

/** Category of every stimulus of a set whose manifest gives none. */
export const SINGLE_CATEGORY = 'all';

/** Stimulus set manifest (stimuli/<setId>/manifest.json); docs/stimuli.md, docs/stimulus-manifest.schema.json. */
export const stimulusSchema = z.object({
  id: id.describe('unique within the set; what rigs send in stim:onset'),
  file: z
    .string()
    .min(1)
    .max(256)
    .refine((f) => !f.includes('..') && !f.startsWith('/') && !f.includes('\\'), 'file must be a plain relative path')
    .describe('image path relative to the manifest\'s folder (any format sharp decodes: PNG, JPEG, WebP, GIF, TIFF, AVIF, SVG)'),
  category: id
    .default(SINGLE_CATEGORY)
    .describe(`stimulus category (e.g. body, face, object); give it for every stimulus or for none (then all are "${SINGLE_CATEGORY}": models, scores and features work, drivers, generalisation and selectivity need two categories)`),
  tags: z.array(z.string().max(64)).optional().describe('free labels, shown and exported, not used by the statistics'),
});
export const stimulusManifestSchema = z.object({
  id: id.describe('the set id; sessions name it in session:start (stimulusSetId)'),
  description: z.string().optional(),
  license: z.string().optional(),
  stimuli: z
    .array(stimulusSchema)
    .min(1)
    .refine((ss) => new Set(ss.map((s) => s.id)).size === ss.length, 'stimulus ids must be unique'),
});

/** Schemas of the events a rig sends, by event name. */
export const rigEventSchemas = {
  'session:start': sessionStartSchema,
  'session:resume': sessionResumeSchema,
  'stim:onset': stimOnsetSchema,
  'stim:offset': stimOffsetSchema,
  'counts:binned': countsBinnedSchema,
  'counts:trial': countsTrialSchema,
  'trial:abort': trialAbortSchema,
  'session:end': sessionEndSchema,
  'followup:request': followupRequestSchema,
} as const;

export type RigEventName = keyof typeof rigEventSchemas;
export const rigEventNames = Object.keys(rigEventSchemas) as RigEventName[];

/** Flattens a zod error into `path: message` strings, one per field error. */
export function fieldErrors(error: z.ZodError): string[] {
  return error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(payload)'}: ${i.message}`);
}
