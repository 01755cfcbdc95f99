/**
 * Ridge benchmark: refreshing every neuron's model after one new trial (compute/ridge.ts) against
 * scikit-learn RidgeCV(alpha_per_target=True) refitting from scratch on the same data, 1000 stimuli x 1792
 * features, 10 alphas, at 384 and 4096 neurons; predictions compared on held-out stimuli.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { buildBasis, createRidgeState, neuronModel, predict, updateRow } from '../server/src/compute/ridge.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { Subject, of } from 'rxjs';
import type { SessionStart } from '@sharedlens/shared';
import { addTrial, createNeuronStats } from '../server/src/compute/neuron-stats.ts';
import { encodingModels, type EncodingModelsOptions } from '../server/src/pipeline/encoding-models.ts';
import type { StatsUpdate } from '../server/src/pipeline/neuron-statistics.ts';
import { RidgeWorker } from '../server/src/workers/ridge-client.ts';
import { root, tmpDir } from './support.ts';

const S = Number(process.env.BENCH_RIDGE_STIMULI ?? 1000);
const D = 1792;
const T = 20;
const REFRESHES = 30;
const alphas = Array.from({ length: 10 }, (_, i) => 10 ** (i - 3));

const gaussian = (r: () => number) => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());

export async function run(): Promise<Record<string, unknown>> {
  const r = mulberry32(1);
  // ReLU-like non-negative features, as a CNN's pooled activations are
  const features = Float64Array.from({ length: (S + T) * D }, () => Math.max(0, gaussian(r)));
  const t0 = performance.now();
  const basis = buildBasis(features, D, Array.from({ length: S }, (_, i) => i), alphas);
  const basisS = (performance.now() - t0) / 1000;
  console.log(`  basis (eigendecomposition + per-alpha LOO operators), ${S} stimuli: ${basisS.toFixed(1)} s, once per change of the stimulus set`);
  const out: Record<string, unknown> = { stimuli: S, features: D, alphas: alphas.length, basisSeconds: basisS, baseline: 'scikit-learn RidgeCV(alpha_per_target=True) refit from scratch, same data, same run' };
  for (const N of [384, 4096]) {
    const w = Array.from({ length: N }, () => Float64Array.from({ length: D }, () => gaussian(r) * (r() < 0.05 ? 1 : 0)));
    const noise = Array.from({ length: N }, () => 0.5 + 5 * r());
    const yOf = (i: number, t: number) => {
      let s = 0;
      for (let d = 0; d < D; d++) s += features[i * D + d] * w[t][d];
      return s + noise[t] * gaussian(r);
    };
    const y = new Float64Array(N * S);
    for (let t = 0; t < N; t++) for (let i = 0; i < S; i++) y[t * S + i] = yOf(i, t);
    const t1 = performance.now();
    const state = createRidgeState(basis, N, y);
    const initS = (performance.now() - t1) / 1000;
    const times: number[] = [];
    for (let k = 0; k < REFRESHES; k++) {
      const row = Math.floor(r() * S);
      const next = Array.from({ length: N }, (_, t) => 0.5 * state.y[t * S + row] + 0.5 * yOf(row, t));
      const t2 = performance.now();
      updateRow(state, row, next);
      times.push(performance.now() - t2);
    }
    times.sort((a, b) => a - b);
    const refreshMs = times[Math.floor(times.length / 2)];
    // the same final data to scikit-learn
    const dir = tmpDir();
    const Y = new Float64Array(S * N);
    for (let i = 0; i < S; i++) for (let t = 0; t < N; t++) Y[i * N + t] = state.y[t * S + i];
    fs.writeFileSync(path.join(dir, 'X.f64'), features.subarray(0, S * D));
    fs.writeFileSync(path.join(dir, 'Y.f64'), Y);
    fs.writeFileSync(path.join(dir, 'Xtest.f64'), features.subarray(S * D));
    fs.writeFileSync(path.join(dir, 'alphas.f64'), Float64Array.from(alphas));
    const py = spawnSync('/usr/bin/python3', [path.join(root, 'bench/reference/ridge_fit.py'), dir, String(S), String(D), String(N)], { encoding: 'utf8', maxBuffer: 1 << 28 });
    fs.rmSync(dir, { recursive: true, force: true });
    if (py.status !== 0) throw new Error(`scikit-learn baseline failed: ${py.stderr}`);
    const ref = JSON.parse(py.stdout) as { seconds: number; pred: number[][]; alpha: number[]; blas: string[] };
    // predictions of a sample of neurons on held-out stimuli
    let maxRel = 0;
    let alphaAgree = 0;
    const sample = Array.from({ length: Math.min(N, 64) }, (_, k) => Math.floor((k * N) / Math.min(N, 64)));
    for (const t of sample) {
      const m = neuronModel(state, t);
      if (m.alpha === ref.alpha[t]) alphaAgree++;
      for (let i = 0; i < T; i++) {
        const p = predict(m, features.subarray((S + i) * D, (S + i + 1) * D));
        maxRel = Math.max(maxRel, Math.abs(p - ref.pred[i][t]) / Math.max(1e-9, Math.abs(ref.pred[i][t])));
      }
    }
    const speedup = (ref.seconds * 1000) / refreshMs;
    console.log(`  ${String(N).padStart(4)} neurons: refresh ${refreshMs.toFixed(1)} ms (median of ${REFRESHES})  vs RidgeCV refit ${(ref.seconds * 1000).toFixed(0)} ms [${ref.blas.join(', ')}]  -> ${speedup.toFixed(1)}x; initial state ${initS.toFixed(1)} s; max rel. diff of predictions ${maxRel.toExponential(2)}; alphas agree ${alphaAgree}/${sample.length}`);
    out[`refreshMs${N}`] = refreshMs;
    out[`sklearnSeconds${N}`] = ref.seconds;
    out[`speedupVsSklearn${N}`] = speedup;
    out[`maxRelDiffPredictions${N}`] = maxRel;
    out[`alphaAgreement${N}`] = alphaAgree / sample.length;
  }
  Object.assign(out, await refitStall(features));
  out.maxRelDiffPredictions = Math.max(out.maxRelDiffPredictions384 as number, out.maxRelDiffPredictions4096 as number);
  out.targets = { speedupVsSklearn384: 20, maxRelDiffPredictions: 1e-4 };
  return out;
}

/**
 * The exact refit of a whole stimulus set (what a restarted server or late features do at 384 neurons and
 * S stimuli) while a rig keeps sending 4 trials per second: the longest event-loop stall and the trials
 * handled during the fit, inline (baseline) against the refit worker thread, same data, same run.
 */
