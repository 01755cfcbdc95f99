/**
 * Exports a recorded session by id: its frames stream from the recorder's log (twice: scan, then write),
 * its statistics come from running the log through the session pipeline, and models, readout weights and
 * maps come from a live session or replay of it when one is given.
 */
import type { Explanation, Frame } from '@sharedlens/shared';
import type { Recorder } from '../sinks/recorder.ts';
import type { RecordSource } from '../sources/replay.ts';
import type { StimulusSet } from '../stimulus-sets.ts';
import type { AssembleTrialsOptions } from '../pipeline/assemble-trials.ts';
import { exportSession, type ExportAbout, type ExportResult } from './export-session.ts';
import { statisticsOf, type SessionAnalysis } from './session-analysis.ts';

export interface RecordedExport {
  recorder: Recorder;
  sessionId: string;
  file: string;
  sets: Map<string, StimulusSet>;
  pipeline: AssembleTrialsOptions;
  about: ExportAbout;
  /** Models of the session from a runtime that has them (live session or finished replay). */
  models?: Pick<SessionAnalysis, 'models' | 'readouts'> & { explanations: Explanation[] };
}

/** The frames of a recorded session, read from its log as they are consumed. */
export function recordedFrames(recorder: Recorder, id: string): Generator<Frame> {
  return sourceFrames(recorder.source(id));
}

/** The frames of a log source (notes skipped); the source's end is fixed, so every pass sees the same records. */
export function* sourceFrames(source: RecordSource): Generator<Frame> {
  const it = source.open(0);
  try {
    for (let s = it.next(); !s.done; s = it.next()) if ('frame' in s.value) yield s.value.frame;
  } finally {
    it.return?.();
  }
}

/** Writes the NWB file of one recorded session; throws with a message when the session is unknown. */
export async function exportRecorded(o: RecordedExport): Promise<ExportResult> {
  const meta = o.recorder.meta(o.sessionId);
  if (!meta) throw new Error(`no recorded session "${o.sessionId}"`);
  // one source for all three passes: records appended to a live session meanwhile are in none of them
  const source = o.recorder.source(o.sessionId);
  const frames = () => sourceFrames(source);
  const snapshot = await statisticsOf(frames(), o.pipeline, { sessionId: meta.sessionId, startedAt: meta.startedAt, state: meta.state });
  const analysis: SessionAnalysis | null = snapshot ? { snapshot, models: o.models?.models ?? null, readouts: o.models?.readouts ?? null, explanations: o.models?.explanations ?? [] } : null;
  const result = await exportSession({ file: o.file, frames, set: o.sets.get(meta.stimulusSetId) ?? null, about: o.about, analysis });
  if (!snapshot) result.notes.push('no completed or aborted trials: no statistics');
  return result;
}
