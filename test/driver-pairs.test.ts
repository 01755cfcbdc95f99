/** The drivers gallery's pairs: which are current, which retired and why; the paged API and its PNG maps (decoded by Pillow). */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { ChannelStats, DriverPairsPage, Explanation, ModelSnapshot } from '@sharedlens/shared';
import { mapsUrl } from '@sharedlens/shared';
import { classifyPairs, queryPairs } from '../server/src/compute/driver-pairs.ts';
import { runSimRig, type SimResult } from '../server/src/sim/sim-rig.ts';
import { apiFetch, demoStimuli, getJson, startApp, TOKEN, type TestApp } from './helpers.ts';

const category = new Map(demoStimuli.map((s) => [s.id, s.category]));
const ofCategory = (c: string) => demoStimuli.filter((s) => s.category === c).map((s) => s.id);

function explanation(channelId: string, driverId: string, referenceId: string, over: Partial<Explanation> = {}): Explanation {
  const size = 32;
  const driverMap = new Uint8Array(size * size);
  const referenceMap = new Uint8Array(size * size);
  // smooth blobs, one per image, on one 0-255 scale
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      driverMap[y * size + x] = Math.round(255 * Math.exp(-((x - 10) ** 2 + (y - 12) ** 2) / 40));
      referenceMap[y * size + x] = Math.round(180 * Math.exp(-((x - 20) ** 2 + (y - 8) ** 2) / 60));
    }
  return { sessionId: 's', channelId, stimulusSetId: 'demo', driverId, referenceId, similarity: 0.5, driverResponse: 3, referenceResponse: 4, modelVersion: 1, computedAt: '2026-01-01T00:00:00.000Z', computeMs: 100, backend: 'wasm', size, driverMap, referenceMap, ...over };
}

const channel = (id: string, preferredCategory: string, area = 'aSTS'): ChannelStats => ({ id, label: id, area, nTrials: 10, categoryMeans: {}, preferredCategory, selectivityIndex: 0.3, selectivityReason: null, dPrime: 1, splitHalfR: 0.5, noiseCeiling: 0.6, reliabilityStimuli: 10 });

