/** The TensorFlow.js compute path: wasm gradients (with the kernels we provide) against finite differences, and the feature worker. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { lastValueFrom, toArray } from 'rxjs';
import { initBackend, inputGradientOnly, tf } from '../server/src/compute/backend.ts';
import { ComputeClient } from '../server/src/workers/compute-client.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { demoStimuli, root, tmpDir } from './helpers.ts';

/** A small network of MobileNetV2's op types: fused conv + relu6, depthwise convs (strides 1, 2), 1x1 conv, spatial mean. */
function smallNet(seed: number) {
  const r = mulberry32(seed);
  const rnd = (shape: number[], scale: number) => tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (r() - 0.5) * scale), shape);
  const w1 = rnd([3, 3, 3, 8], 1);
  const b1 = rnd([8], 0.2);
  const dw = rnd([3, 3, 8, 1], 1);
  const w2 = rnd([1, 1, 8, 16], 1);
  const b2 = rnd([16], 0.2);
  return (x: tf.Tensor4D) =>
    tf.tidy(() => {
      const h1 = tf.fused.conv2d({ x, filter: w1 as tf.Tensor4D, strides: 2, pad: 'same', bias: b1, activation: 'relu6' });
      // stride 1 and stride 2 depthwise layers: both input-gradient fast paths
      const h2 = tf.relu6(tf.depthwiseConv2d(tf.relu6(tf.depthwiseConv2d(h1, dw as tf.Tensor4D, 1, 'same')), dw as tf.Tensor4D, 2, 'same'));
      const h3 = tf.fused.conv2d({ x: h2, filter: w2 as tf.Tensor4D, strides: 1, pad: 'same', bias: b2, activation: 'relu6' });
      return tf.mean(h3, [1, 2]) as tf.Tensor2D;
    });
}

for (const backend of ['wasm', 'cpu'] as const) {
  test(`${backend}: input gradient of <v, phi(x)> equals central finite differences (filter gradients skipped)`, async () => {
    assert.equal(await initBackend(backend), backend);
    const phi = smallNet(1);
    const r = mulberry32(2);
    const x = tf.tensor4d(Float32Array.from({ length: 16 * 16 * 3 }, () => r()), [1, 16, 16, 3]);
    const v = tf.tensor1d(Float32Array.from({ length: 16 }, () => r() - 0.5));
    const f = (inp: tf.Tensor) => tf.sum(tf.mul(phi(inp as tf.Tensor4D), v));
    const grad = inputGradientOnly(() => tf.grad(f)(x)).dataSync();
    const full = tf.grad(f)(x).dataSync();
    assert.deepEqual(Array.from(grad), Array.from(full), 'skipping filter gradients leaves the input gradient unchanged');
    const xv = x.dataSync();
    const at = (vals: Float32Array) => f(tf.tensor4d(vals, [1, 16, 16, 3])).dataSync()[0];
    const f0 = at(Float32Array.from(xv));
    const eps = 1e-3;
    let num = 0;
    let den = 0;
    let compared = 0;
    for (let k = 0; k < 80 && compared < 30; k++) {
      const i = Math.floor(r() * xv.length);
      const plus = Float32Array.from(xv);
      const minus = Float32Array.from(xv);
      plus[i] += eps;
      minus[i] -= eps;
      const fwd = (at(plus) - f0) / eps;
      const bwd = (f0 - at(minus)) / eps;
      // a ReLU6 kink inside [x - eps, x + eps] makes the two one-sided slopes differ: no derivative to compare
      if (Math.abs(fwd - bwd) > 0.1 * Math.max(Math.abs(fwd), Math.abs(bwd), 1e-3)) continue;
      const fd = (fwd + bwd) / 2;
      num += (fd - grad[i]) ** 2;
      den += fd ** 2;
      compared++;
    }
    assert.ok(compared >= 20, `${compared} pixels compared`);
    assert.ok(den > 0);
    assert.ok(Math.sqrt(num / den) < 0.02, `relative error ${Math.sqrt(num / den)}`);
  });
}

