/**
 * Maps benchmark: latency of one shared-feature pair (two forward passes and two vector-Jacobian products
 * through MobileNetV2 1.4 at 224) on the compute backend, against PyTorch CPU autograd on the same
 * architecture and input size in the same run; and the naive per-dimension Jacobian against the single
 * vector-Jacobian product.
 */
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { initBackend, inputGradientOnly, tf } from '../server/src/compute/backend.ts';
import { ensureDefaultModel, featuresOf, loadModel } from '../server/src/compute/feature-model.ts';
import { loadImage } from '../server/src/compute/image-input.ts';
import { sharedFeatureMaps } from '../server/src/compute/shared-feature-maps.ts';
import { lastValueFrom } from 'rxjs';
import { ComputeClient } from '../server/src/workers/compute-client.ts';
import { gradientMapOptions } from '../server/src/compute/shared-feature-maps.ts';
import { demoStimuli, root, tmpDir } from './support.ts';

const REPEATS = Number(process.env.BENCH_MAPS_REPEATS ?? 9);

export async function run(): Promise<Record<string, unknown>> {
  const backend = await initBackend((process.env.COMPUTE_BACKEND as 'auto') ?? 'auto');
  const spec = ensureDefaultModel(tmpDir());
  const model = await loadModel(spec);
  const phi = (x: tf.Tensor4D) => featuresOf(model, spec, x);
  const image = async (i: number) => tf.tensor4d(await loadImage(path.join(root, 'stimuli/demo', demoStimuli[i].file), 224), [1, 224, 224, 3]);
  const w = Float32Array.from({ length: 1792 }, (_, d) => ((d * 7919) % 13) / 13);
  const times: number[] = [];
  for (let k = 0; k <= REPEATS; k++) {
    const [a, b] = await Promise.all([image(k), image(k + 30)]);
    const t0 = performance.now();
    sharedFeatureMaps(phi, a, b, w);
    if (k > 0) times.push((performance.now() - t0) / 1000); // the first pair warms up the kernels
    tf.dispose([a, b]);
  }
  times.sort((x, y) => x - y);
  const pairSeconds = times[Math.floor(times.length / 2)];
  // the naive way: one backward pass per latent dimension (a few timed, scaled to all 1792)
  const x = await image(0);
  const t1 = performance.now();
  const NAIVE = 3;
  for (let d = 0; d < NAIVE; d++) inputGradientOnly(() => tf.grad((inp: tf.Tensor) => tf.slice(phi(inp as tf.Tensor4D), [0, d], [1, 1]).sum())(x)).dispose();
  const naivePerMapSeconds = ((performance.now() - t1) / 1000 / NAIVE) * 1792;
  // the production path: the two sides of a pair on two worker threads (one per core)
  const dataDir = tmpDir();
  const client = new ComputeClient({ cacheDir: dataDir, dataDir, backend: 'auto', workers: 2 });
  const file = (i: number) => path.join(root, 'stimuli/demo', demoStimuli[i].file);
  // the stimuli's features come from the feature cache in the server, as here
  const feats = await lastValueFrom(client.features$(demoStimuli.map((_, i) => file(i))));
  if (feats.type !== 'features') throw new Error('no features');
  const known = (i: number, j: number) => ({ phiO: feats.features.slice(i * feats.dim, (i + 1) * feats.dim), phiRef: feats.features.slice(j * feats.dim, (j + 1) * feats.dim) });
  const workerTimes: number[] = [];
  for (let k = 0; k <= REPEATS; k++) {
    const t0 = performance.now();
    await lastValueFrom(client.explain$(file(k), file(k + 30), w, gradientMapOptions, known(k, k + 30)));
    if (k > 0) workerTimes.push((performance.now() - t0) / 1000);
  }
  await client.close();
  workerTimes.sort((x, y) => x - y);
  const workersPairSeconds = workerTimes[Math.floor(workerTimes.length / 2)];
  const threads = 2;
  // PyTorch's own time varies by up to 2x between processes here: the median of three processes
  const runs = [0, 1, 2].map(() => {
    const py = spawnSync('/usr/bin/python3', [path.join(root, 'bench/reference/torch_maps.py'), String(threads), String(REPEATS)], { encoding: 'utf8' });
    if (py.status !== 0) throw new Error(`PyTorch baseline failed: ${py.stderr}`);
    return JSON.parse(py.stdout) as { pairSeconds: number; torch: string; dim: number };
  });
  const sortedRuns = [...runs].sort((a, b) => a.pairSeconds - b.pairSeconds);
  const torch = sortedRuns[1];
  const torchRange = [sortedRuns[0].pairSeconds, sortedRuns[2].pairSeconds];
  const ratio = workersPairSeconds / torch.pairSeconds;
  console.log(`  pair (2 maps, MobileNetV2 1.4 @224) on ${backend}, one thread: ${pairSeconds.toFixed(2)} s (median of ${REPEATS})`);
  console.log(`  pair on two worker threads (production path, incl. image decoding and transfer): ${workersPairSeconds.toFixed(2)} s (target < 2 s)`);
  console.log(`  PyTorch ${torch.torch} CPU autograd, ${threads} threads, same architecture: ${torch.pairSeconds.toFixed(3)} s (median of 3 processes; ${torchRange.map((t) => t.toFixed(3)).join('-')}) -> ours / PyTorch = ${ratio.toFixed(2)} (target <= 2; ${(workersPairSeconds / torchRange[1]).toFixed(2)}-${(workersPairSeconds / torchRange[0]).toFixed(2)} over the three)`);
  console.log(`  naive per-dimension Jacobian: ${naivePerMapSeconds.toFixed(0)} s per map vs ${(pairSeconds / 2).toFixed(2)} s with one vector-Jacobian product (${(naivePerMapSeconds / (pairSeconds / 2)).toFixed(0)}x)`);
  return {
    pairSeconds: workersPairSeconds,
    pairSecondsOneThread: pairSeconds,
    ratioVsTorch: ratio,
    backend,
    torchPairSeconds: torch.pairSeconds,
    torchPairSecondsRange: torchRange,
    torchThreads: threads,
    torchVersion: torch.torch,
    naivePerMapSeconds,
    vjpGain: naivePerMapSeconds / (pairSeconds / 2),
    baseline: 'PyTorch CPU autograd (Debian python3-torch, torchvision mobilenet_v2 width 1.4, random weights), median of 3 processes, same run',
    targets: { pairSeconds: 2, ratioVsTorch: 2 },
  };
}