test('a pair whose driver is now in the preferred category, or whose reference is outside it, is retired with the reason', () => {
  const [face1, face2] = ofCategory('face');
  const [obj1] = ofCategory('object');
  const { current, retired } = classifyPairs(
    [explanation('ch042', face1, face2), explanation('ch043', obj1, obj1), explanation('ch044', obj1, face1)],
    [channel('ch042', 'face'), channel('ch043', 'face'), channel('ch044', 'face')],
    null,
    (id) => category.get(id),
  );
  assert.deepEqual(current.map((p) => p.channelId), ['ch044']);
  assert.equal(retired.length, 2);
  assert.match(retired.find((p) => p.channelId === 'ch042')!.retired!, new RegExp(`${face1} is face, now ch042's preferred category`));
  assert.match(retired.find((p) => p.channelId === 'ch043')!.retired!, /reference .* is object, outside ch043's preferred category \(face\)/);
});

test('one card per (channel, driver): the newest holding pair; the model decides which drivers and references are current', () => {
  const [face1, face2] = ofCategory('face');
  const [obj1, obj2, obj3] = ofCategory('object');
  const models: ModelSnapshot = {
    sessionId: 's', version: 3, featureModel: 'm', backend: 'wasm', refits: 3,
    channels: [{ id: 'ch001', scores: null, drivers: [
      { stimulusId: obj1, category: 'object', meanResponse: 3, nTrials: 4, preferredMean: 4, statistic: 3, df: 5, p: 0.01, q: 0.02, referenceId: face2, similarity: 0.4, referenceResponse: 4 },
      { stimulusId: obj2, category: 'object', meanResponse: 2, nTrials: 4, preferredMean: 4, statistic: 3, df: 5, p: 0.01, q: 0.02, referenceId: face1, similarity: 0.3, referenceResponse: 4 },
    ], selectivity: null, driverCandidates: 2, driversReason: null }],
  };
  const { current, retired } = classifyPairs(
    [
      explanation('ch001', obj1, face1, { computedAt: '2026-01-01T00:00:01.000Z' }),
      explanation('ch001', obj1, face2, { computedAt: '2026-01-01T00:00:02.000Z' }),
      explanation('ch001', obj2, face1, { computedAt: '2026-01-01T00:00:01.000Z' }),
      explanation('ch001', obj2, face1, { computedAt: '2026-01-01T00:00:03.000Z', modelVersion: 3 }),
      explanation('ch001', obj3, face1),
    ],
    [channel('ch001', 'face')],
    models,
    (id) => category.get(id),
  );
  assert.deepEqual(current.map((p) => `${p.driverId}/${p.referenceId}/${p.modelVersion}`).sort(), [`${obj1}/${face2}/1`, `${obj2}/${face1}/3`].sort());
  const why = retired.map((p) => p.retired!).sort();
  assert.equal(why.length, 3);
  assert.ok(why.some((r) => r === `ch001's reference for ${obj1} is now ${face2}`), why.join('; '));
  assert.ok(why.some((r) => r === `${obj3} is no longer among ch001's drivers`), why.join('; '));
  assert.ok(why.some((r) => r === `newer maps of ch001 and ${obj2} replace these`), why.join('; '));
});

test('pairs filter by channel, area, category and similarity, and sort by similarity and strength', () => {
  const rows = classifyPairs(
    Array.from({ length: 30 }, (_, i) => explanation(`ch${String(i + 1).padStart(3, '0')}`, ofCategory(i % 2 ? 'object' : 'body')[i % 5], ofCategory('face')[0], { similarity: ((i * 7) % 30) / 30, driverResponse: (i * 11) % 17 })),
    Array.from({ length: 30 }, (_, i) => channel(`ch${String(i + 1).padStart(3, '0')}`, 'face', i % 3 ? 'aSTS' : 'mSTS')),
    null,
    (id) => category.get(id),
  ).current;
  assert.equal(rows.length, 30);
  const bySim = queryPairs(rows, { sort: 'similarity' }).map((r) => r.similarity);
  assert.deepEqual(bySim, [...bySim].sort((a, b) => b - a));
  const byStrength = queryPairs(rows, { sort: 'strength' }).map((r) => r.driverResponse);
  assert.deepEqual(byStrength, [...byStrength].sort((a, b) => b - a));
  assert.deepEqual(queryPairs(rows, {}).slice(0, 3).map((r) => r.channelId), ['ch001', 'ch002', 'ch003']);
  assert.equal(queryPairs(rows, { area: 'mSTS' }).length, 10);
  assert.equal(queryPairs(rows, { category: 'object' }).length, 15);
  assert.deepEqual(queryPairs(rows, { channel: 'ch01' }).map((r) => r.channelId), ['ch010', 'ch011', 'ch012', 'ch013', 'ch014', 'ch015', 'ch016', 'ch017', 'ch018', 'ch019']);
  assert.ok(queryPairs(rows, { minSimilarity: 0.5 }).every((r) => r.similarity >= 0.5));
});

let t: TestApp;
let sim: SimResult;
before(async () => {
  t = await startApp({ dashboard: { deltaThrottleMs: 50, snapshotThrottleMs: 100 } });
  sim = await runSimRig({ url: t.url, token: TOKEN, stimuli: demoStimuli, stimulusSetId: 'demo', channels: 12, trials: 300, onMs: 200, offMs: 200, abortRate: 0, seed: 5, reconnectAfterTrials: 0, fast: true });
});
after(async () => {
  sim?.client.close();
  await t?.close();
});

test('GET /driver-pairs pages the current pairs, lists retired ones on request, and rejects a bad query with a counted log line', async () => {
  const stats = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/stats`)).body;
  const results = new Map<string, Explanation>();
  for (const c of stats.channels as ChannelStats[]) {
    const pref = c.preferredCategory!;
    const other = ['body', 'face', 'object'].find((x) => x !== pref)!;
    const good = explanation(c.id, ofCategory(other)[0], ofCategory(pref)[0], { sessionId: sim.sessionId });
    const stale = explanation(c.id, ofCategory(pref)[1], ofCategory(pref)[0], { sessionId: sim.sessionId });
    results.set(`${c.id}|good`, good).set(`${c.id}|stale`, stale);
  }
  t.app.driverPairs.set(sim.sessionId, results);
  const page = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/driver-pairs?limit=5&offset=10&sort=channel`)).body as DriverPairsPage;
  assert.equal(page.total, 12);
  assert.equal(page.current, 12);
  assert.equal(page.retired, 12);
  assert.deepEqual(page.pairs.map((p) => p.channelId), ['ch011', 'ch012']);
  assert.ok(page.pairs.every((p) => p.driverCategory !== p.preferredCategory && p.referenceCategory === p.preferredCategory));
  const old = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/driver-pairs?retired=1&limit=200`)).body as DriverPairsPage;
  assert.equal(old.pairs.length, 12);
  assert.ok(old.pairs.every((p) => /now ch\d+'s preferred category/.test(p.retired ?? '')));
  const bad = await getJson(`${t.url}/api/sessions/${sim.sessionId}/driver-pairs?limit=5000`);
  assert.equal(bad.status, 400);
  assert.match(bad.body.error.message, /limit must be a whole number 1\.\.200, got "5000"/);
  assert.ok(t.logs.some((l) => l.msg === 'driver-pairs request rejected'));
  assert.equal((await getJson(`${t.url}/api/sessions/${sim.sessionId}/driver-pairs?sort=size`)).status, 400);
  assert.equal((await getJson(`${t.url}/api/sessions/nope/driver-pairs`)).status, 404);
});

test('a pair\'s maps arrive as one small greyscale PNG holding both maps exactly (decoded by Pillow)', async () => {
  const pair = ((await getJson(`${t.url}/api/sessions/${sim.sessionId}/driver-pairs?limit=1`)).body as DriverPairsPage).pairs[0];
  const res = await apiFetch(`${t.url}${mapsUrl(sim.sessionId, pair)}`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'image/png');
  const png = Buffer.from(await res.arrayBuffer());
  const e = explanation(pair.channelId, pair.driverId, pair.referenceId);
  assert.ok(png.length < e.driverMap.length * 2, `PNG ${png.length} bytes`);
  const py = 'import sys, io\nfrom PIL import Image\nim = Image.open(io.BytesIO(sys.stdin.buffer.read()))\nprint(im.mode, im.size[0], im.size[1])\nsys.stdout.write(im.tobytes().hex())';
  const [head, hex] = execFileSync('/usr/bin/python3', ['-c', py], { input: png }).toString().split('\n');
  assert.equal(head, `L ${2 * e.size} ${e.size}`);
  const pixels = Buffer.from(hex, 'hex');
  for (let y = 0; y < e.size; y++) {
    assert.deepEqual([...pixels.subarray(y * 2 * e.size, y * 2 * e.size + e.size)], [...e.driverMap.subarray(y * e.size, (y + 1) * e.size)]);
    assert.deepEqual([...pixels.subarray(y * 2 * e.size + e.size, (y + 1) * 2 * e.size)], [...e.referenceMap.subarray(y * e.size, (y + 1) * e.size)]);
  }
  assert.equal((await apiFetch(`${t.url}/api/sessions/${sim.sessionId}/driver-pairs/maps/ch001/x/y`)).status, 404);
});

test('a pair\'s maps shrunk for the cards (?px): each map shrunk on its own, close to a 2x2 box average (numpy), and px checked', async () => {
  const pair = ((await getJson(`${t.url}/api/sessions/${sim.sessionId}/driver-pairs?limit=1`)).body as DriverPairsPage).pairs[0];
  const e = explanation(pair.channelId, pair.driverId, pair.referenceId);
  const half = e.size / 2;
  const res = await apiFetch(`${t.url}${mapsUrl(sim.sessionId, pair)}?px=${half}`);
  assert.equal(res.status, 200);
  const png = Buffer.from(await res.arrayBuffer());
  const full = Buffer.concat([Buffer.from(e.driverMap), Buffer.from(e.referenceMap)]);
  // Pillow decodes; numpy box-averages the full maps; both halves compared: correlation, peak, largest difference
  const py = [
    'import sys, io, json, numpy as np',
    'from PIL import Image',
    'data = sys.stdin.buffer.read()',
    `n, h, cut = ${e.size}, ${half}, ${png.length}`,
    'im = Image.open(io.BytesIO(data[:cut]))',
    'got = np.asarray(im, dtype=float)',
    'full = np.frombuffer(data[cut:], dtype=np.uint8).astype(float).reshape(2, n, n)',
    'out = {"mode": im.mode, "size": list(im.size), "halves": []}',
    'for k in range(2):',
    '    box = full[k].reshape(h, 2, h, 2).mean(axis=(1, 3))',
    '    g = got[:, k * h:(k + 1) * h]',
    '    pg, pb = np.unravel_index(g.argmax(), g.shape), np.unravel_index(box.argmax(), box.shape)',
    '    out["halves"].append({"r": float(np.corrcoef(g.ravel(), box.ravel())[0, 1]), "peakShift": int(max(abs(pg[0] - pb[0]), abs(pg[1] - pb[1]))), "maxDiff": float(abs(g - box).max())})',
    'print(json.dumps(out))',
  ].join('\n');
  const out = JSON.parse(execFileSync('/usr/bin/python3', ['-c', py], { input: Buffer.concat([png, full]) }).toString());
  assert.equal(out.mode, 'L');
  assert.deepEqual(out.size, [2 * half, half]);
  for (const h of out.halves) {
    assert.ok(h.r > 0.98, `shrunk map against the box average: r ${h.r}`);
    assert.ok(h.peakShift <= 1, `peak moved ${h.peakShift} px`);
    assert.ok(h.maxDiff <= 24, `largest difference ${h.maxDiff} grey levels`);
  }
  // a shrunk map has its own validator: a cached full-size PNG never answers for it
  assert.notEqual(res.headers.get('etag'), (await apiFetch(`${t.url}${mapsUrl(sim.sessionId, pair)}`)).headers.get('etag'));
  const before = t.logs.filter((l) => l.msg === 'driver-pairs request rejected').length;
  for (const bad of ['0', '8', String(e.size + 1), '12.5', 'abc', '']) {
    const r = await apiFetch(`${t.url}${mapsUrl(sim.sessionId, pair)}?px=${bad}`);
    assert.equal(r.status, 400, `px=${bad}`);
    assert.match(((await r.json()) as { error: { message: string } }).error.message, new RegExp(`px must be a whole number 16\\.\\.${e.size} \\(the maps' size\\), got "${bad.replace('.', '\\.')}"`));
  }
  assert.equal(t.logs.filter((l) => l.msg === 'driver-pairs request rejected').length, before + 6);
});

