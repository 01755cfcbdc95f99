import type { SessionSnapshot, SessionState } from '@sharedlens/shared';
import { categoryPsth, channelStats, stimulusStats, trialsPerSec, type NeuronStatsState } from './neuron-stats.ts';

export interface SnapshotMeta {
  sessionId: string;
  sourceSessionId?: string;
  startedAt: string;
  state: SessionState;
  lastSeq: number;
  seqGaps: number;
  rejected: Record<string, number>;
}

/**
 * JSON snapshot of a session's statistics. `detail` adds per-stimulus means and variances and the
 * per-category PSTHs (large: channels x stimuli).
 */
export function buildSnapshot(s: NeuronStatsState, meta: SnapshotMeta, detail: boolean): SessionSnapshot {
  const psth = detail && s.psthLayout ? categoryPsth(s) : undefined;
  return {
    sessionId: meta.sessionId,
    ...(meta.sourceSessionId ? { sourceSessionId: meta.sourceSessionId } : {}),
    rigId: s.start.rigId,
    subject: s.start.subject,
    stimulusSetId: s.start.stimulusSetId,
    startedAt: meta.startedAt,
    state: meta.state,
    categories: s.categories,
    trialsCompleted: s.trialsCompleted,
    trialsAborted: s.trialsAborted,
    trialsPerSec: trialsPerSec(s),
    lastSeq: meta.lastSeq,
    seqGaps: meta.seqGaps,
    rejected: { ...meta.rejected },
    channels: channelStats(s),
    ...(detail ? { stimuli: stimulusStats(s) } : {}),
    ...(psth && s.psthLayout ? { psth: { binMs: s.psthLayout.binMs, startMs: s.psthLayout.startMs, byCategory: psth } } : {}),
  };
}
