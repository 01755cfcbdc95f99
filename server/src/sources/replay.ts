import { BehaviorSubject, Observable, asyncScheduler, type SchedulerLike, type Subscription } from 'rxjs';
import type { ScanSummary } from '../storage/log-scan.ts';
import type { Frame } from '@sharedlens/shared';
import type { LogRecord, Note, StoredItem } from '../storage/frame-record.ts';

/**
 * Recorded items read on demand (a log file streamed in chunks, or an array in tests): replays hold one
 * record at a time, never the whole log.
 */
export interface RecordSource {
  /** Items in the log. */
  total: number;
  /** Items from index `fromIndex` on; `return()` releases the file. */
  open(fromIndex: number): Iterator<StoredItem>;
}

/** A source over records already in memory. */
export function arraySource(records: StoredItem[]): RecordSource {
  return { total: records.length, open: (fromIndex) => records.slice(fromIndex)[Symbol.iterator]() };
}

/** One replayed item: a frame for the pipeline, or a note (a rejection or gap the live session counted). */
export type Replayed = { index: number; frame: Frame } | { index: number; note: Note };
const replayed = (index: number, item: StoredItem): Replayed => ('frame' in item ? { index, frame: item.frame } : { index, note: item.note });

/** Items `fromIndex` to `toIndex` (exclusive) of a source, read on demand: a seek runs these at once. */
export function* replayedRange(source: RecordSource, fromIndex: number, toIndex: number): Generator<Replayed> {
  const it = source.open(fromIndex);
  try {
    for (let i = fromIndex; i < toIndex; i++) {
      const step = it.next();
      if (step.done) return;
      yield replayed(i, step.value);
    }
  } finally {
    it.return?.();
  }
}

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
  records: LogRecord[] | RecordSource,
  ctl: ReplayControls,
  fromIndex = 0,
  scheduler: SchedulerLike = asyncScheduler,
): Observable<Replayed> {
  const source = Array.isArray(records) ? arraySource(records) : records;
  return new Observable((subscriber) => {
    let i = fromIndex;
    let paused = false;
    let waitingForResume = false;
    let pending: Subscription | null = null;
    const it = source.open(fromIndex);
    let cur = it.next();
    const run = () => {
      pending = null;
      while (!cur.done && !subscriber.closed) {
        if (paused) {
          waitingForResume = true;
          return;
        }
        const prevAtMs = cur.value.atMs;
        subscriber.next(replayed(i, cur.value));
        i++;
        cur = it.next();
        if (cur.done) break;
        const speed = ctl.speed$.value;
        const fast = !Number.isFinite(speed);
        const dt = fast ? 0 : Math.min(MAX_GAP_MS, Math.max(0, cur.value.atMs - prevAtMs)) / speed;
        if (dt > 0 || (fast && i % FAST_BATCH === 0)) {
          pending = scheduler.schedule(run, dt);
          return;
        }
      }
      if (!subscriber.closed) subscriber.complete();
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
      it.return?.();
    };
  });
}

/** Frames per macrotask when a log streams into a pipeline in the background. */
const BACKLOG_BATCH = 64;

/**
 * The frames of a recorded log as an Observable that reads it in batches, yielding to the event loop
 * between them (a resumed session's statistics are rebuilt while its rig keeps streaming). `items` opens
 * the log (Recorder.items); damaged ranges are reported through `onDamage` and skipped.
 */
export function logFrames$(
  items: () => Generator<{ item: StoredItem } | { damage: { fromByte: number; toByte: number } } | { invalid: string }, ScanSummary>,
  onDamage: (range: { fromByte: number; toByte: number }) => void,
  scheduler: SchedulerLike = asyncScheduler,
): Observable<Frame> {
  return new Observable<Frame>((subscriber) => {
    const it = items();
    let pending: Subscription | null = null;
    const run = () => {
      try {
        for (let n = 0; n < BACKLOG_BATCH && !subscriber.closed; n++) {
          const step = it.next();
          if (step.done) return subscriber.complete();
          const v = step.value;
          if ('damage' in v) onDamage(v.damage);
          else if ('item' in v && 'frame' in v.item) subscriber.next(v.item.frame);
        }
        if (!subscriber.closed) pending = scheduler.schedule(run);
      } catch (e) {
        subscriber.error(e);
      }
    };
    pending = scheduler.schedule(run);
    return () => {
      pending?.unsubscribe();
      it.return(undefined as unknown as ScanSummary);
    };
  });
}
