import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BehaviorSubject, Subject, map } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import type { Frame, SessionStart } from '@sharedlens/shared';
import { assembleTrials, type SessionEvent } from '../server/src/pipeline/assemble-trials.ts';
import { neuronStatistics } from '../server/src/pipeline/neuron-statistics.ts';
import { replayRecords } from '../server/src/sources/replay.ts';
import { broadcastToDashboards } from '../server/src/sinks/dashboard-broadcast.ts';
import type { SessionStore } from '../server/src/sinks/session-store.ts';
import { createNeuronStats } from '../server/src/compute/neuron-stats.ts';
import { demoStimuli } from './helpers.ts';

const scheduler = () => new TestScheduler((a, b) => assert.deepStrictEqual(a, b));
const C = 2;
const start: SessionStart = {
  rigId: 'r',
  subject: 's',
  channels: [{ id: 'a', label: 'a' }, { id: 'b', label: 'b' }],
  stimulusSetId: 'demo',
  timing: { responseWindowMs: 2, latencyMs: 0, baselineWindowMs: 0, binWidthMs: 1 },
  countsMode: 'binned',
};
const stim = demoStimuli.slice(0, 3);
const S: Frame = { type: 'session:start', sessionId: 'x', startedAt: 't', start, stimuli: stim };
const on: Frame = { type: 'stim:onset', sessionId: 'x', seq: 1, trial: 0, stimulusId: stim[0].id, tMs: 0 };
const off: Frame = { type: 'stim:offset', sessionId: 'x', seq: 2, trial: 0, stimulusId: stim[0].id, tMs: 2 };
const bins: Frame = { type: 'counts:binned', sessionId: 'x', seq: 3, startMs: 0, binWidthMs: 1, nBins: 2, counts: Uint16Array.of(1, 2, 3, 4) };
const abort: Frame = { type: 'trial:abort', sessionId: 'x', seq: 2, trial: 0 };
const end: Frame = { type: 'session:end', sessionId: 'x', seq: 4 };

/** Compact view of trial-assembly output for marble comparison. */
const view = (e: SessionEvent) => (e.kind === 'completed' ? `${e.kind}:${e.trial}:${Array.from(e.responses).join(',')}` : e.kind === 'start' ? 'start' : e.kind);

test('assembleTrials: values', () => {
  scheduler().run(({ cold, expectObservable }) => {
    const src = cold('s-o-f-b-e|', { s: S, o: on, f: off, b: bins, e: end });
    expectObservable(src.pipe(assembleTrials({ psthBinMs: 1 }), map(view))).toBe('s-----c-e|', { s: 'start', c: 'completed:0:4,6', e: 'end' });
  });
});

test('assembleTrials: frames before session:start are ignored; abort yields aborted', () => {
  scheduler().run(({ cold, expectObservable }) => {
    const src = cold('o-s-o-a-b|', { s: S, o: on, a: abort, b: bins });
    expectObservable(src.pipe(assembleTrials({ psthBinMs: 1 }), map(view))).toBe('--s---a--|', { s: 'start', a: 'aborted' });
  });
});

test('assembleTrials: empty and error pass through', () => {
  scheduler().run(({ cold, expectObservable }) => {
    expectObservable(cold<Frame>('|').pipe(assembleTrials({ psthBinMs: 1 }))).toBe('|');
    expectObservable(cold('s-#', { s: S }).pipe(assembleTrials({ psthBinMs: 1 }), map(view))).toBe('s-#', { s: 'start' });
  });
});

test('assembleTrials: a throw inside the step surfaces as an error, not a silent drop', () => {
  scheduler().run(({ cold, expectObservable }) => {
    const broken = { ...bins, counts: null } as unknown as Frame;
    const src = cold('s-o-f-b|', { s: S, o: on, f: off, b: broken });
    expectObservable(src.pipe(assembleTrials({ psthBinMs: 1 }), map(view))).toBe('s-----#', { s: 'start' }, new TypeError("Cannot read properties of null (reading 'subarray')"));
  });
});

