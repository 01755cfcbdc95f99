import { pipe, type OperatorFunction } from 'rxjs';
import type { Frame } from '@sharedlens/shared';
import { assembleTrials, type AssembleTrialsOptions } from './assemble-trials.ts';
import { neuronStatistics, type StatsUpdate } from './neuron-statistics.ts';

/** The whole per-session pipeline: frames -> trials -> statistics. Live, replay and tests use this one. */
export function sessionPipeline(opts: AssembleTrialsOptions): OperatorFunction<Frame, StatsUpdate> {
  return pipe(assembleTrials(opts), neuronStatistics());
}
