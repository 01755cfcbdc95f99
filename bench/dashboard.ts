/**
 * Dashboard benchmark, two runs. First the real-size run (dashboard-real-size.ts: 384 channels, 1,000 images,
 * >= 1,000 driver pairs, the drivers view open and scrolled; its keys are the result's top level). Then the
 * memory and load run under accelerated streaming (BENCH_DASHBOARD_STRESS_SECONDS, 0 skips it; under `stress`): the dashboard open in Debian's chromium on a session of 384
 * channels (BENCH_DASHBOARD_CHANNELS) streaming without pause, with the server's update throttles shortened (50 ms deltas, 250 ms snapshots: 4-5x the default
 * rates, so a few minutes hold the updates of a much longer session) while the simulated rig runs in fast
 * mode (far more trials per second than a rig). Samples the page's JS heap and the server's heap; the
 * baseline is the same measurement after the first 20% of the run.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { chromium } from 'playwright-core';
import { pino } from 'pino';
import { createApp } from '../server/src/app.ts';
import { loadConfig } from '../server/src/config.ts';
import { runSimRig } from '../server/src/sim/sim-rig.ts';
import { demoStimuli, root, tmpDir } from './support.ts';
import { run as realSize } from './dashboard-real-size.ts';

const SECONDS = Number(process.env.BENCH_DASHBOARD_STRESS_SECONDS ?? 180);
const CHANNELS = Number(process.env.BENCH_DASHBOARD_CHANNELS ?? 384);
const TOKEN = 'bench-rig-token';
const SIGN_IN = 'bench-sign-in-token';

export async function run(): Promise<Record<string, unknown>> {
  const real = await realSize();
  return { ...real, ...(SECONDS > 0 ? { stress: await stress() } : {}) };
}

async function stress(): Promise<Record<string, unknown>> {
  console.log(`  stress run: ${CHANNELS} channels streaming without pause, shortened update throttles, ${SECONDS} s`);
  const base = loadConfig(root, { RIG_TOKENS: TOKEN, AUTH_TOKEN: SIGN_IN, DEMO: '0' });
  const config = { ...base, dataDir: tmpDir(), compute: { ...base.compute, features: false }, dashboard: { deltaThrottleMs: 50, snapshotThrottleMs: 250 } };
  const app = createApp({ config, logger: pino({ level: 'silent' }), clientDir: path.join(root, 'client', 'dist') });
  const port = await app.listen(0, '127.0.0.1');
  const url = `http://127.0.0.1:${port}`;
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');
  await page.goto(`${url}/?token=${SIGN_IN}`);
  const stop = new AbortController();
  const sim = runSimRig({ url, token: TOKEN, stimuli: demoStimuli, stimulusSetId: 'demo', channels: CHANNELS, trials: Infinity, onMs: 200, offMs: 200, abortRate: 0.03, seed: 3, reconnectAfterTrials: 0, fast: true, signal: stop.signal });
  const samples: { t: number; pageMB: number; serverMB: number; trials: number; busy: number }[] = [];
  let lastTask = 0;
  let lastT = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < SECONDS * 1000) {
    await new Promise((r) => setTimeout(r, 5000));
    await cdp.send('HeapProfiler.collectGarbage');
    global.gc?.();
    const m = (await cdp.send('Performance.getMetrics')).metrics;
    const heap = m.find((x) => x.name === 'JSHeapUsedSize')!.value / 1e6;
    // main-thread time of the page (scripts, style, layout, paint) per second of wall time
    const task = m.find((x) => x.name === 'TaskDuration')!.value;
    const t = (performance.now() - t0) / 1000;
    const busy = lastT ? (task - lastTask) / (t - lastT) : 0;
    lastTask = task;
    lastT = t;
    const rt = app.store.all()[0];
    samples.push({ t, pageMB: heap, serverMB: process.memoryUsage().heapUsed / 1e6, trials: rt?.latest?.trialsCompleted ?? 0, busy });
  }
  stop.abort();
  const result = await sim;
  result.client.close();
  const tiles = await page.locator('[data-testid="channel-tile"]').count();
  await browser.close();
  await app.close();
  const cut = Math.max(1, Math.floor(samples.length / 5));
  const early = samples[cut - 1];
  const last = samples[samples.length - 1];
  const slope = (k: 'pageMB' | 'serverMB') => {
    const xs = samples.slice(cut).map((s) => s.t);
    const ys = samples.slice(cut).map((s) => s[k]);
    const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
    const my = ys.reduce((a, b) => a + b, 0) / ys.length;
    return (xs.reduce((a, x, i) => a + (x - mx) * (ys[i] - my), 0) / xs.reduce((a, x) => a + (x - mx) ** 2, 0)) * 3600;
  };
  const busy = samples.slice(1).map((s) => s.busy);
  const meanBusy = busy.reduce((a, b) => a + b, 0) / busy.length;
  console.log(`  ${SECONDS} s of streaming, ${last.trials} trials (${(last.trials / 2.5 / 3600).toFixed(1)} h of a 2.5 trials/s rig), ${CHANNELS} channels, ${tiles} tiles shown`);
  console.log(`  page main thread busy ${(100 * meanBusy).toFixed(0)}% of the time (max ${(100 * Math.max(...busy)).toFixed(0)}%) at 20 deltas/s and 4 snapshots/s`);
  console.log(`  page JS heap: ${early.pageMB.toFixed(1)} MB after ${early.t.toFixed(0)} s (baseline) -> ${last.pageMB.toFixed(1)} MB at the end (${(last.pageMB / early.pageMB).toFixed(2)}x), trend ${slope('pageMB').toFixed(1)} MB/h`);
  console.log(`  server heap:  ${early.serverMB.toFixed(1)} MB -> ${last.serverMB.toFixed(1)} MB (${(last.serverMB / early.serverMB).toFixed(2)}x), trend ${slope('serverMB').toFixed(1)} MB/h`);
  return {
    seconds: SECONDS,
    channels: CHANNELS,
    pageBusyFraction: meanBusy,
    trials: last.trials,
    pageHeapBaselineMB: early.pageMB,
    pageHeapEndMB: last.pageMB,
    pageHeapRatio: last.pageMB / early.pageMB,
    pageHeapTrendMBPerHour: slope('pageMB'),
    serverHeapBaselineMB: early.serverMB,
    serverHeapEndMB: last.serverMB,
    serverHeapRatio: last.serverMB / early.serverMB,
    baseline: 'the same run after its first 20%',
    samples,
  };
}