test('a revisit costs nothing: maps asked for by version are immutable, otherwise revalidated by ETag (304); an unchanged page of pairs answers 304; a stale pair is listed as stale', async () => {
  const results = t.app.driverPairs.get(sim.sessionId)!;
  // as a browser's cache revalidates (fetch() itself would add Cache-Control: no-cache to a conditional request)
  const revalidate = (validator: string) => ({ headers: { 'if-none-match': validator, 'cache-control': 'max-age=0' } });
  const page = await apiFetch(`${t.url}/api/sessions/${sim.sessionId}/driver-pairs?limit=3`);
  assert.equal(page.headers.get('cache-control'), 'no-cache');
  const etag = page.headers.get('etag');
  assert.ok(etag);
  const pair = ((await page.json()) as DriverPairsPage).pairs[0];
  assert.equal((await apiFetch(`${t.url}/api/sessions/${sim.sessionId}/driver-pairs?limit=3`, revalidate(etag))).status, 304);
  const url = `${t.url}${mapsUrl(sim.sessionId, pair)}`;
  const versioned = await apiFetch(`${url}?v=${encodeURIComponent(pair.computedAt)}`);
  assert.equal(versioned.status, 200);
  assert.match(versioned.headers.get('cache-control')!, /max-age=31536000, immutable/);
  const tag = versioned.headers.get('etag')!;
  assert.match(tag, /^"[\w-]+"$/);
  // an older version's URL, or none, is never immutable: the browser revalidates, and unchanged maps cost a 304
  const old = await apiFetch(`${url}?v=2025-01-01T00:00:00.000Z`);
  assert.equal(old.status, 200);
  assert.match(old.headers.get('cache-control')!, /no-cache/);
  assert.equal((await apiFetch(url, revalidate(tag))).status, 304);
  // recomputed maps (a new computedAt) have a new validator: the old one gets the new PNG
  const key = [...results.entries()].find(([, e]) => `${e.channelId}/${e.driverId}/${e.referenceId}` === pair.key)![0];
  const before = results.get(key)!;
  results.set(key, { ...before, computedAt: '2026-01-02T00:00:00.000Z', stale: true });
  try {
    const again = await apiFetch(url, revalidate(tag));
    assert.equal(again.status, 200);
    assert.notEqual(again.headers.get('etag'), tag);
    const listed = ((await getJson(`${t.url}/api/sessions/${sim.sessionId}/driver-pairs?limit=200`)).body as DriverPairsPage).pairs;
    assert.deepEqual(listed.filter((p) => p.stale).map((p) => p.key), [pair.key]);
    // the page changed with it: the old ETag no longer matches
    assert.equal((await apiFetch(`${t.url}/api/sessions/${sim.sessionId}/driver-pairs?limit=3`, revalidate(etag))).status, 200);
  } finally {
    results.set(key, before);
  }
});
