import { filter, map, scan, type OperatorFunction } from 'rxjs';
import { addAbort, addTrial, createNeuronStats, type NeuronStatsState } from '../compute/neuron-stats.ts';
import type { SessionEvent } from './assemble-trials.ts';

/** One statistics update: the state after the event and what caused it. */
export interface StatsUpdate {
  state: NeuronStatsState;
  cause: 'start' | 'trial' | 'abort' | 'end';
  trial?: number;
  /** Stimulus of the completed or aborted trial. */
  stimulusId?: string;
  /** Sequence number of the rig frame that caused the update. */
  seq?: number;
}

interface Acc {
  state: NeuronStatsState | null;
  update: StatsUpdate | null;
}

/**
 * Per-neuron statistics updated per trial (compute/neuron-stats.ts). Emits one update per event that
 * changed them. The state object is owned by this subscription and mutated in place; consumers read it
 * synchronously or build a snapshot.
 */
export function neuronStatistics(): OperatorFunction<SessionEvent, StatsUpdate> {
  return (events$) =>
    events$.pipe(
      scan<SessionEvent, Acc>(
        (acc, ev) => {
          if (ev.kind === 'start') {
            const state = createNeuronStats(ev.start, ev.stimuli, ev.psth);
            return { state, update: { state, cause: 'start' } };
          }
          if (!acc.state) return { state: null, update: null };
          switch (ev.kind) {
            case 'completed':
              return { state: acc.state, update: { state: addTrial(acc.state, ev), cause: 'trial', trial: ev.trial, stimulusId: ev.stimulusId, seq: ev.seq } };
            case 'aborted':
              return { state: acc.state, update: { state: addAbort(acc.state), cause: 'abort', trial: ev.trial, stimulusId: ev.stimulusId, seq: ev.seq } };
            case 'end':
              return { state: acc.state, update: { state: acc.state, cause: 'end', seq: ev.seq } };
          }
        },
        { state: null, update: null },
      ),
      map((acc) => acc.update),
      filter((u): u is StatsUpdate => u !== null),
    );
}
