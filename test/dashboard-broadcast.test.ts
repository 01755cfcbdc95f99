/** The dashboard's delta throttle and a session's start (issue 18: the first trials' deltas held behind the start's window). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Subject } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import type { SessionStart } from '@sharedlens/shared';
import { broadcastToDashboards } from '../server/src/sinks/dashboard-broadcast.ts';
import type { SessionStore } from '../server/src/sinks/session-store.ts';
import { createNeuronStats } from '../server/src/compute/neuron-stats.ts';
import { demoStimuli } from './helpers.ts';

const start: SessionStart = {
  rigId: 'r',
  subject: 's',
  channels: [{ id: 'a', label: 'a' }],
  stimulusSetId: 'demo',
  timing: { responseWindowMs: 2, latencyMs: 0, baselineWindowMs: 0, binWidthMs: 1 },
  countsMode: 'binned',
};

/**
 * Times (virtual ms) of the stats:delta emissions of session A, and whether each was volatile, for updates at
 * the given times; `watchers`: dashboards of this node in A's room. `built` counts the snapshots and model
 * lists the broadcast asked the store for.
 */
function deltaTimes(updates: { t: number; cause: 'start' | 'trial' | 'end' }[], watchers = 1, built = { n: 0 }, reports: number[] = [], event = 'stats:delta'): { t: number; volatile: boolean }[] {
  const ts = new TestScheduler((a, b) => assert.deepStrictEqual(a, b));
  const emitted: { t: number; event: string; volatile: boolean }[] = [];
  ts.run(({ flush }) => {
    const target = () => ({
      volatile: { emit: (event: string) => emitted.push({ t: ts.now(), event, volatile: true }) },
      emit: (event: string) => emitted.push({ t: ts.now(), event, volatile: false }),
    });
    const rooms = new Map(watchers ? [['watch:A', new Set(Array.from({ length: watchers }, (_, i) => `d${i}`))]] : []);
    const nsp = { to: target, volatile: target().volatile, emit: target().emit, adapter: { rooms } } as never;
    const updates$ = new Subject<unknown>();
    const modelsReady$ = new Subject<unknown>();
    let version = 0;
    const rt = { id: 'A', latest: createNeuronStats(start, demoStimuli.slice(0, 2), null), replay: null };
    const store = { updates$, modelsReady$, changed$: new Subject(), followups$: new Subject(), all: () => [], summary: () => ({}), snapshot: () => (built.n++, {}), models: () => (built.n++, version ? { version } : null) } as unknown as SessionStore;
    const sub = broadcastToDashboards(nsp, store, new Subject(), { deltaThrottleMs: 200, snapshotThrottleMs: 1000, scheduler: ts });
    for (const u of updates) ts.schedule(() => updates$.next({ runtime: rt, update: { cause: u.cause, state: rt.latest } }), u.t);
    // a model report finished (the app pushes it volatile itself; the broadcast sees modelsReady$)
    for (const t of reports) ts.schedule(() => (version++, modelsReady$.next(rt)), t);
    ts.schedule(() => sub.unsubscribe(), 5000);
    flush();
  });
  return emitted.filter((e) => e.event === event).map(({ t, volatile }) => ({ t, volatile }));
}

test('dashboard broadcast: the first trial right after a session starts goes out at once, not at the end of the start\'s throttle window', () => {
  const out = deltaTimes([
    { t: 0, cause: 'start' },
    { t: 120, cause: 'trial' },
    { t: 370, cause: 'trial' },
  ]);
  // the start at once (reliable: one per session); each trial leads its own window; the settle frame 1 s after the last
  assert.deepEqual(out, [
    { t: 0, volatile: false },
    { t: 120, volatile: true },
    { t: 370, volatile: true },
    { t: 1370, volatile: false },
  ]);
});

test('dashboard broadcast: trials still go out at most once per throttle window after a start', () => {
  const out = deltaTimes([
    { t: 0, cause: 'start' },
    ...Array.from({ length: 20 }, (_, i) => ({ t: 50 + 20 * i, cause: 'trial' as const })),
    { t: 600, cause: 'end' },
  ]);
  const volatile = out.filter((e) => e.volatile).map((e) => e.t);
  // trials 50..430 ms and the end at 600: leading at 50, then one per 200 ms window (250, 450), the end at 650
  assert.deepEqual(volatile, [50, 250, 450, 650]);
  for (let i = 1; i < volatile.length; i++) assert.ok(volatile[i]! - volatile[i - 1]! >= 200, `${volatile} closer than the throttle`);
  assert.deepEqual(out.filter((e) => !e.volatile).map((e) => e.t), [0, 1600], 'the start, and the settled state 1 s after the end');
});

test('dashboard broadcast: nothing is built or sent for a session no dashboard of this node watches', () => {
  const updates = [{ t: 0, cause: 'start' as const }, ...Array.from({ length: 10 }, (_, i) => ({ t: 100 + 150 * i, cause: 'trial' as const }))];
  const built = { n: 0 };
  assert.deepEqual(deltaTimes(updates, 0, built), []);
  assert.equal(built.n, 0, 'no snapshot or model list built');
  const watched = { n: 0 };
  assert.ok(deltaTimes(updates, 1, watched).length >= 5, 'the same session watched: its deltas go out');
  assert.ok(watched.n > 0, 'and its snapshots are built');
});

test('dashboard broadcast: a model report finished after the session went quiet goes out once more, reliably, when reports stop', () => {
  // the session ends at 600 ms (settle frame at 1600, with the models of then); reports at 500 and 1400 during
  // it, then the end's report at 2500, after the settle frame: only pushed volatile by the app, it could be lost
  const updates = [{ t: 0, cause: 'start' as const }, { t: 300, cause: 'trial' as const }, { t: 600, cause: 'end' as const }];
  const out = deltaTimes(updates, 1, { n: 0 }, [500, 1400, 2500], 'models:updated');
  const reliable = out.filter((e) => !e.volatile).map((e) => e.t);
  assert.ok(reliable.includes(4500), `the last report's models sent reliably 2 s after it: ${JSON.stringify(out)}`);
  assert.ok(!reliable.includes(3400) && !reliable.includes(2400), 'not after each report while they keep coming');
});
