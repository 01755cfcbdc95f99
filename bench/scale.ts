/**
 * Scale benchmark: a simulated lab session at rig speed through real sockets. A stimulus set of 1,000
 * images in 4 categories made from the demo emoji (bench/scale-images.ts; written to a temporary folder),
 * 384 feature-driven channels (bench/scale-rig.ts, a child process) at 10 trials/s in real time, maps on,
 * models refreshed per trial, 300 s (3 passes over the set; BENCH_SCALE_SECONDS overrides); then 1,536
 * channels on 500 images, 300 s (6 passes; keys suffixed 1536). Measured: rig emit to acknowledgement, the longest
 * event-loop stall of the server, GET /models and /api/health while the session runs, the features of the
 * set against a plain batched TF.js wasm script (bench/reference/plain-features.ts) on the same images in
 * the same run, and absorbing a new stimulus into the models against the exact refit, same data.
 * BENCH_SCALE_QUICK=1: 200 images, 384 channels, 60 s, no 1,536-channel run.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { lastValueFrom } from 'rxjs';
import { pino } from 'pino';
import type { Stimulus } from '@sharedlens/shared';
import { createApp } from '../server/src/app.ts';
import { loadConfig } from '../server/src/config.ts';
import { ensureDefaultModel, NSFWJS_MOBILENET_LAYER } from '../server/src/compute/feature-model.ts';
import { computeClientFor } from '../server/src/workers/compute-client.ts';
import { measureAbsorb } from './scale-absorb.ts';
import { makeScaleSet } from './scale-images.ts';
import { recordStalls, stallLine } from './scale-stalls.ts';
import { root, tmpDir } from './support.ts';

const QUICK = process.env.BENCH_SCALE_QUICK === '1';
/** Seconds of each live session; default 300 (3 passes over 1,000 images at 10 trials/s, 6 over 500). */
const SECONDS = process.env.BENCH_SCALE_SECONDS ? Number(process.env.BENCH_SCALE_SECONDS) : null;
const TOKEN = 'bench-rig-token';
const AUTH_TOKEN = 'bench-operator-token';
/** Images that warm the compute workers before the timed extraction (16: split over both). */
const WARM = 16;
const RUNS = QUICK ? [{ channels: 384, images: 200, suffix: '' }] : [{ channels: 384, images: 1000, suffix: '' }, { channels: 1536, images: 500, suffix: '1536' }];
/** BENCH_SCALE_RUNS=384 (or 1536): only the runs with those channel counts. */
const ONLY = process.env.BENCH_SCALE_RUNS?.split(',').map(Number);
const secondsFor = (_images: number) => SECONDS ?? (QUICK ? 60 : 300);
/** BENCH_SCALE_LIVE_FEATURES=1: the live session's server computes the set's features itself (empty cache). */
const LIVE_FEATURES = process.env.BENCH_SCALE_LIVE_FEATURES === '1';
/**
 * Development: BENCH_SCALE_STALLS=MS records every event-loop stall over MS ms with what ran meanwhile
 * (bench/scale-stalls.ts; printed, and written to BENCH_SCALE_STALLS_FILE.CHANNELS.json when that is set);
 * BENCH_SCALE_SESSION_ONLY=1 leaves out the plain script and the absorb (the live session alone).
 */
const STALLS = Number(process.env.BENCH_SCALE_STALLS ?? 0);
const SESSION_ONLY = process.env.BENCH_SCALE_SESSION_ONLY === '1';
/** Development: BENCH_SCALE_LIVE_THREADS=N sets compute.liveAnalysisThreads (analysis turns while the rig records). */
const LIVE_THREADS = process.env.BENCH_SCALE_LIVE_THREADS ? Number(process.env.BENCH_SCALE_LIVE_THREADS) : null;

/** The cold-start comparison, or that it was not measured (BENCH_SCALE_COLD unset). */
export const coldLine = (coldS: number, plainColdS: number): string =>
  Number.isFinite(coldS) ? `from a cold start ${coldS.toFixed(1)} s vs ${plainColdS.toFixed(1)} s -> ${(plainColdS / coldS).toFixed(2)}x` : 'cold start not measured (BENCH_SCALE_COLD=1 measures it)';

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};

/**
 * Features of the set through the server's compute workers (empty cache) and through the plain script,
 * both warm (workers started and the model loaded by WARM images first; the script's extraction alone)
 * and cold (from nothing: workers or process started, model loaded).
 */
