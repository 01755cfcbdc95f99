/**
 * Typed event maps of the two socket.io namespaces, shared by the server, the simulator, the RigClient,
 * the dashboard and the tests. Rig payloads travel as one msgpackr-encoded binary argument (codec.ts);
 * acknowledgements are plain `{ data } | { error }` objects.
 */
import type { z } from 'zod';
import type {
  channelSchema,
  countsBinnedSchema,
  countsTrialSchema,
  sessionEndSchema,
  sessionResumeSchema,
  sessionStartSchema,
  stimOnsetSchema,
  stimulusManifestSchema,
  stimulusSchema,
  suggestionSchema,
  followupRequestSchema,
  timingSchema,
  trialAbortSchema,
} from './schemas.ts';

export type Channel = z.infer<typeof channelSchema>;
export type Timing = z.infer<typeof timingSchema>;
export type SessionStart = z.infer<typeof sessionStartSchema>;
export type SessionStartInput = z.input<typeof sessionStartSchema>;
export type SessionResume = z.infer<typeof sessionResumeSchema>;
export type StimEvent = z.infer<typeof stimOnsetSchema>;
export type CountsBinnedInput = z.infer<typeof countsBinnedSchema>;
export type CountsTrialInput = z.infer<typeof countsTrialSchema>;
export type TrialAbort = z.infer<typeof trialAbortSchema>;
export type SessionEnd = z.infer<typeof sessionEndSchema>;
export type Stimulus = z.infer<typeof stimulusSchema>;
export type StimulusManifest = z.infer<typeof stimulusManifestSchema>;
export type Suggestion = z.infer<typeof suggestionSchema>;
export type FollowupRequest = z.infer<typeof followupRequestSchema>;

/** What the server answers to every state-changing event. */
export type Ack<T> = { data: T } | { error: AckError };
export interface AckError {
  /** Machine-readable reason, also the key of the rejection counters. */
  code: RejectionCode;
  message: string;
  /** One entry per field error where the payload failed its schema. */
  details?: string[];
}

export type RejectionCode =
  | 'malformed'
  | 'invalid'
  | 'unknown-session'
  | 'unknown-stimulus'
  | 'unknown-channel'
  | 'wrong-size'
  | 'bad-sequence'
  | 'bad-trial-state'
  | 'too-large'
  | 'rate-limited'
  | 'session-ended'
  | 'not-owner'
  | 'storage';

/** Acknowledgement payloads per rig event. */
export interface RigAckData {
  'session:start': { sessionId: string; lastSeq: number };
  'session:resume': { sessionId: string; lastSeq: number };
  /** `duplicate`: already accepted earlier, ignored; `gap`: seq numbers skipped before this one. */
  event: { seq: number; duplicate: boolean; gap?: { from: number; to: number } };
  /** notes: why a strategy asked for gave nothing (absent when every strategy gave suggestions). */
  'followup:request': { seq: number; duplicate: boolean; suggestions: Suggestion[]; notes?: string[] };
}

/**
 * A validated inbound event, as recorded and as fed to the pipeline. Live rig, replay and tests all
 * produce this type. Binned counts are normalised to a Uint16Array of bins x channels.
 */
export type Frame =
  /** owner: name of the rig that started it (its token's rig name); only that rig may write, resume or end it. */
  | { type: 'session:start'; sessionId: string; startedAt: string; start: SessionStart; stimuli: Stimulus[]; owner?: string }
  | ({ type: 'stim:onset' } & StimEvent)
  | ({ type: 'stim:offset' } & StimEvent)
  | { type: 'counts:binned'; sessionId: string; seq: number; startMs: number; binWidthMs: number; nBins: number; counts: Uint16Array }
  | { type: 'counts:trial'; sessionId: string; seq: number; trial: number; responseCounts: Float64Array; baselineCounts?: Float64Array }
  | ({ type: 'trial:abort' } & TrialAbort)
  | ({ type: 'session:end' } & SessionEnd)
  /** Follow-up suggestions that were given (to the rig, or pushed from the dashboard); recorded and replayed. */
  | { type: 'followup:suggested'; sessionId: string; seq?: number; origin: 'rig' | 'dashboard'; atMs: number; suggestions: Suggestion[]; by?: string };

export type FrameType = Frame['type'];

/** Dashboard namespace: server -> browser notifications and browser -> server commands. */
export const dashboardEvents = {
  /** Full statistics of one session (throttled). */
  statsSnapshot: 'stats:snapshot',
  /** Channels whose statistics changed since the previous delta (throttled, volatile). */
  statsDelta: 'stats:delta',
  /** The list of sessions (live, ended, replays) changed. */
  sessionsUpdated: 'sessions:updated',
  /** A rig input was rejected (counted). */
  inputRejected: 'input:rejected',
  /** Progress of a replay (position, speed, paused). */
  replayProgress: 'replay:progress',
  /** Progress of the CNN features of a stimulus set. */
  featuresProgress: 'features:progress',
  /** Encoding-model scores and drivers of a watched session (throttled). */
  modelsUpdated: 'models:updated',
  /** Both shared-feature maps of a driver and its reference image are ready. */
  explainReady: 'explain:ready',
  /** A pair's maps could not be made (a map job timed out or failed); they are tried again. */
  explainFailed: 'explain:failed',
  /** Clustered: an exact refit's job timed out or failed; the node refits itself (`{ message, atMs }`). */
  refitJobFailed: 'refit-job:failed',
  /** Follow-up suggestions given for a session (also pushed to its rig as `followup:suggested`). */
  followupSuggested: 'followup:suggested',
  /** Command: compute follow-up suggestions for a session and send them to its rig. */
  followupRequest: 'followup:request',
  /** Command: start a replay of a recorded session. */
  sessionReplay: 'session:replay',
  /** Command: pause, resume, seek, change speed or stop a replay. */
  replayControl: 'replay:control',
  /** Command: subscribe to the statistics of one session. */
  sessionWatch: 'session:watch',
} as const;