async function refitStall(features: Float64Array): Promise<Record<string, number>> {
  const N = 384;
  const r = mulberry32(5);
  const start: SessionStart = {
    rigId: 'bench', subject: 'bench', stimulusSetId: 'bench', countsMode: 'trial',
    channels: Array.from({ length: N }, (_, i) => ({ id: `c${i}`, label: `c${i}` })),
    timing: { responseWindowMs: 200, latencyMs: 50, baselineWindowMs: 0, binWidthMs: 1 },
  };
  const stimuli = Array.from({ length: S }, (_, i) => ({ id: `s${i}`, file: 'x.png', category: i % 2 ? 'a' : 'b' }));
  const featureSet = { features: Float32Array.from(features.subarray(0, S * D)), dim: D, modelId: 'bench', backend: 'none' };
  const config = { alphas, refitEveryTrials: 10, minStimuli: 6 };
  const once = async (offload: EncodingModelsOptions['offload'] | undefined) => {
    const stats = createNeuronStats(start, stimuli, null);
    let k = 0;
    const trial = (s: number) => {
      const responses = Float64Array.from({ length: N }, () => Math.floor(10 * r()));
      addTrial(stats, { kind: 'completed', trial: k, stimulusId: `s${s}`, onsetMs: k * 250, seq: k, responses });
      k++;
    };
    for (let s = 0; s < S; s++) trial(s);
    const updates = new Subject<StatsUpdate>();
    let refits = 0;
    let during = 0;
    updates.pipe(encodingModels({ features$: of(featureSet), config, ...(offload ? { offload } : {}) })).subscribe((m) => {
      if (!refits && m.stats.cause === 'trial') during++;
      refits = m.encoding?.refits ?? 0;
    });
    // the longest gap between ticks of a 10 ms timer: how long the event loop could not serve anything
    let lastTick = performance.now();
    let stallMs = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      stallMs = Math.max(stallMs, now - lastTick - 10);
      lastTick = now;
    }, 10);
    const t0 = performance.now();
    updates.next({ state: stats, cause: 'start' }); // features ready, every stimulus seen: the fit of the whole set
    while (!refits) {
      await new Promise((res) => setTimeout(res, 250));
      const s = Math.floor(r() * S);
      trial(s);
      updates.next({ state: stats, cause: 'trial', stimulusId: `s${s}`, trial: k - 1 });
    }
    const fitS = (performance.now() - t0) / 1000;
    await new Promise((res) => setTimeout(res, 100)); // let the ticker run after an inline fit
    clearInterval(ticker);
    updates.complete();
    return { stallMs, during, fitS };
  };
  const inline = await once(undefined);
  const worker = new RidgeWorker();
  const off = await once({ fit$: (job, latest) => worker.fit$(job, latest), fromStimuli: 150 });
  await worker.close();
  const ratio = inline.stallMs / off.stallMs;
  console.log(`  refit of ${S} stimuli at ${N} neurons with a rig sending 4 trials/s: longest event-loop stall inline ${(inline.stallMs / 1000).toFixed(1)} s (${inline.during} trials handled during the fit) vs refit worker ${off.stallMs.toFixed(0)} ms (${off.during} trials during the ${off.fitS.toFixed(1)} s fit, caught up on install) -> ${ratio.toFixed(0)}x shorter`);
  return { refitStallMsInline: inline.stallMs, refitStallMsWorker: off.stallMs, refitStallRatio: ratio, refitWorkerSeconds: off.fitS, trialsDuringWorkerRefit: off.during };
}
