/** The neuron page's score history: the whole session at an even resolution, bounded. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addScores, createScoreHistory } from '../server/src/compute/score-history.ts';

const scores = (r: number) => [{ id: 'ch001', scores: { looR: r, normalisedR: r / 0.9 } }, { id: 'ch002', scores: null }];

test('a long session keeps its first and latest points, evenly spaced, within the bound', () => {
  const h = createScoreHistory(50);
  for (let v = 1; v <= 1000; v++) addScores(h, v * 3, scores(v / 1000));
  assert.ok(h.trials.length <= 50 && h.trials.length >= 25, `${h.trials.length} points`);
  assert.equal(h.trials[0], 3);
  assert.ok(h.trials[h.trials.length - 1] >= 3000 - 3 * h.stride, `last point at ${h.trials[h.trials.length - 1]} trials`);
  const gaps = new Set(h.trials.slice(1).map((t, i) => t - h.trials[i]));
  assert.deepEqual([...gaps], [3 * h.stride]);
  // the values stay aligned with their trial counts
  h.trials.forEach((t, i) => assert.equal(h.looR.get('ch001')![i], t / 3 / 1000));
  assert.ok(h.looR.get('ch002')!.every((v) => v === null));
});

test('a new model version at the same trial count replaces the last point', () => {
  const h = createScoreHistory(10);
  addScores(h, 10, scores(0.1));
  addScores(h, 10, scores(0.2));
  addScores(h, 11, scores(0.3));
  assert.deepEqual(h.trials, [10, 11]);
  assert.deepEqual(h.looR.get('ch001'), [0.2, 0.3]);
});

test('a model report that arrives after the session\'s last trial is recorded (not only reports seen on a statistics update)', async () => {
  const { Subject } = await import('rxjs');
  const { recordScoreHistory } = await import('../server/src/http/score-history.ts');
  type Store = Parameters<typeof recordScoreHistory>[0];
  // the two streams and the one method the recorder reads, as the session store publishes them
  const rt = { id: 's1', latest: { trialsCompleted: 0 } };
  let report: { version: number; channels: ReturnType<typeof scores> } | null = null;
  const store = { updates$: new Subject<{ runtime: typeof rt }>(), modelsReady$: new Subject<typeof rt>(), models: () => report };
  const { histories, sub } = recordScoreHistory(store as unknown as Store, 0);
  rt.latest.trialsCompleted = 100;
  report = { version: 1, channels: scores(0.2) };
  store.updates$.next({ runtime: rt });
  // the session ends at trial 120; its last report comes later, with no statistics update after it
  const tick = () => new Promise((r) => setTimeout(r, 10));
  await tick();
  rt.latest.trialsCompleted = 120;
  store.updates$.next({ runtime: rt });
  await tick();
  report = { version: 2, channels: scores(0.5) };
  store.modelsReady$.next(rt);
  await tick();
  sub.unsubscribe();
  assert.deepEqual(histories.get('s1')!.trials, [100, 120]);
  assert.deepEqual(histories.get('s1')!.looR.get('ch001'), [0.2, 0.5]);
});