test('the compute worker returns cached 1792-d MobileNetV2 features of the demo images', async () => {
  const files = demoStimuli.slice(0, 3).map((s) => path.join(root, 'stimuli', 'demo', s.file));
  const client = new ComputeClient({ cacheDir: tmpDir(), dataDir: path.join(root, 'data'), backend: 'auto' });
  try {
    const first = await lastValueFrom(client.features$(files).pipe(toArray()));
    // progress after each batch of up to 8 images (here one batch), counting up to all of them
    const progress = first.filter((e) => e.type === 'progress');
    assert.ok(progress.length >= 1);
    assert.deepEqual(progress.map((e) => e.type === 'progress' && [e.done, e.total, e.cached]).at(-1), [3, 3, 0]);
    const result = first.at(-1)!;
    assert.equal(result.type, 'features');
    if (result.type !== 'features') return;
    assert.equal(result.dim, 1792);
    assert.equal(result.backend, 'wasm');
    assert.ok(result.features.every((x) => Number.isFinite(x) && x >= 0 && x <= 6), 'pooled ReLU6 activations');
    const a = result.features.subarray(0, 1792);
    const b = result.features.subarray(1792, 3584);
    assert.ok(a.some((x, i) => Math.abs(x - b[i]) > 1e-3), 'different images, different features');
    const again = await lastValueFrom(client.features$(files).pipe(toArray()));
    const p = again.filter((e) => e.type === 'progress').at(-1)!;
    assert.equal(p.type === 'progress' && p.cached, 3, 'second request served from the cache');
    const second = again.at(-1)!;
    assert.deepEqual(second.type === 'features' && Array.from(second.features), Array.from(result.features));
  } finally {
    await client.close();
  }
});

test('the compute worker reports an unreadable image as an error', async () => {
  const client = new ComputeClient({ cacheDir: tmpDir(), dataDir: path.join(root, 'data'), backend: 'auto' });
  try {
    await assert.rejects(lastValueFrom(client.features$([path.join(root, 'README.md')])), /unsupported image format|Input file/i);
  } finally {
    await client.close();
  }
});

test('the wasm gradient of the whole MobileNetV2 (with our kernels) equals the cpu reference backend', async () => {
  const { ensureDefaultModel, featuresOf, loadModel } = await import('../server/src/compute/feature-model.ts');
  const spec = ensureDefaultModel(tmpDir());
  const r = mulberry32(9);
  const x = Float32Array.from({ length: 224 * 224 * 3 }, () => r());
  const v = Float32Array.from({ length: 1792 }, () => r());
  const grads: Record<string, Float32Array> = {};
  for (const be of ['wasm', 'cpu'] as const) {
    await initBackend(be);
    const model = await loadModel(spec);
    grads[be] = inputGradientOnly(() => tf.grad((inp: tf.Tensor) => tf.sum(tf.mul(featuresOf(model, spec, inp as tf.Tensor4D), tf.tensor1d(v))))(tf.tensor4d(x, [1, 224, 224, 3]))).dataSync() as Float32Array;
    model.dispose();
  }
  let num = 0;
  let den = 0;
  grads.wasm.forEach((g, i) => {
    num += (g - grads.cpu[i]) ** 2;
    den += grads.cpu[i] ** 2;
  });
  assert.ok(den > 0 && Math.sqrt(num / den) < 1e-3, `relative difference ${Math.sqrt(num / den)}`);
});

test('wasm: kept filter copies never serve another network (same shapes, new weights, freed and reallocated tensors)', async () => {
  const r = mulberry32(11);
  const x = Float32Array.from({ length: 16 * 16 * 3 }, () => r());
  const v = Float32Array.from({ length: 16 }, () => r() - 0.5);
  const gradOn = async (backend: 'wasm' | 'cpu', seed: number) => {
    await initBackend(backend);
    const phi = smallNet(seed);
    const xs = tf.tensor4d(x, [1, 16, 16, 3]);
    const vs = tf.tensor1d(v);
    const g = inputGradientOnly(() => tf.grad((inp: tf.Tensor) => tf.sum(tf.mul(phi(inp as tf.Tensor4D), vs)))(xs)).dataSync();
    return Float32Array.from(g);
  };
  // networks 3, 4, 3 again (new tensors with network 3's values), each twice on wasm: every run equals the cpu reference
  for (const seed of [3, 4, 3]) {
    const ref = await gradOn('cpu', seed);
    for (let run = 0; run < 2; run++) {
      const g = await gradOn('wasm', seed);
      const err = Math.max(...g.map((gi, i) => Math.abs(gi - ref[i])));
      assert.ok(err < 1e-4 * Math.max(...ref.map(Math.abs)), `network ${seed}, run ${run}: max abs diff ${err}`);
    }
  }
});