async function features(config: ReturnType<typeof loadConfig>, files: string[], dir: string) {
  const spec = ensureDefaultModel(config.dataDir);
  // the cold extraction again only when asked (BENCH_SCALE_COLD=1: a few minutes at 1,000 images)
  let coldS = NaN;
  if (process.env.BENCH_SCALE_COLD === '1') {
    const cold = computeClientFor({ ...config.compute, cacheDir: path.join(dir, 'features-cold') }, config.dataDir);
    const tc = performance.now();
    await lastValueFrom(cold.features$(files));
    coldS = (performance.now() - tc) / 1000;
    await cold.close();
  }
  const client = computeClientFor(config.compute, config.dataDir);
  // WARM images warm both workers (tf init, model load; the files split over the workers); the rest is timed
  await lastValueFrom(client.features$(files.slice(0, WARM)));
  const t0 = performance.now();
  const f = await lastValueFrom(client.features$(files));
  const oursS = (performance.now() - t0) / 1000;
  await client.close();
  if (f.type !== 'features') throw new Error('no features');
  const list = path.join(dir, 'files.json');
  fs.writeFileSync(list, JSON.stringify(files.slice(WARM)));
  if (SESSION_ONLY) return { f, oursS, plainS: NaN, coldS, plainColdS: NaN };
  const py = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'bench/reference/plain-features.ts'), spec.dir, NSFWJS_MOBILENET_LAYER, String(spec.inputSize), list], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (py.status !== 0) throw new Error(`plain features script failed: ${py.stderr}`);
  const plain = JSON.parse(py.stdout.trim().split('\n').pop()!) as { seconds: number; totalSeconds: number; dim: number };
  return { f, oursS, plainS: plain.seconds, coldS, plainColdS: plain.totalSeconds };
}

