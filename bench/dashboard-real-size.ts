/**
 * The dashboard at the size of a real session (issue 16): 384 channels (BENCH_DASHBOARD_CHANNELS) streaming at
 * a rig's pace (2.5 trials/s; the simulated rig in a thread of its own, as a rig is another machine) over a set of 1,000 images (BENCH_DASHBOARD_IMAGES), at least 1,000 current
 * driver pairs (3 per channel), the drivers view open in Debian's chromium and scrolled through its pages,
 * for BENCH_DASHBOARD_SECONDS (600). The pairs are put into the server's registry with synthetic maps
 * (Gaussian-smoothed noise at compute.maps.smoothSigmaPx plus blobs, 224 px) and announced as the map jobs
 * announce them; computing maps is the maps bench's subject. Baselines from the same run: the grid view
 * before the drivers view opens (longest task), the old wire format (every map as base64 in one JSON) for
 * the same pairs, and the page heap after the first 20% of the run.
 */
import fs from 'node:fs';
import { Session } from 'node:inspector/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { chromium } from 'playwright-core';
import { pino } from 'pino';
import { dashboardEvents, type Explanation } from '@sharedlens/shared';
import { createApp } from '../server/src/app.ts';
import { loadConfig } from '../server/src/config.ts';
import { channelStats } from '../server/src/compute/neuron-stats.ts';
import { watchRoom } from '../server/src/sinks/dashboard-broadcast.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { startRigThread } from './dashboard-rig.ts';
import { makeScaleSet } from './scale-images.ts';
import { root, tmpDir } from './support.ts';

const SECONDS = Number(process.env.BENCH_DASHBOARD_SECONDS ?? 600);
const CHANNELS = Number(process.env.BENCH_DASHBOARD_CHANNELS ?? 384);
const IMAGES = Number(process.env.BENCH_DASHBOARD_IMAGES ?? 1000);
const PER_CHANNEL = 3;
const SIZE = 224;
const TOKEN = 'bench-rig-token';
/** A Chromium trace of the page (timeline and JS samples) from the drivers view's open through TRACE_SECONDS, for chrome://tracing or the DevTools Performance panel. */
const TRACE = process.env.BENCH_DASHBOARD_TRACE;
const TRACE_SECONDS = 30;
const SIGN_IN = 'bench-sign-in-token';

/** A display map like the server's: smoothed noise and a few blobs, scaled to 0-255 by its 99.5th percentile. */
function syntheticMap(r: () => number, sigmaPx: number): Uint8Array {
  const n = SIZE * SIZE;
  const raw = new Float32Array(n);
  for (let i = 0; i < n; i++) raw[i] = r() ** 3;
  const k = Math.ceil(3 * sigmaPx);
  const w = Array.from({ length: 2 * k + 1 }, (_, i) => Math.exp(-((i - k) ** 2) / (2 * sigmaPx * sigmaPx)));
  const tmp = new Float32Array(n);
  const out = new Float32Array(n);
  for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) { let s = 0; for (let d = -k; d <= k; d++) s += w[d + k] * raw[y * SIZE + Math.min(SIZE - 1, Math.max(0, x + d))]; tmp[y * SIZE + x] = s; }
  for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) { let s = 0; for (let d = -k; d <= k; d++) s += w[d + k] * tmp[Math.min(SIZE - 1, Math.max(0, y + d)) * SIZE + x]; out[y * SIZE + x] = s; }
  for (let b = 0; b < 4; b++) {
    const cx = r() * SIZE, cy = r() * SIZE, rad = 8 + r() * 30, a = 2 + 4 * r();
    for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) out[y * SIZE + x] += a * Math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * rad * rad));
  }
  const top = [...out].sort((a, b) => a - b)[Math.floor(0.995 * n)];
  return Uint8Array.from(out, (v) => Math.min(255, Math.round((255 * v) / top)));
}