test('wasm: convolution input gradients (1x1, 3x3, 5x2; strides 1, 2; same, valid) equal the cpu reference', async () => {
  const r = mulberry32(21);
  const configs: { k: [number, number]; cin: number; cout: number; stride: number; pad: 'same' | 'valid' }[] = [
    { k: [1, 1], cin: 6, cout: 10, stride: 1, pad: 'same' },
    { k: [1, 1], cin: 6, cout: 10, stride: 2, pad: 'valid' },
    { k: [3, 3], cin: 3, cout: 8, stride: 2, pad: 'same' },
    { k: [3, 3], cin: 4, cout: 5, stride: 1, pad: 'valid' },
    { k: [5, 2], cin: 2, cout: 3, stride: 2, pad: 'same' },
  ];
  for (const cfg of configs) {
    const xv = Float32Array.from({ length: 13 * 11 * cfg.cin }, () => r() - 0.5);
    const fv = Float32Array.from({ length: cfg.k[0] * cfg.k[1] * cfg.cin * cfg.cout }, () => r() - 0.5);
    const gradOn = async (backend: 'wasm' | 'cpu') => {
      await initBackend(backend);
      const f = tf.tensor4d(fv, [cfg.k[0], cfg.k[1], cfg.cin, cfg.cout]);
      const x = tf.tensor4d(xv, [1, 13, 11, cfg.cin]);
      const g = inputGradientOnly(() => tf.grad((inp: tf.Tensor) => tf.sum(tf.square(tf.conv2d(inp as tf.Tensor4D, f, cfg.stride, cfg.pad))))(x)).dataSync();
      return Float32Array.from(g);
    };
    const ref = await gradOn('cpu');
    const g = await gradOn('wasm');
    const err = Math.max(...g.map((gi, i) => Math.abs(gi - ref[i])));
    assert.ok(err < 1e-4 * Math.max(...ref.map(Math.abs)), `${JSON.stringify(cfg)}: max abs diff ${err}`);
  }
});

test('a pair limited to one thread (compute.liveAnalysisThreads 1, while a rig records) gives the two-thread maps and starts no second thread', async () => {
  const { gradientMapOptions } = await import('../server/src/compute/shared-feature-maps.ts');
  const [driver, reference] = [3, 40].map((i) => path.join(root, 'stimuli', 'demo', demoStimuli[i]!.file));
  const r = mulberry32(5);
  const weights = Float32Array.from({ length: 1792 }, () => r() - 0.5);
  let threads = 1;
  const client = new ComputeClient({ cacheDir: tmpDir(), dataDir: path.join(root, 'data'), backend: 'auto', workers: 2, pairThreads: () => threads });
  // which thread each side ran on: the worker threads' ids, as the client started them
  const started = () => (client as unknown as { slots: { worker: { threadId: number } | null }[] }).slots.map((s) => s.worker?.threadId ?? null);
  try {
    const one = await lastValueFrom(client.explain$(driver, reference, weights, gradientMapOptions));
    assert.equal(started()[1], null, 'one thread: the second worker thread was never started');
    threads = 2;
    const two = await lastValueFrom(client.explain$(driver, reference, weights, gradientMapOptions));
    assert.ok(started().every((t) => t !== null), 'two threads: both worker threads started');
    assert.equal(one.size, two.size);
    const diff = (a: Uint8Array, b: Uint8Array) => Math.max(...a.map((x, i) => Math.abs(x - b[i]!)));
    assert.ok(diff(one.driverMap, two.driverMap) <= 1 && diff(one.referenceMap, two.referenceMap) <= 1, 'the same maps within one grey level');
    assert.ok(one.driverMap.some((x) => x > 0) && one.referenceMap.some((x) => x > 0), 'maps with content');
    assert.ok(Math.abs(one.similarity - two.similarity) < 1e-6 * Math.max(1, Math.abs(two.similarity)));
  } finally {
    await client.close();
  }
});
