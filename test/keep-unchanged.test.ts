/** The grid re-renders only tiles whose shown values changed: previous objects are kept for the others. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChannelStats } from '@sharedlens/shared';
import { keepUnchanged, tileShows } from '../client/src/lib/keep-unchanged.ts';

const ch = (id: string, si: number, nTrials: number): ChannelStats => ({ id, label: id, area: 'aSTS', nTrials, categoryMeans: {}, preferredCategory: 'face', selectivityIndex: si, selectivityReason: null, dPrime: 1, splitHalfR: 0.5, noiseCeiling: 0.6, reliabilityStimuli: 10 });

test('a trial that moves no shown figure keeps every tile object; a moved figure replaces only its own', () => {
  const prev = [ch('ch001', 0.301, 10), ch('ch002', 0.5, 10), ch('ch003', 0.7, 10)];
  const sameShown = keepUnchanged(prev, [ch('ch001', 0.302, 11), ch('ch002', 0.5, 11), ch('ch003', 0.7, 11)], tileShows);
  assert.ok(sameShown.every((x, i) => x === prev[i]));
  const moved = keepUnchanged(prev, [ch('ch001', 0.312, 12), ch('ch002', 0.5, 12), ch('ch003', 0.7, 12)], tileShows);
  assert.notEqual(moved[0], prev[0]);
  assert.equal(moved[0].selectivityIndex, 0.312);
  assert.ok(moved[1] === prev[1] && moved[2] === prev[2]);
  // by default every field counts; new channels come in as they are
  const added = keepUnchanged(prev, [...prev.map((x) => ({ ...x })), ch('ch004', 0.1, 1)]);
  assert.ok(added.slice(0, 3).every((x, i) => x === prev[i]) && added[3].id === 'ch004');
});