export async function run(): Promise<Record<string, unknown>> {
  const stimulusDir = tmpDir();
  const t0Set = performance.now();
  const stimuli = await makeScaleSet(stimulusDir, 'real-size', IMAGES, 7);
  console.log(`  real-size run: ${IMAGES} images written in ${((performance.now() - t0Set) / 1000).toFixed(0)} s; ${CHANNELS} channels, ${SECONDS} s`);
  const base = loadConfig(root, { RIG_TOKENS: TOKEN, AUTH_TOKEN: SIGN_IN, DEMO: '0' });
  const config = { ...base, dataDir: tmpDir(), stimulusDir, compute: { ...base.compute, features: false } };
  const app = createApp({ config, logger: pino({ level: 'silent' }), clientDir: path.join(root, 'client', 'dist') });
  const port = await app.listen(0, '127.0.0.1');
  const url = `http://127.0.0.1:${port}`;
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  // the page's long tasks (main thread blocked > 50 ms), from the browser's own Long Tasks API
  await page.addInitScript(() => {
    const w = window as unknown as { __longest: number; __tasks: number };
    w.__longest = 0;
    w.__tasks = 0;
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        w.__longest = Math.max(w.__longest, e.duration);
        w.__tasks++;
      }
    }).observe({ type: 'longtask', buffered: true });
  });
  page.on('crash', () => console.error('  the page crashed'));
  page.on('pageerror', (e) => console.error(`  page error: ${e.message}`));
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');
  await cdp.send('Network.enable');
  let sockets = 0;
  const bytes = { pairsJson: 0, mapsPng: 0, maps: new Set<string>(), ws: 0, fromCache: 0, notModified: 0 };
  const urls = new Map<string, string>();
  // answered from the browser's cache: nothing on the wire
  const cached = new Set<string>();
  cdp.on('Network.requestServedFromCache', (e) => cached.add(e.requestId));
  cdp.on('Network.webSocketCreated', () => sockets++);
  cdp.on('Network.webSocketFrameReceived', (e) => (bytes.ws += e.response.payloadData.length));
  cdp.on('Network.responseReceived', (e) => {
    urls.set(e.requestId, e.response.url);
    if (e.response.status === 304) bytes.notModified++;
  });
  cdp.on('Network.loadingFinished', (e) => {
    const u = urls.get(e.requestId) ?? '';
    urls.delete(e.requestId);
    if (cached.delete(e.requestId)) {
      if (u.includes('/driver-pairs')) bytes.fromCache++;
      return;
    }
    // the bench's own count of current pairs is not the dashboard's traffic
    if (u.includes('probe=1')) return;
    if (u.includes('/driver-pairs/maps/')) {
      bytes.mapsPng += e.encodedDataLength;
      bytes.maps.add(new URL(u).pathname);
    } else if (u.includes('/driver-pairs')) bytes.pairsJson += e.encodedDataLength;
  });

  // the rig in a thread of its own, as a rig is another machine
  const rig = startRigThread({ url, token: TOKEN, stimuli, stimulusSetId: 'real-size', channels: CHANNELS, trials: Infinity, onMs: 200, offMs: 200, abortRate: 0.03, seed: 11, reconnectAfterTrials: 0, fast: false });
  await page.goto(`${url}/?token=${SIGN_IN}`);
  // baseline: the grid view while trials stream in, until every channel has a preferred category
  const rt = await (async () => {
    for (let i = 0; ; i++) {
      const r = app.store.all()[0];
      const withPref = r?.latest ? channelStats(r.latest).filter((c) => c.preferredCategory).length : 0;
      if (withPref === CHANNELS) return r!;
      if (i % 20 === 19) console.log(`  waiting for every channel's preferred category: ${withPref} of ${CHANNELS}, ${r?.latest?.trialsCompleted ?? 0} trials`);
      await new Promise((res) => setTimeout(res, 500));
    }
  })();
  const gridLongest = await page.evaluate(() => (window as unknown as { __longest: number }).__longest);

  // the pairs: 3 per channel, drivers outside its preferred category, references inside it
  const r = mulberry32(5);
  const byCat = new Map<string, string[]>();
  for (const s of stimuli) byCat.set(s.category, [...(byCat.get(s.category) ?? []), s.id]);
  const pick = (list: string[]) => list[Math.floor(r() * list.length)];
  const results = new Map<string, Explanation>();
  app.driverPairs.set(rt.id, results);
  let oldJsonBytes = 0;
  let made = 0;
  // a pool of maps drawn once (making 2,000+ of them would stall the server's event loop for half a minute)
  const mapPool = Array.from({ length: 96 }, () => syntheticMap(r, config.compute.maps.smoothSigmaPx));
  const someMap = () => mapPool[Math.floor(r() * mapPool.length)];
  /**
   * Gives every channel PER_CHANNEL pairs that hold for its preferred category now, as the map jobs do when
   * a channel's preference or drivers change: the old ones stay in the registry (the API lists them as
   * retired) and the new ones are announced.
   */
  const refresh = () => {
    const stats = channelStats(app.store.get(rt.id)!.latest!);
    const cat = new Map(stimuli.map((x) => [x.id, x.category]));
    for (const c of stats) {
      if (!c.preferredCategory) continue;
      const holding = [...results.values()].filter((e) => e.channelId === c.id && cat.get(e.driverId) !== c.preferredCategory && cat.get(e.referenceId) === c.preferredCategory);
      const others = [...byCat.keys()].filter((k) => k !== c.preferredCategory);
      for (let d = holding.length; d < PER_CHANNEL; d++) {
        const e: Explanation = {
          sessionId: rt.id, channelId: c.id, stimulusSetId: 'real-size', driverId: pick(byCat.get(others[(d + made) % others.length])!), referenceId: pick(byCat.get(c.preferredCategory)!),
          similarity: r(), driverResponse: 2 + 4 * r(), referenceResponse: 3 + 4 * r(), modelVersion: 1 + made, computedAt: new Date().toISOString(), computeMs: 800, backend: 'wasm', size: SIZE,
          driverMap: someMap(), referenceMap: someMap(),
        };
        made++;
        results.set(`${c.id}|${e.driverId}|${e.referenceId}`, e);
        // what the old /explanations JSON carried for this pair: every field with both maps as base64
        oldJsonBytes += JSON.stringify({ ...e, driverMap: Buffer.from(e.driverMap).toString('base64'), referenceMap: Buffer.from(e.referenceMap).toString('base64') }).length;
        const { driverMap: _d, referenceMap: _r, ...meta } = e;
        app.io.of('/dashboard').to(watchRoom(rt.id)).emit(dashboardEvents.explainReady, meta);
      }
    }
  };
  refresh();
  const currentPairs = () => page.evaluate((id) => fetch(`/api/sessions/${id}/driver-pairs?limit=1&probe=1`).then((x) => x.json()).then((b) => b.current as number), rt.id);
  const pairsAtOpen = made;

  // the drivers view opened from scratch (page load, sign-in cookie, socket, first page, first maps)
  if (TRACE) await browser.startTracing(page, { path: TRACE, screenshots: false, categories: ['devtools.timeline', 'disabled-by-default-devtools.timeline', 'v8.execute', 'disabled-by-default-v8.cpu_profiler', 'blink.user_timing', 'loading'] });
  let tracing = !!TRACE;
  // and the server's own CPU profile over the open (server, simulated rig and bench share this process)
  const inspector = TRACE ? new Session() : null;
  if (inspector) {
    inspector.connect();
    await inspector.post('Profiler.enable');
    await inspector.post('Profiler.start');
  }
  const tOpen = performance.now();
  // a full page load (the query differs), not a hash change within the open page
  await page.goto(`${url}/?view=drivers#/drivers`);
  await page.waitForFunction(() => document.querySelector('[data-testid="driver-card"]')?.querySelectorAll('canvas[data-testid="heatmap"]').length === 2, null, { timeout: 60_000 });
  const driversFirstPaintMs = performance.now() - tOpen;
  if (inspector) {
    const { profile } = await inspector.post('Profiler.stop');
    fs.writeFileSync(`${TRACE}.server.cpuprofile`, JSON.stringify(profile));
    inspector.disconnect();
  }
  const socketsAtOpen = sockets;

  const samples: { t: number; pageMB: number; trials: number; longestMs: number }[] = [];
  const t0 = performance.now();
  let step = 0;
  let minCurrent = Infinity;
  while (performance.now() - t0 < SECONDS * 1000) {
    refresh();
    minCurrent = Math.min(minCurrent, await currentPairs());
    // scroll through the page in steps, and on to the next page (back to the first after the last)
    for (let i = 0; i < 5; i++) {
      await page.mouse.wheel(0, 600);
      await new Promise((res) => setTimeout(res, 1000));
    }
    const next = page.locator('[data-testid="next-page"]');
    if ((step = (step + 1) % Math.ceil((CHANNELS * PER_CHANNEL) / 24)) === 0) {
      await page.evaluate(() => (location.hash = '#/'));
      await page.evaluate(() => (location.hash = '#/drivers'));
    } else if ((await next.count()) && (await next.isEnabled())) await next.click();
    else console.error(`  no next page at step ${step}: ${await page.textContent('[data-testid="pairs-summary"]').catch(() => '?')}`);
    await page.evaluate(() => window.scrollTo(0, 0));
    if (tracing && performance.now() - t0 > TRACE_SECONDS * 1000) {
      await browser.stopTracing();
      tracing = false;
      console.log(`  trace of the drivers view's first ${TRACE_SECONDS} s written to ${TRACE}`);
    }
    await cdp.send('HeapProfiler.collectGarbage');
    const m = (await cdp.send('Performance.getMetrics')).metrics;
    samples.push({
      t: (performance.now() - t0) / 1000,
      pageMB: m.find((x) => x.name === 'JSHeapUsedSize')!.value / 1e6,
      trials: app.store.get(rt.id)?.latest?.trialsCompleted ?? 0,
      longestMs: await page.evaluate(() => (window as unknown as { __longest: number }).__longest),
    });
  }
  if (tracing) await browser.stopTracing();
  const pairs = await currentPairs();
  const longestTaskMs = await page.evaluate(() => (window as unknown as { __longest: number }).__longest);
  const longTasks = await page.evaluate(() => (window as unknown as { __tasks: number }).__tasks);
  await rig.stop();
  await browser.close();
  await app.close();

  const cut = Math.max(1, Math.floor(samples.length / 5));
  const early = samples[cut - 1];
  const last = samples[samples.length - 1];
  const shown = bytes.maps.size;
  const bytesPerPairOnWire = (bytes.pairsJson + bytes.mapsPng) / shown;
  const oldBytesPerPair = oldJsonBytes / made;
  const reconnects = sockets - socketsAtOpen;
  console.log(`  ${pairs} current pairs at the end (at least ${minCurrent} throughout; ${pairsAtOpen} when the view opened, ${made} made in all, the rest retired as preferences changed) on ${CHANNELS} channels, ${IMAGES} images; ${last.trials} trials streamed at a rig's pace; drivers view open ${SECONDS} s, scrolled through ${shown} pairs' maps`);
  console.log(`  driversFirstPaintMs ${driversFirstPaintMs.toFixed(0)} (page load to the first card's two maps drawn; target < 1000)`);
  console.log(`  longestTaskMs ${longestTaskMs.toFixed(0)} on the drivers view (${longTasks} tasks over 50 ms; target < 200); baseline: the grid view before it opened, ${gridLongest.toFixed(0)} ms (${(longestTaskMs / Math.max(1, gridLongest)).toFixed(2)}x)`);
  console.log(`  reconnects ${reconnects} (target 0)`);
  console.log(`  driver-pairs requests answered from the browser's cache ${bytes.fromCache}, revalidated unchanged (304) ${bytes.notModified}`);
  console.log(`  bytesPerPairOnWire ${(bytesPerPairOnWire / 1000).toFixed(1)} kB (pages of pairs ${(bytes.pairsJson / 1000).toFixed(0)} kB + maps ${(bytes.mapsPng / shown / 1000).toFixed(1)} kB PNG per pair; target < 60); baseline: the old JSON with base64 maps, ${(oldBytesPerPair / 1000).toFixed(1)} kB per pair (${(bytesPerPairOnWire / oldBytesPerPair).toFixed(3)}x), ${((oldBytesPerPair * pairs) / 1e6).toFixed(1)} MB for the ${pairs} current pairs in one response`);
  console.log(`  pageHeapMb ${last.pageMB.toFixed(1)} after ${last.t.toFixed(0)} s; baseline after ${early.t.toFixed(0)} s: ${early.pageMB.toFixed(1)} MB (growth ${(last.pageMB - early.pageMB).toFixed(1)} MB, ${(last.pageMB / early.pageMB).toFixed(2)}x)`);
  return {
    seconds: SECONDS,
    channels: CHANNELS,
    images: IMAGES,
    pairs,
    pairsMinDuringRun: minCurrent,
    pairsMade: made,
    pairsMapsFetched: shown,
    trials: last.trials,
    driversFirstPaintMs,
    longestTaskMs,
    longTasks,
    gridLongestTaskMs: gridLongest,
    reconnects,
    bytesPerPairOnWire,
    pairsJsonBytes: bytes.pairsJson,
    mapsPngBytesPerPair: bytes.mapsPng / shown,
    websocketBytes: bytes.ws,
    requestsFromCache: bytes.fromCache,
    requestsNotModified: bytes.notModified,
    oldJsonBytesPerPair: oldBytesPerPair,
    pageHeapMb: last.pageMB,
    pageHeapBaselineMb: early.pageMB,
    pageHeapGrowthMb: last.pageMB - early.pageMB,
    baselines: 'longest task: the grid view before the drivers view opened; bytes: the old /explanations JSON with base64 maps for the same pairs; heap: the same run after its first 20%',
    maps: 'synthetic (smoothed noise and blobs, 224 px), injected into the server registry and announced as explain:ready',
    samples,
  };
}