async function once(channels: number, images: number, suffix: string): Promise<Record<string, unknown>> {
  const dir = tmpDir();
  const stimulusDir = path.join(dir, 'stimuli');
  const setId = `scale${images}`;
  const t0 = performance.now();
  const stimuli: Stimulus[] = await makeScaleSet(stimulusDir, setId, images);
  console.log(`  ${images} images in 4 categories written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const base = loadConfig(root, { RIG_TOKENS: TOKEN, DEMO: '0', LOG_LEVEL: 'warn' });
  const config = { ...base, dataDir: path.join(dir, 'data'), stimulusDir, compute: { ...base.compute, cacheDir: path.join(dir, 'features') } };
  config.limits = { ...config.limits, maxPayloadBytes: 16 * 1024 * 1024 };
  config.auth = { ...config.auth, token: AUTH_TOKEN };
  if (LIVE_THREADS) config.compute = { ...config.compute, liveAnalysisThreads: LIVE_THREADS };
  const files = stimuli.map((s) => path.join(stimulusDir, setId, s.file));
  const { f, oursS, plainS, coldS, plainColdS } = await features(config, files, dir);
  // ours: all images, WARM of them cached by the warm-up; the script: the other images
  const oursRate = (images - WARM) / oursS;
  const plainRate = (images - WARM) / plainS;
  console.log(`  features (warm): ${oursRate.toFixed(1)} images/s (${oursS.toFixed(1)} s) vs plain batched TF.js wasm script ${plainRate.toFixed(1)} images/s (${plainS.toFixed(1)} s) -> ${(oursRate / plainRate).toFixed(2)}x; ${coldLine(coldS, plainColdS)}`);
  const featuresFile = path.join(dir, 'features.f32');
  fs.writeFileSync(featuresFile, Buffer.from(f.features.buffer, f.features.byteOffset, f.features.byteLength));

  // the live session: the server here, the rig and the HTTP pollers in a child process
  let warnings = 0;
  const logger = pino({ level: 'warn' }, { write: () => void warnings++ });
  // BENCH_SCALE_LIVE_FEATURES=1: the live server starts with an empty feature cache, so the session's models
  // wait for (or, since issue 13's partial features, start on part of) the features it computes meanwhile
  const app = createApp({ config: LIVE_FEATURES ? { ...config, compute: { ...config.compute, cacheDir: path.join(dir, 'features-live') } } : config, logger });
  const port = await app.listen(0, '127.0.0.1');
  let lastTick = performance.now();
  let stallMs = 0;
  // BENCH_SCALE_STALLS=MS: the same ticker, recording every stall over MS ms with what ran meanwhile
  const stalls = STALLS ? recordStalls(STALLS) : null;
  const ticker = setInterval(() => {
    const t = performance.now();
    stallMs = Math.max(stallMs, t - lastTick - 10);
    lastTick = t;
  }, 10);
  const outFile = path.join(dir, 'rig.json');
  const argsFile = path.join(dir, 'rig-args.json');
  fs.writeFileSync(argsFile, JSON.stringify({ url: `http://127.0.0.1:${port}`, token: TOKEN, authToken: AUTH_TOKEN, setId, channels, seconds: secondsFor(images), stimuli, featuresFile, dim: f.dim, outFile }));
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'bench/scale-rig.ts'), argsFile], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (child.pid) stalls?.setRigPid(child.pid);
  const code = await new Promise((r) => child.once('exit', r));
  clearInterval(ticker);
  if (stalls) {
    const records = stalls.stop();
    console.log(`  stalls over ${STALLS} ms: ${records.length} (longest first)`);
    for (const r of records.slice(0, 25)) console.log(`    ${stallLine(r)}`);
    if (process.env.BENCH_SCALE_STALLS_FILE) fs.writeFileSync(`${process.env.BENCH_SCALE_STALLS_FILE}.${channels}.json`, JSON.stringify(records, null, 1));
  }
  // pairs whose maps were made during the session (what the threads given to maps bought), and held at its end
  const mapsComputed = app.mapsComputed();
  const mapPairs = [...app.driverPairs.values()].reduce((a, m) => a + m.size, 0);
  await app.close();
  if (code !== 0) throw new Error(`scale rig exited with ${code}`);
  const rig = JSON.parse(fs.readFileSync(outFile, 'utf8')) as { trials: number; elapsedS: number; ackMs: number[]; errors: number; errorCodes: Record<string, number>; polls: Record<'models' | 'health', { ms: number[]; status: Record<string, number> }>; modelsFirstS: number | null; modelsScoredFirstS: number | null; driversTotal: number | null; channelsWithScores: number | null };
  const absorb = SESSION_ONLY ? { newStimulusAbsorbMs: NaN, fullRefitMs: NaN } : measureAbsorb(f.features, f.dim, stimuli, channels);
  fs.rmSync(dir, { recursive: true, force: true });
  const out: Record<string, unknown> = {
    channels, images, seconds: rig.elapsedS, trials: rig.trials, trialsPerSec: rig.trials / rig.elapsedS, rigErrors: rig.errors, rigErrorCodes: rig.errorCodes, serverWarnings: warnings,
    ackP50Ms: pct(rig.ackMs, 50), ackP99Ms: pct(rig.ackMs, 99), ackMaxMs: Math.max(...rig.ackMs),
    eventLoopMaxStallMs: stallMs,
    modelsGetP50Ms: pct(rig.polls.models.ms, 50), modelsGetP99Ms: pct(rig.polls.models.ms, 99), modelsGetStatus: rig.polls.models.status, modelsFirstS: rig.modelsFirstS, modelsScoredFirstS: rig.modelsScoredFirstS, featuresLive: LIVE_FEATURES,
    healthGetP50Ms: pct(rig.polls.health.ms, 50), healthGetP99Ms: pct(rig.polls.health.ms, 99),
    featuresSeconds: oursS, featuresImagesPerSec: oursRate, plainScriptSeconds: plainS, plainScriptImagesPerSec: plainRate, featuresVsPlainScript: oursRate / plainRate, featuresColdSeconds: coldS, plainScriptColdSeconds: plainColdS, featuresColdVsPlainScript: plainColdS / coldS, featuresBackend: f.backend,
    ...absorb,
    driversTotal: rig.driversTotal, channelsWithScores: rig.channelsWithScores, mapsComputed, mapPairs, liveAnalysisThreads: config.compute.liveAnalysisThreads,
  };
  console.log(`  ${channels} channels, ${images} images, ${rig.trials} trials in ${rig.elapsedS.toFixed(0)} s (${(rig.trials / rig.elapsedS).toFixed(1)}/s): ack p50 ${(out.ackP50Ms as number).toFixed(1)} ms, p99 ${(out.ackP99Ms as number).toFixed(1)} ms, max ${(out.ackMaxMs as number).toFixed(1)} ms; longest event-loop stall ${stallMs.toFixed(0)} ms; GET /models p99 ${(out.modelsGetP99Ms as number).toFixed(1)} ms ${JSON.stringify(rig.polls.models.status)}, first models after ${rig.modelsFirstS?.toFixed(1)} s (with scores ${rig.modelsScoredFirstS?.toFixed(1)} s${LIVE_FEATURES ? ', features computed during the session' : ''}); /api/health p99 ${(out.healthGetP99Ms as number).toFixed(1)} ms; drivers ${rig.driversTotal}, maps made for ${mapsComputed} pairs, ${mapPairs} held at the end (analysis on ${config.compute.liveAnalysisThreads} thread(s) while recording); new stimulus absorbed in ${(absorb.newStimulusAbsorbMs as number).toFixed(1)} ms vs exact refit ${(absorb.fullRefitMs as number).toFixed(0)} ms`);
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [`${k}${suffix}`, v]));
}

export async function run(): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = { quick: QUICK, secondsPerRun: RUNS.map((r) => secondsFor(r.images)), baseline: 'features: a plain batched (8) TF.js wasm script on the same images, same run; absorb: the exact refit of the same data', stimuli: 'made from the demo emoji (Noto Emoji): recoloured, cropped, composited; body/face/object/scene' };
  for (const r of RUNS.filter((x) => !ONLY || ONLY.includes(x.channels))) Object.assign(out, await once(r.channels, r.images, r.suffix));
  out.targets = { ackP99Ms: 50, ackMaxMs: 250, eventLoopMaxStallMs: 100, modelsGetP99Ms: 250, healthGetP99Ms: 50, featuresVsPlainScript: 1, newStimulusAbsorbMs: 50 };
  return out;
}
