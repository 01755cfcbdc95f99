/**
 * Turns for the analysis jobs while a rig records (workers/analysis-gate.ts): at most `limit()` jobs run at
 * once, waiting ones start in order as turns end, a job given up while waiting never starts, and a higher
 * limit (the rig stopped recording) lets every waiting job start at the next end.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Subject, defer } from 'rxjs';
import { AnalysisGate } from '../server/src/workers/analysis-gate.ts';

test('one turn: jobs run one at a time, in the order they came; each end starts the next', () => {
  const gate = new AnalysisGate(() => 1);
  const started: string[] = [];
  const done = new Map<string, () => void>();
  for (const name of ['pair 1', 'report', 'pair 2']) gate.run((d) => (started.push(name), done.set(name, d)));
  assert.deepEqual(started, ['pair 1']);
  assert.equal(gate.busy, 1);
  assert.equal(gate.waited, 2);
  done.get('pair 1')!();
  done.get('pair 1')!(); // a second call of the same done changes nothing
  assert.deepEqual(started, ['pair 1', 'report']);
  assert.equal(gate.busy, 1);
  done.get('report')!();
  assert.deepEqual(started, ['pair 1', 'report', 'pair 2']);
  done.get('pair 2')!();
  assert.equal(gate.busy, 0);
});

test('the rig stops recording: the limit rises and every waiting job starts at the next end', () => {
  let limit = 1;
  const gate = new AnalysisGate(() => limit);
  const ends: (() => void)[] = [];
  let started = 0;
  for (let i = 0; i < 4; i++) gate.run((d) => (started++, ends.push(d)));
  assert.equal(started, 1);
  limit = Infinity;
  ends[0]!();
  assert.equal(started, 4);
  assert.equal(gate.busy, 3);
  // and new jobs start at once
  gate.run((d) => (started++, ends.push(d)));
  assert.equal(started, 5);
});

test('wrap$: a job is subscribed to when its turn comes and holds it until it completes or fails; one given up while waiting never starts', () => {
  const gate = new AnalysisGate(() => 1);
  const log: string[] = [];
  const job = (name: string, src: Subject<number>) =>
    gate.wrap$(
      defer(() => {
        log.push(`start ${name}`);
        return src;
      }),
    );
  const [sa, sb, sc, sd] = [new Subject<number>(), new Subject<number>(), new Subject<number>(), new Subject<number>()];
  const got: number[] = [];
  job('a', sa).subscribe((v) => got.push(v));
  const b = job('b', sb).subscribe();
  job('c', sc).subscribe({ error: (e: Error) => log.push(`c failed: ${e.message}`) });
  job('d', sd).subscribe({ next: (v) => got.push(v), complete: () => log.push('d complete') });
  assert.deepEqual(log, ['start a']);
  b.unsubscribe();
  sa.next(1);
  assert.deepEqual(log, ['start a'], 'a emitted but still holds the turn');
  sa.complete();
  assert.deepEqual(log, ['start a', 'start c'], 'b, given up while waiting, never started');
  sc.error(new Error('worker gone'));
  assert.deepEqual(log, ['start a', 'start c', 'c failed: worker gone', 'start d'], 'a failed job ends its turn');
  sd.next(4);
  sd.complete();
  assert.deepEqual(got, [1, 4]);
  assert.equal(gate.busy, 0);
});