test('assembleTrials: early unsubscribe releases the source; each subscription has its own state', () => {
  scheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
    const src = cold('s-o-f-b|', { s: S, o: on, f: off, b: bins });
    const out = src.pipe(assembleTrials({ psthBinMs: 1 }), map(view));
    expectObservable(out, '^--!').toBe('s--', { s: 'start' });
    expectObservable(out).toBe('s-----c|', { s: 'start', c: 'completed:0:4,6' });
    expectSubscriptions(src.subscriptions).toBe(['^--!', '^------!']);
  });
});

test('neuronStatistics: values, empty, error, early unsubscribe', () => {
  scheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
    const ev = {
      s: { kind: 'start', sessionId: 'x', start, stimuli: stim, psth: null } as SessionEvent,
      t: { kind: 'completed', trial: 0, stimulusId: stim[0].id, onsetMs: 0, seq: 3, responses: Float64Array.of(4, 6) } as SessionEvent,
      a: { kind: 'aborted', trial: 1, stimulusId: stim[1].id, onsetMs: 5, seq: 5 } as SessionEvent,
      e: { kind: 'end', seq: 6 } as SessionEvent,
    };
    const v = (u: { cause: string; state: { trialsCompleted: number; trialsAborted: number; mean: Float64Array } }) => `${u.cause}:${u.state.trialsCompleted}/${u.state.trialsAborted}`;
    const src = cold('s-t-a-e|', ev);
    expectObservable(src.pipe(neuronStatistics(), map(v))).toBe('s-t-a-e|', { s: 'start:0/0', t: 'trial:1/0', a: 'abort:1/1', e: 'end:1/1' });
    expectObservable(cold<SessionEvent>('|').pipe(neuronStatistics())).toBe('|');
    expectObservable(cold('t-#', ev).pipe(neuronStatistics())).toBe('--#', undefined, 'error');
    const src2 = cold('s-t-t|', ev);
    expectObservable(src2.pipe(neuronStatistics(), map(v)), '^-!').toBe('s-', { s: 'start:0/0' });
    expectSubscriptions(src2.subscriptions).toBe('^-!');
  });
});

test('neuronStatistics: a throw inside the update surfaces as an error', () => {
  scheduler().run(({ cold, expectObservable }) => {
    const bad = { kind: 'completed', trial: 0, stimulusId: stim[0].id, onsetMs: 0, seq: 1, responses: null } as unknown as SessionEvent;
    const src = cold('s-t|', { s: { kind: 'start', sessionId: 'x', start, stimuli: stim, psth: null } as SessionEvent, t: bad });
    expectObservable(src.pipe(neuronStatistics(), map((u) => u.cause))).toBe('s-#', { s: 'start' }, new TypeError("Cannot read properties of null (reading '0')"));
  });
});

const records = [0, 100, 300, 1300].map((atMs, i) => ({ atMs, frame: { ...end, seq: i + 1 } as Frame }));

test('replayRecords: paced by recorded times divided by speed (virtual time)', () => {
  scheduler().run(({ expectObservable }) => {
    const ctl = { speed$: new BehaviorSubject(1), paused$: new BehaviorSubject(false) };
    expectObservable(replayRecords(records, ctl, 0).pipe(map((r) => r.index))).toBe('a 99ms b 199ms c 999ms (d|)', { a: 0, b: 1, c: 2, d: 3 });
  });
  scheduler().run(({ expectObservable }) => {
    const ctl = { speed$: new BehaviorSubject(4), paused$: new BehaviorSubject(false) };
    expectObservable(replayRecords(records, ctl, 1).pipe(map((r) => r.index))).toBe('a 49ms b 249ms (c|)', { a: 1, b: 2, c: 3 });
  });
});

