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
  out.maxRelDiffPredictions = Math.max(out.maxRelDiffPredictions384 as number, out.maxRelDiffPredictions4096 as number);
  out.targets = { speedupVsSklearn384: 20, maxRelDiffPredictions: 1e-4 };
  return out;
}
