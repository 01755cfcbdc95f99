/**
 * Turns for the analysis jobs that can wait (a pair's shared-feature maps, a model report). While a rig
 * records they take turns on `compute.liveAnalysisThreads` threads (default 1), so that the event loop that
 * acknowledges the rig's events, the rig and the model thread keep the other core: on the 2-core machine the
 * scale bench runs on, two busy analysis threads next to them made the virtual machine lose CPU to its host in
 * blocks of about 100 ms, which the event loop felt as stalls (README, issue 13). Otherwise (no rig recording)
 * they run as they come.
 */
import { Observable, finalize } from 'rxjs';

export class AnalysisGate {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  /** Jobs that waited for a turn, over the process's life. */
  waited = 0;

  /** `limit()`: how many jobs may run at once now (e.g. 1 while a rig records, Infinity otherwise). */
  constructor(private readonly limit: () => number) {}

  /** Jobs running now. */
  get busy(): number {
    return this.running;
  }

  /** Calls `start` when a turn is free; `start` gets `done`, to call once when its job has ended. */
  run(start: (done: () => void) => void): void {
    if (this.running >= this.limit()) {
      this.waited++;
      this.waiting.push(() => this.run(start));
      return;
    }
    this.running++;
    let ended = false;
    start(() => {
      if (ended) return;
      ended = true;
      this.running--;
      // a job waits only while another runs, so each end looks at the queue (also after a rig stopped recording)
      while (this.waiting.length && this.running < this.limit()) this.waiting.shift()!();
    });
  }

  /** `job$` subscribed to when a turn is free; the turn ends with it (completed, failed or unsubscribed). */
  wrap$<T>(job$: Observable<T>): Observable<T> {
    return new Observable<T>((sub) => {
      let cancelled = false;
      let inner: { unsubscribe(): void } | null = null;
      this.run((done) => {
        if (cancelled) return done();
        inner = job$.pipe(finalize(done)).subscribe(sub);
      });
      return () => {
        cancelled = true;
        inner?.unsubscribe();
      };
    });
  }
}