test('replayRecords: pause holds the stream, resume continues; max speed does not wait', () => {
  scheduler().run(({ expectObservable, cold }) => {
    const ctl = { speed$: new BehaviorSubject(1), paused$: new BehaviorSubject(false) };
    cold('50ms p 449ms r', { p: true, r: false }).subscribe((p) => ctl.paused$.next(p));
    // record 1 was due at 100 ms; paused from 50 to 500, it comes out at the resume
    expectObservable(replayRecords(records, ctl, 0).pipe(map((r) => r.index))).toBe('a 499ms b 199ms c 999ms (d|)', { a: 0, b: 1, c: 2, d: 3 });
  });
  scheduler().run(({ expectObservable }) => {
    const ctl = { speed$: new BehaviorSubject(Infinity), paused$: new BehaviorSubject(false) };
    expectObservable(replayRecords(records, ctl, 0).pipe(map((r) => r.index))).toBe('(abcd|)', { a: 0, b: 1, c: 2, d: 3 });
  });
});

test('replayRecords: empty log and early unsubscribe', () => {
  scheduler().run(({ expectObservable }) => {
    const ctl = { speed$: new BehaviorSubject(1), paused$: new BehaviorSubject(false) };
    expectObservable(replayRecords([], ctl)).toBe('|');
    expectObservable(replayRecords(records, ctl).pipe(map((r) => r.index)), '^ 150ms !').toBe('a 99ms b', { a: 0, b: 1 });
  });
});

test('dashboard broadcast: per-session deltas throttled, and volatile', () => {
  const ts = scheduler();
  ts.run(({ cold, flush }) => {
    const emitted: { t: number; room: string; event: string; volatile: boolean }[] = [];
    const target = (room: string) => ({
      volatile: { emit: (event: string) => emitted.push({ t: ts.now(), room, event, volatile: true }) },
      emit: (event: string) => emitted.push({ t: ts.now(), room, event, volatile: false }),
    });
    // one dashboard watching each session (the broadcast builds nothing for an unwatched one)
    const rooms = new Map([
      ['watch:A', new Set(['d1'])],
      ['watch:B', new Set(['d2'])],
    ]);
    const nsp = { to: target, volatile: target('*').volatile, emit: target('*').emit, adapter: { rooms } } as never;
    const updates$ = new Subject<any>();
    const state = createNeuronStats(start, stim, null);
    const rt = (id: string) => ({ id, latest: state, replay: null });
    const store = { updates$, modelsReady$: new Subject(), changed$: new Subject(), followups$: new Subject(), all: () => [], summary: () => ({}), snapshot: () => ({}), models: () => null } as unknown as SessionStore;
    broadcastToDashboards(nsp, store, new Subject(), { deltaThrottleMs: 100, snapshotThrottleMs: 1000, scheduler: ts });
    // 50 updates of session A 10 ms apart, 3 of session B
    cold('a 9ms '.repeat(50) + '|', { a: 0 }).subscribe(() => updates$.next({ runtime: rt('A') }));
    cold('b 9ms b 9ms b|', { b: 0 }).subscribe(() => updates$.next({ runtime: rt('B') }));
    flush();
    const deltasA = emitted.filter((e) => e.event === 'stats:delta' && e.room === 'watch:A' && e.volatile);
    const deltasB = emitted.filter((e) => e.event === 'stats:delta' && e.room === 'watch:B' && e.volatile);
    assert.ok(deltasA.length >= 5 && deltasA.length <= 7, `A got ${deltasA.length} deltas for 50 updates over 500 ms`);
    assert.equal(deltasB.length, 2, 'leading and trailing');
    // once quiet, the last state once more, reliably (a volatile frame may have been dropped)
    const settleA = emitted.filter((e) => e.event === 'stats:delta' && e.room === 'watch:A' && !e.volatile);
    assert.equal(settleA.length, 1);
    assert.equal(settleA[0].t, 490 + 1000, 'one second after the last update');
    const snapsA = emitted.filter((e) => e.event === 'stats:snapshot' && e.room === 'watch:A' && e.volatile);
    assert.ok(snapsA.length <= 2, `${snapsA.length} snapshots`);
  });
});
