/** The dashboard in Debian's chromium (playwright-core): grid, neuron page, driver cards, replay, errors, reconnect. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { lastValueFrom } from 'rxjs';
import { cardMapPx, mapKind, mapsUrl, type DriverPairsPage, type ModelSnapshot } from '@sharedlens/shared';
import { chromium, type Browser, type Page } from 'playwright-core';
import { runSimRig, type SimResult } from '../server/src/sim/sim-rig.ts';
import { ComputeClient } from '../server/src/workers/compute-client.ts';
import { demoStimuli, getJson, root, SIGN_IN_TOKEN, startApp, testConfig, TOKEN, until, type TestApp } from './helpers.ts';

const OUT = path.join(root, 'test-output');
const C = 24;
let t: TestApp;
let sim: SimResult;
let browser: Browser;
let page: Page;

before(async () => {
  fs.mkdirSync(OUT, { recursive: true });
  const base = testConfig();
  t = await startApp({ compute: { ...base.compute, features: true, maps: { ...base.compute.maps, intervalMs: 300 } }, dashboard: { deltaThrottleMs: 100, snapshotThrottleMs: 300 } });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    // as root in CI, and kept off the network (no background services of the browser)
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.goto(`${t.url}/?token=${SIGN_IN_TOKEN}`);
  const client = new ComputeClient({ cacheDir: t.config.compute.cacheDir, dataDir: t.config.dataDir, backend: 'auto', workers: 1 });
  const f = await lastValueFrom(client.features$(demoStimuli.map((s) => path.join(root, 'stimuli/demo', s.file))));
  await client.close();
  if (f.type !== 'features') throw new Error('no features');
  sim = await runSimRig({ url: t.url, token: TOKEN, stimuli: demoStimuli, stimulusSetId: 'demo', channels: C, trials: 720, onMs: 200, offMs: 200, abortRate: 0.03, seed: 21, reconnectAfterTrials: 0, fast: true, features: { features: f.features, dim: f.dim } });
});
after(async () => {
  await browser?.close();
  sim?.client.close();
  await t?.close();
});

test('the grid shows a tile per channel with statistics and model scores; the session bar the session', async () => {
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="channel-tile"]').length === n, C, { timeout: 30_000 });
  const live = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/stats`)).body;
  await page.waitForFunction((n) => document.querySelector('[data-testid="trials"]')?.textContent?.includes(String(n)), live.trialsCompleted, { timeout: 30_000 });
  const bar = await page.textContent('[data-testid="session-bar"]');
  assert.match(bar!, /rig sim-rig/);
  assert.match(bar!, new RegExp(`aborted ${live.trialsAborted}`));
  // model scores appear once the models are fitted (channels whose noise ceiling is undefined show a dash)
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="channel-tile"]')].filter((e) => /nr -?\d/.test(e.textContent ?? '')).length >= 12, null, { timeout: 60_000 });
  const first = await page.textContent('[data-testid="channel-tile"]');
  assert.match(first!, /ch001/);
  assert.match(first!, /SI -?\d\.\d\d/);
  // every abbreviation on the tiles is explained beside the grid
  const key = (await page.textContent('[data-testid="grid-key"]'))!;
  for (const k of [/SI selectivity index/, /rel noise ceiling/, /nr normalised r/, /spikes per response window/]) assert.match(key, k);
  await page.screenshot({ path: path.join(OUT, 'grid.png') });
});

test('filtering and sorting the grid', async () => {
  await page.selectOption('label:has-text("preferred") select', 'body');
  const n = await page.locator('[data-testid="channel-tile"]').count();
  const bodies = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/stats`)).body.channels.filter((c: { preferredCategory: string }) => c.preferredCategory === 'body').length;
  assert.equal(n, bodies);
  await page.selectOption('label:has-text("preferred") select', '');
  await page.selectOption('label:has-text("sort") select', 'selectivity');
  const si = await page.$$eval('[data-testid="channel-tile"]', (els) => els.map((e) => Number(/SI (-?\d\.\d\d)/.exec(e.textContent ?? '')?.[1])));
  assert.deepEqual(si, [...si].sort((a, b) => b - a));
});

test('a neuron page, reached from the grid by keyboard, shows its charts and drivers', async () => {
  await page.selectOption('label:has-text("sort") select', 'id');
  await page.focus('[data-testid="channel-tile"]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('[data-testid="neuron-page"] canvas');
  assert.match(page.url(), /#\/neuron\/ch001$/);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="neuron-page"] canvas[role="img"]').length === 4, null, { timeout: 20_000 });
  // every chart names its axes with units
  const charts = await page.$$eval('[data-testid="neuron-page"] canvas[role="img"]', (els) => els.map((e) => e.getAttribute('aria-label') ?? ''));
  assert.match(charts[0], /PSTH per category; y: firing rate \(spikes\/s\); x: time from stimulus onset \(ms\)/);
  assert.match(charts[1], /hover a bar for its stimulus\); y: response \(spikes\/window\)/);
  assert.match(charts[2], /y: measured response \(spikes\/window\); x: predicted response \(spikes\/window\)/);
  assert.match(charts[3], /Model score over the whole session; y: correlation \(r\); x: trials completed/);
  // opened after the session ended: the score history still covers the whole session
  const total = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/stats`)).body.trialsCompleted;
  // the rig is fast and the model reports paced: on a loaded machine the last reports come seconds after the
  // session's end, so the history is awaited (up to 60 s) until it reaches the session's last tenth and the
  // page shows it. History and page are read together at each look: a point added after one read of the
  // history (a report after the session's end) made the page, which refetches every 3 s, show one point more
  // than that read and never exactly it
  const reaches = (h: { trials: number[] }) => h.trials.length >= 3 && h.trials.at(-1)! >= 0.9 * total;
  const shown = async () => [Number(await page.getAttribute('[data-testid="score-history"]', 'data-points')), Number(await page.getAttribute('[data-testid="score-history"]', 'data-last-trial'))];
  let history = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/score-history/ch001`)).body;
  let onPage = await shown();
  await until(async () => {
    history = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/score-history/ch001`)).body;
    onPage = await shown();
    return reaches(history) && onPage[0] === history.trials.length && onPage[1] === history.trials.at(-1);
  }, 'a score history covering the session, shown on the page', 2400).catch(() => {});
  assert.ok(history.trials.length >= 3 && history.trials.at(-1) >= 0.9 * total, `history from trial ${history.trials[0]} to ${history.trials.at(-1)} of ${total}`);
  assert.deepEqual(onPage, [history.trials.length, history.trials.at(-1)], 'the page shows the history: points and last trial');
  await page.waitForTimeout(300);
  // hovering a bar's column names its stimulus with its mean response (the canvas tooltip's text is
  // mirrored into the chart's aria-description): two places, two stimuli of this channel, values as the API's
  const detail = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/channels/ch001`)).body as { stimuli: { id: string; category: string; mean: number | null; nTrials: number }[] };
  const barChart = page.locator('[data-testid="neuron-page"] canvas[role="img"]').nth(1);
  const bars = (await barChart.boundingBox())!;
  const named: string[] = [];
  for (const at of [0.7, 0.3]) {
    await page.mouse.move(bars.x + bars.width * at, bars.y + bars.height * 0.75);
    const text = await page.waitForFunction((prev) => {
      const d = document.querySelectorAll('[data-testid="neuron-page"] canvas[role="img"]')[1]?.getAttribute('aria-description') ?? '';
      return d && !d.startsWith(`${prev} (`) ? d : null;
    }, named[0] ?? '\u0000', { timeout: 5000 }).then((h) => h.jsonValue() as Promise<string>);
    const m = /^(\S+) \((\w+)\) — (-?\d+\.\d\d) ± (\S+) spikes\/window \(mean ± SEM\), (\d+) trials$/.exec(text);
    assert.ok(m, text);
    const s = detail.stimuli.find((x) => x.id === m[1]);
    assert.ok(s, `${m[1]} is not a stimulus of ch001`);
    assert.equal(m[2], s.category);
    assert.equal(Number(m[5]), s.nTrials);
    if (s.mean != null) assert.equal(m[3], s.mean.toFixed(2));
    named.push(m[1]);
  }
  assert.notEqual(named[0], named[1]);
  await page.screenshot({ path: path.join(OUT, 'neuron.png'), fullPage: true });
  await page.keyboard.press('ArrowRight');
  await page.waitForFunction(() => location.hash === '#/neuron/ch002');
});

test('driver cards show the driver and its reference with both heatmaps on one scale', async () => {
  await page.goto(`${t.url}/#/drivers`);
  await page.waitForSelector('[data-testid="driver-card"]', { timeout: 90_000 });
  const card = page.locator('[data-testid="driver-card"]').first();
  assert.equal(await card.locator('img[data-testid="driver-image"]').count(), 2);
  // the maps arrive as one PNG per card on screen, never with the page of pairs
  await page.waitForFunction(() => document.querySelector('[data-testid="driver-card"]')?.querySelectorAll('canvas[data-testid="heatmap"]').length === 2, null, { timeout: 20_000 });
  // the images load and the heatmaps are drawn (not blank)
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="driver-card"] img')].slice(0, 2).every((i) => (i as HTMLImageElement).naturalWidth > 0));
  const painted = await card.locator('canvas[data-testid="heatmap"]').first().evaluate((c) => {
    const d = (c as HTMLCanvasElement).getContext('2d')!.getImageData(0, 0, (c as HTMLCanvasElement).width, (c as HTMLCanvasElement).height).data;
    const distinct = new Set<number>();
    for (let i = 0; i < d.length; i += 4 * 7) distinct.add(d[i] * 65536 + d[i + 1] * 256 + d[i + 2]);
    return distinct.size;
  });
  await page.screenshot({ path: path.join(OUT, 'drivers.png'), fullPage: true });
  assert.ok(painted > 5, `heatmap colours: ${painted}`);
  await page.locator('input[type="range"]').first().fill('0.8');
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(OUT, 'drivers.png'), fullPage: true });
});

test('the gallery pages current pairs, enlarges a pair beside its originals, and never asks for the whole manifest or every map', async () => {
  const asked: string[] = [];
  const onRequest = (r: { url(): string }) => asked.push(new URL(r.url()).pathname);
  page.on('request', onRequest);
  // a fresh page load (the query differs): the defaults, not the previous test's slider
  await page.goto(`${t.url}/?fresh=1#/drivers`);
  await page.waitForFunction(() => document.querySelector('[data-testid="driver-card"]')?.querySelectorAll('canvas[data-testid="heatmap"]').length === 2, null, { timeout: 30_000 });
  // the page shows what the API lists (map jobs may still finish after the session: the page follows them)
  const api = await until(async () => {
    const body = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/driver-pairs?limit=200`)).body;
    const summary = (await page.textContent('[data-testid="pairs-summary"]'))!.replace(/\s+/g, ' ');
    const cards = await page.locator('[data-testid="driver-card"]').count();
    return cards === Math.min(24, body.total) && summary.includes(`of ${body.total} current driver pairs · ${body.current} current, ${body.retired} retired`) ? body : null;
  }, 'the gallery to match the API', 600);
  // one card per (channel, driver)
  assert.equal(new Set(api.pairs.map((p: { channelId: string; driverId: string }) => `${p.channelId}/${p.driverId}`)).size, api.total);
  // the overlay keeps the image visible by default; the colour bar gives the scale; labels are whole
  assert.equal(await page.locator('canvas[data-testid="heatmap"]').first().evaluate((c) => getComputedStyle(c).opacity), '0.45');
  // the colour bar names what the maps show, by how the server made them (the default: the fall of the
  // neuron's predicted response, not the paper's shared-feature vector: docs/compute.md)
  assert.equal(api.pairs[0].method, `${t.config.compute.maps.method}/${t.config.compute.maps.features}`);
  const kind = mapKind(api.pairs[0].method);
  assert.equal(t.config.compute.maps.features, 'prediction');
  assert.equal(kind.name, 'model-drive map');
  const bar = page.locator('[data-testid="colour-bar"]').first();
  assert.match((await bar.textContent())!, new RegExp(`${kind.name}.*0.*0\\.5.*1`, 's'));
  assert.ok((await bar.getAttribute('title'))!.includes(kind.explains));
  const cut = await page.$$eval('[data-testid="driver-card"] figcaption', (els) => els.filter((e) => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1).length);
  assert.equal(cut, 0);
  const first = api.pairs[0];
  assert.ok((await page.textContent('[data-testid="driver-card"] figcaption'))!.includes(`driver ${first.driverId} (${first.driverCategory})`));
  // the overlay is the map itself, colour by value, nothing added by the page (issue 16's bright corner):
  // every pixel's colour is a function of the map's value there, and the canvas has the map's size
  const painted = await page.evaluate(async (url) => {
    const canvas = document.querySelector('[data-testid="driver-card"] canvas[data-testid="heatmap"]') as HTMLCanvasElement;
    const shown = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
    const bmp = await createImageBitmap(await (await fetch(url)).blob(), { colorSpaceConversion: 'none' });
    const c = new OffscreenCanvas(bmp.width, bmp.height);
    c.getContext('2d')!.drawImage(bmp, 0, 0);
    const png = c.getContext('2d')!.getImageData(0, 0, bmp.width, bmp.height).data;
    const colourOf = new Map<number, string>();
    let clashes = 0;
    for (let y = 0; y < canvas.height; y++)
      for (let x = 0; x < canvas.width; x++) {
        const v = png[(y * bmp.width + x) * 4];
        const i = (y * canvas.width + x) * 4;
        const rgb = `${shown[i]},${shown[i + 1]},${shown[i + 2]}`;
        if ((colourOf.get(v) ?? rgb) !== rgb) clashes++;
        colourOf.set(v, rgb);
      }
    return { clashes, width: canvas.width, mapSide: bmp.height, values: colourOf.size };
  }, `${mapsUrl(sim.sessionId, api.pairs[0])}?px=${cardMapPx(api.pairs[0])}`);
  // the cards' maps are asked for at the cards' size (bytes on the wire), the enlarged view's at full size
  assert.equal(painted.mapSide, cardMapPx(api.pairs[0]));
  assert.equal(painted.width, painted.mapSide);
  assert.equal(painted.clashes, 0);
  assert.ok(painted.values > 20, `${painted.values} distinct map values`);
  await page.locator('[data-testid="driver-card"] button.pair').first().click();
  const big = page.locator('[data-testid="pair-enlarged"]');
  await big.waitFor();
  assert.equal(await big.locator('img').count(), 4);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="pair-enlarged"] canvas[data-testid="heatmap"]').length === 2);
  // enlarged: the full-size maps replace the card's
  await page.waitForFunction((side) => [...document.querySelectorAll<HTMLCanvasElement>('[data-testid="pair-enlarged"] canvas[data-testid="heatmap"]')].every((c) => c.width === side), api.pairs[0].size);
  await page.waitForTimeout(200);
  await page.screenshot({ path: path.join(OUT, 'drivers-enlarged.png') });
  await page.keyboard.press('Escape');
  await big.waitFor({ state: 'detached' });
  // retired pairs: listed with the reason they no longer hold
  await page.check('label:has-text("retired pairs") input');
  await page.waitForFunction(() => /retired driver pairs/.test(document.querySelector('[data-testid="pairs-summary"]')?.textContent ?? ''));
  const retiredCards = await page.$$eval('[data-testid="driver-card"] footer', (els) => els.map((e) => e.textContent ?? ''));
  assert.ok(retiredCards.every((f) => /retired: \S/.test(f)), retiredCards.join(' | '));
  await page.uncheck('label:has-text("retired pairs") input');
  // back to the current pairs: as many cards as the API lists now (map jobs may finish, and pairs retire, after
  // the session: the count read above can be out of date), each on screen with both maps (cards below the screen
  // load theirs when scrolled to)
  await until(async () => {
    const now = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/driver-pairs?limit=1`)).body.total as number;
    return page.evaluate((n) => {
      const cards = [...document.querySelectorAll('[data-testid="driver-card"]')];
      const onScreen = cards.filter((c) => c.getBoundingClientRect().top < innerHeight);
      return cards.length === n && onScreen.length > 0 && onScreen.every((c) => c.querySelectorAll('canvas[data-testid="heatmap"]').length === 2);
    }, Math.min(24, now));
  }, 'the current pairs back, each card on screen with both maps', 1200);
  await page.screenshot({ path: path.join(OUT, 'drivers.png'), fullPage: true });
  page.off('request', onRequest);
  assert.ok(!asked.some((p) => /^\/api\/stimuli\/[^/]+$/.test(p)), `manifest asked: ${asked.filter((p) => p.startsWith('/api/stimuli')).join(' ')}`);
  assert.ok(!asked.some((p) => p.endsWith('/explanations')));
  const maps = asked.filter((p) => p.includes('/driver-pairs/maps/'));
  assert.ok(maps.length > 0 && maps.length <= 24 + 2, `${maps.length} map requests`);
});

test('a stale pair is marked on its card; a driver without maps has a "map on request" button that brings its maps', async () => {
  // stale: the channel's readout moved since the maps were made (explain-jobs re-sends the pair with stale: true)
  const results = t.app.driverPairs.get(sim.sessionId)!;
  const pair = ((await getJson(`${t.url}/api/sessions/${sim.sessionId}/driver-pairs?limit=1`)).body as DriverPairsPage).pairs[0];
  const key = [...results.entries()].find(([, e]) => `${e.channelId}/${e.driverId}/${e.referenceId}` === pair.key)![0];
  const fresh = results.get(key)!;
  results.set(key, { ...fresh, stale: true });
  try {
    await page.goto(`${t.url}/?stale=1#/drivers`);
    const card = page.locator(`[data-testid="driver-card"][data-key="${pair.key}"]`);
    await card.waitFor();
    assert.match((await card.locator('[data-testid="stale-mark"]').textContent())!, /stale: recomputing/);
    assert.match((await card.locator('[data-testid="stale-mark"]').getAttribute('title'))!, /model .* has moved since these maps were made/);
    // only the stale ones are marked (as many as the API lists on this page)
    const onPage = ((await getJson(`${t.url}/api/sessions/${sim.sessionId}/driver-pairs?limit=24`)).body as DriverPairsPage).pairs;
    assert.equal(await page.locator('[data-testid="stale-mark"]').count(), onPage.filter((p) => p.stale).length);
  } finally {
    results.set(key, fresh);
  }
  // a driver without maps (maps are made unasked only for each channel's strongest drivers): here one whose
  // maps are taken out of the registry, as if never computed
  const models = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/models`)).body as ModelSnapshot;
  const listed = ((await getJson(`${t.url}/api/sessions/${sim.sessionId}/driver-pairs?limit=200`)).body as DriverPairsPage).pairs;
  const target = models.channels.flatMap((c) => c.drivers.filter((d) => d.referenceId && listed.some((p) => p.channelId === c.id && p.driverId === d.stimulusId)).map((d) => ({ channelId: c.id, driverId: d.stimulusId })))[0];
  assert.ok(target, 'no driver with a reference in this session');
  for (const [k, e] of results) if (e.channelId === target.channelId && e.driverId === target.driverId) results.delete(k);
  await page.goto(`${t.url}/#/neuron/${target.channelId}`);
  const button = page.locator(`[data-testid="request-maps"][data-driver="${target.driverId}"]`);
  await button.click();
  assert.match((await page.locator('[data-testid="request-status"]').first().textContent({ timeout: 10_000 }))!, /queued|ready|asking/);
  await page.waitForSelector(`[data-testid="neuron-pairs"] [data-testid="driver-card"][data-key^="${target.channelId}/${target.driverId}/"] canvas[data-testid="heatmap"]`, { timeout: 60_000 });
  // once its maps are listed the button gives way to the pair
  await button.waitFor({ state: 'detached', timeout: 10_000 });
  await page.screenshot({ path: path.join(OUT, 'neuron-maps-on-request.png'), fullPage: true });
});

test('the follow-up panel asks for suggestions and shows them with thumbnails and reasons', async () => {
  await page.goto(`${t.url}/#/followup`);
  await page.waitForSelector('[data-testid="followup-send"]:not([disabled])', { timeout: 30_000 });
  // the session the suggestions are for is named
  assert.match((await page.textContent('[data-testid="followup-target"]'))!, new RegExp(`Suggestions for \\w+ session ${sim.sessionId} \\(rig sim-rig`));
  // the neuron picker is searchable: a filter, select the shown ones, clear
  await page.fill('[aria-label="filter neurons"]', 'ch00');
  assert.equal(await page.locator('[data-testid="neuron-picker"] .options label').count(), 9);
  await page.click('button:has-text("select 9 shown")');
  assert.match((await page.textContent('[data-testid="neuron-picker"] legend'))!, new RegExp(`9 of ${C} selected`));
  await page.click('button:has-text("clear (all neurons)")');
  await page.fill('[aria-label="filter neurons"]', '');
  assert.match((await page.textContent('[data-testid="neuron-picker"] legend'))!, new RegExp(`all ${C}`));
  await page.click('[data-testid="followup-send"]');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="followup-item"]').length === 6, null, { timeout: 20_000 });
  const first = await page.textContent('[data-testid="followup-item"]');
  assert.match(first!, /probe|improve|confirm/);
  // probe and improve (first in the mix, so never crowded out by another strategy's picks) either gave
  // suggestions or are named in a note saying why not; confirm's may be in the list under probe
  const tags = await page.$$eval('[data-testid="followup-item"] .tag', (els) => els.map((e) => e.textContent));
  const notes = (await page.$$eval('[data-testid="followup-notes"] li', (els) => els.map((e) => e.textContent ?? ''))).join('\n');
  for (const strategy of ['probe', 'improve']) assert.ok(tags.includes(strategy) || notes.includes(`${strategy}: `), `${strategy}: neither suggestions nor a note`);
  for (const strategy of ['probe', 'improve', 'confirm']) assert.ok(!(tags.includes(strategy) && notes.includes(`${strategy}: `)), `${strategy}: a note contradicts the list`);
  assert.match((await page.textContent('[data-testid="followup-panel"]'))!, /sent to 1 rig connection|no rig connected to this session/);
  // improve's design serves every neuron asked for: its cards say so instead of naming three
  const improveCards = await page.$$eval('[data-testid="followup-item"]', (els) => els.filter((e) => e.querySelector('.tag')?.textContent === 'improve').map((e) => e.textContent ?? ''));
  assert.ok(improveCards.every((c) => new RegExp(`for all ${C} neurons \\(one design serves them all\\)`).test(c)), improveCards.join(' | '));
  await page.screenshot({ path: path.join(OUT, 'followup.png'), fullPage: true });
});

test('a replay started from the sessions view reproduces the live view', async () => {
  const live = (await getJson(`${t.url}/api/sessions/${sim.sessionId}/stats`)).body;
  await page.goto(`${t.url}/#/sessions`);
  assert.equal(await page.locator('label:has-text("replay speed") select').count(), 1);
  await page.selectOption('label:has-text("replay speed") select', 'max');
  await page.locator('[data-testid="recorded-session"]', { hasText: sim.sessionId }).locator('[data-testid="replay-button"]').click();
  await page.waitForFunction(() => location.hash === '#/');
  await page.waitForFunction((n) => document.querySelector('[data-testid="trials"]')?.textContent?.includes(`trials ${n} `), live.trialsCompleted, { timeout: 60_000 });
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="channel-tile"]').length === n, C);
  assert.match((await page.textContent('[data-testid="rig-state"]'))!, /replay/);
  const tiles = await page.$$eval('[data-testid="channel-tile"]', (els) => els.map((e) => /SI (-?\d\.\d\d)/.exec(e.textContent ?? '')?.[1]));
  assert.deepEqual(tiles, live.channels.map((c: { selectivityIndex: number }) => c.selectivityIndex.toFixed(2)));
  // the replay's controls stay on every view, with the one speed selector
  for (const view of ['#/', '#/drivers', '#/sessions', '#/followup', '#/neuron/ch002']) {
    await page.evaluate((h) => (location.hash = h), view);
    await page.waitForSelector('[data-testid="replay-controls"]');
    assert.equal(await page.locator('label:has-text("replay speed") select').count(), 1, view);
  }
  await page.evaluate(() => (location.hash = '#/'));
  await page.screenshot({ path: path.join(OUT, 'replay.png') });
});

test('a live session is listed with its trials while it runs; the session clock stops when a session ends', async () => {
  const stop = new AbortController();
  const second = runSimRig({ url: t.url, token: TOKEN, stimuli: demoStimuli, stimulusSetId: 'demo', channels: 4, trials: Infinity, onMs: 100, offMs: 100, abortRate: 0, seed: 8, reconnectAfterTrials: 0, fast: false, signal: stop.signal });
  await until(() => t.app.store.all().find((rt) => rt.state === 'live' && (rt.latest?.trialsCompleted ?? 0) > 3), 'a live session with trials', 800);
  const liveId = t.app.store.all().find((rt) => rt.state === 'live')!.id;
  await page.goto(`${t.url}/#/sessions`);
  const row = page.locator('[data-testid="recorded-session"]', { hasText: liveId });
  await row.waitFor();
  // its trials count up while it runs (cells: session, rig, subject, started, state, channels, trials)
  await page.waitForFunction((id) => [...document.querySelectorAll('[data-testid="recorded-session"]')].some((r) => r.textContent!.includes(id) && r.children[4].textContent === 'live' && Number(r.children[6].textContent) > 3), liveId, { timeout: 10_000 });
  assert.ok(!(await page.textContent('main'))!.includes('No sessions yet'));
  await page.screenshot({ path: path.join(OUT, 'sessions.png') });
  // watched, the live session's clock and trial rate agree: trials over the clock's seconds is the rate shown
  await page.locator('button.chip', { hasText: `${liveId} (live)` }).click();
  await until(() => (t.app.store.get(liveId)?.latest?.trialsCompleted ?? 0) > 20, 'the live session past 20 trials', 800);
  await page.waitForTimeout(3000);
  const bar = (await page.textContent('[data-testid="session-bar"]'))!.replace(/\s+/g, ' ');
  const m = /session (\d+):(\d\d):(\d\d) trials (\d+) \((\d+\.\d)\/s\)/.exec(bar);
  assert.ok(m, bar);
  const clockS = Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
  const [trials, rate] = [Number(m[4]), Number(m[5])];
  assert.ok(rate > 1, bar);
  assert.ok(Math.abs(trials / clockS - rate) / rate < 0.35, `${trials} trials in ${clockS} s against ${rate}/s: ${bar}`);
  stop.abort();
  (await second).client.close();
  // ended: the clock stops and the rate is the session's average, so the two still agree
  await page.waitForFunction(() => /\bended\b/.test(document.querySelector('[data-testid="session-bar"]')?.textContent ?? ''), null, { timeout: 10_000 });
  const endBar = (await page.textContent('[data-testid="session-bar"]'))!.replace(/\s+/g, ' ');
  await page.waitForTimeout(2100);
  assert.equal((await page.textContent('[data-testid="session-bar"]'))!.replace(/\s+/g, ' ').match(/session \S+/)![0], endBar.match(/session \S+/)![0]);
  const e = /session (\d+):(\d\d):(\d\d) trials (\d+) \((\d+\.\d)\/s\)/.exec(endBar)!;
  const endS = Number(e[1]) * 3600 + Number(e[2]) * 60 + Number(e[3]);
  assert.ok(Math.abs(Number(e[4]) / endS - Number(e[5])) <= 0.05 + Number(e[5]) * 0.01, endBar);
  // the end time is the server's (in the sessions list), so a reloaded page shows the same stopped clock
  assert.ok(t.app.store.summary(t.app.store.get(liveId)!).endedAt);
  await page.reload();
  await page.locator('button.chip', { hasText: `${liveId} (ended)` }).click();
  await page.waitForFunction((n) => document.querySelector('[data-testid="trials"]')?.textContent?.includes(`trials ${n} `), e[4]);
  assert.equal((await page.textContent('[data-testid="session-clock"]'))!.replace(/\s+/g, ' ').trim(), endBar.match(/session \S+/)![0]);
  // the first session ended long ago: its clock stands still
  await page.locator('button.chip', { hasText: `${sim.sessionId} (ended)` }).click();
  await page.waitForFunction((id) => document.querySelector('[data-testid="session-bar"]')?.textContent?.includes('ended'), sim.sessionId);
  const clock = await page.textContent('[data-testid="session-clock"]');
  await page.waitForTimeout(2100);
  assert.equal(await page.textContent('[data-testid="session-clock"]'), clock);
});

test('errors the server reports are shown, never a blank page', async () => {
  await page.goto(`${t.url}/#/neuron/no-such-channel`);
  const alert = await page.waitForSelector('[role="alert"]', { timeout: 10_000 });
  assert.match((await alert.textContent())!, /no channel "no-such-channel"/);
  assert.ok(await page.isVisible('[data-testid="session-bar"]'));
});

test('the page reconnects by itself after a server restart, and says so when the new server needs a fresh sign-in', async () => {
  await page.goto(`${t.url}/#/`);
  await page.waitForSelector('[data-testid="channel-tile"]');
  const port = Number(new URL(t.url).port);
  await t.close();
  await page.waitForFunction(() => /server unreachable/.test(document.querySelector('[data-testid="rig-state"]')?.textContent ?? ''), null, { timeout: 15_000 });
  t = await startApp({ dataDir: t.config.dataDir }, port);
  // sign-ins live in the server's memory: the restarted server refuses the old cookie, and the bar says so
  await page.waitForFunction(() => /signed out: sign in again/.test(document.querySelector('[data-testid="rig-state"]')?.textContent ?? ''), null, { timeout: 20_000 });
  await page.goto(`${t.url}/?token=${SIGN_IN_TOKEN}`);
  await page.waitForFunction(() => !/server unreachable|signed out/.test(document.querySelector('[data-testid="rig-state"]')?.textContent ?? ''), null, { timeout: 20_000 });
});
