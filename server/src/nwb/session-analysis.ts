/**
 * What the `sharedlens` processing module of an export holds: the statistics snapshot (with per-stimulus
 * detail and PSTHs), the encoding models' scores and drivers, each channel's readout weights and the
 * shared-feature maps. The statistics always come from running the log through the session pipeline;
 * models, weights and maps come from a live session or replay that has them.
 */
import { from, lastValueFrom } from 'rxjs';
import type { Explanation, Frame, ModelSnapshot, SessionSnapshot, SessionState } from '@sharedlens/shared';
import { buildSnapshot } from '../compute/session-snapshot.ts';
import { sessionPipeline } from '../pipeline/session-pipeline.ts';
import type { AssembleTrialsOptions } from '../pipeline/assemble-trials.ts';

export interface SessionAnalysis {
  snapshot: SessionSnapshot;
  models: ModelSnapshot | null;
  /** Readout weights per channel (null where a channel has no model), and the feature model they read. */
  readouts: { featureModel: string; weights: (Float32Array | null)[] } | null;
  explanations: Explanation[];
}

/** Runs the frames through the statistics pipeline and returns the detailed snapshot (null: no trials). */
export async function statisticsOf(frames: Iterable<Frame>, pipeline: AssembleTrialsOptions, meta: { sessionId: string; startedAt: string; state: SessionState }): Promise<SessionSnapshot | null> {
  const last = await lastValueFrom(from(frames).pipe(sessionPipeline(pipeline)), { defaultValue: null });
  return last ? buildSnapshot(last.state, { ...meta, lastSeq: 0, seqGaps: 0, rejected: {} }, true) : null;
}
