import { BehaviorSubject, EMPTY, defer, expand, first, map, switchMap, timer, type Observable, type SchedulerLike, asyncScheduler } from 'rxjs';
import type { Frame } from '@sharedlens/shared';
import type { LogRecord } from '../storage/frame-record.ts';

export interface ReplayControls {
  /** Speed factor against the recorded pace; Infinity = as fast as possible. */
  speed$: BehaviorSubject<number>;
  paused$: BehaviorSubject<boolean>;
}

/** Records emitted back to back at full speed before yielding to the event loop. */
const FAST_BATCH = 256;
/** Longest pause a 1x replay waits between two records (a rig that sat idle for an hour). */
const MAX_GAP_MS = 10_000;

/**
 * Replays recorded frames from index `fromIndex`, paced by their recorded arrival times divided by the
 * speed, honouring pause. Time goes through `scheduler`, so tests run it in virtual time.
 *
 * @example replayRecords(records, { speed$: new BehaviorSubject(4), paused$: new BehaviorSubject(false) })
 */
export function replayRecords(
  records: LogRecord[],
  ctl: ReplayControls,
  fromIndex = 0,
  scheduler: SchedulerLike = asyncScheduler,
): Observable<{ index: number; frame: Frame }> {
  // a record is emitted once its delay has passed and the replay is not paused
  const unpaused = (i: number) => ctl.paused$.pipe(first((p) => !p), map(() => i));
  const waitFor = (i: number): Observable<number> => {
    const speed = ctl.speed$.value;
    if (!Number.isFinite(speed)) return i % FAST_BATCH === 0 ? timer(0, scheduler).pipe(switchMap(() => unpaused(i))) : unpaused(i);
    const dt = Math.min(MAX_GAP_MS, Math.max(0, records[i].atMs - records[i - 1].atMs)) / speed;
    return timer(dt, scheduler).pipe(switchMap(() => unpaused(i)));
  };
  return defer(() =>
    fromIndex >= records.length
      ? EMPTY
      : unpaused(fromIndex).pipe(
          expand((i) => (i + 1 < records.length ? waitFor(i + 1) : EMPTY)),
          map((i) => ({ index: i, frame: records[i].frame })),
        ),
  );
}
