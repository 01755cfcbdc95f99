import { concatMap, from, scan, type OperatorFunction } from 'rxjs';
import type { Frame, SessionStart, Stimulus } from '@sharedlens/shared';
import { createAssembler, stepAssembler, type AssemblerState, type PsthLayout, type TrialOutcome } from '../compute/trial-assembler.ts';

/** What trial assembly emits: the session's start (with its PSTH layout), trial outcomes, its end. */
export type SessionEvent =
  | { kind: 'start'; sessionId: string; start: SessionStart; stimuli: Stimulus[]; psth: PsthLayout | null }
  | TrialOutcome
  | { kind: 'end'; seq: number };

export interface AssembleTrialsOptions {
  /** PSTH bin width; raised to the data bin width when that is wider. */
  psthBinMs: number;
}

interface Acc {
  state: AssemblerState | null;
  out: SessionEvent[];
}

/**
 * Turns the frames of one session into trial outcomes (compute/trial-assembler.ts). Frames before the
 * session:start frame are ignored; state lives in `scan`, so every subscription starts fresh.
 *
 * @example frames$.pipe(assembleTrials({ psthBinMs: 10 }))
 */
export function assembleTrials(opts: AssembleTrialsOptions): OperatorFunction<Frame, SessionEvent> {
  return (frames$) =>
    frames$.pipe(
      scan<Frame, Acc>(
        (acc, frame) => {
          if (frame.type === 'session:start') {
            const state = createAssembler(frame.start, opts.psthBinMs);
            const psth = frame.start.countsMode === 'binned' ? state.psth : null;
            return { state, out: [{ kind: 'start', sessionId: frame.sessionId, start: frame.start, stimuli: frame.stimuli, psth }] };
          }
          if (!acc.state) return { state: null, out: [] };
          if (frame.type === 'session:end') return { state: acc.state, out: [{ kind: 'end', seq: frame.seq }] };
          return { state: acc.state, out: stepAssembler(acc.state, frame) };
        },
        { state: null, out: [] },
      ),
      concatMap((acc) => from(acc.out)),
    );
}
