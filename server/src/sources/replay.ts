import { BehaviorSubject, Observable, asyncScheduler, type SchedulerLike, type Subscription } from 'rxjs';
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
 * speed; a record due while paused comes out at the resume. Waits go through `scheduler`, so tests run
 * in virtual time. A loop rather than `expand`: thousands of synchronous records at full speed would
 * otherwise recurse once per record.
 *
 * @example replayRecords(records, { speed$: new BehaviorSubject(4), paused$: new BehaviorSubject(false) })
 */
export function replayRecords(
  records: LogRecord[],
  ctl: ReplayControls,
  fromIndex = 0,
  scheduler: SchedulerLike = asyncScheduler,
): Observable<{ index: number; frame: Frame }> {
  return new Observable((subscriber) => {
    let i = fromIndex;
    let paused = false;
    let waitingForResume = false;
    let pending: Subscription | null = null;
    const run = () => {
      pending = null;
      while (i < records.length && !subscriber.closed) {
        if (paused) {
          waitingForResume = true;
          return;
        }
        subscriber.next({ index: i, frame: records[i].frame });
        i++;
        if (i >= records.length) break;
        const speed = ctl.speed$.value;
        const fast = !Number.isFinite(speed);
        const dt = fast ? 0 : Math.min(MAX_GAP_MS, Math.max(0, records[i].atMs - records[i - 1].atMs)) / speed;
        if (dt > 0 || (fast && i % FAST_BATCH === 0)) {
          pending = scheduler.schedule(run, dt);
          return;
        }
      }
      subscriber.complete();
    };
    const pauseSub = ctl.paused$.subscribe((p) => {
      paused = p;
      if (!p && waitingForResume) {
        waitingForResume = false;
        run();
      }
    });
    if (!paused) run();
    else waitingForResume = true;
    return () => {
      pauseSub.unsubscribe();
      (pending as Subscription | null)?.unsubscribe();
    };
  });
}
