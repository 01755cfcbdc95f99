/** Parallel backpropagation maps on the real MobileNetV2 (wasm): planted shared feature, deletion curve, one VJP = contracted Jacobian. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { initBackend, tf } from '../server/src/compute/backend.ts';
import { ensureDefaultModel, featuresOf, loadModel } from '../server/src/compute/feature-model.ts';
import { attribution, displayMap, sharedFeatureMaps, sharedVector, type FeatureFn } from '../server/src/compute/shared-feature-maps.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { A, B, SIZE, deletionArea, massIn, plantedNeuron, scenePair, scenePairs } from '../server/src/sim/planted-scenes.ts';
import { root, tmpDir } from './helpers.ts';

let phi: FeatureFn;
const images = path.join(root, 'stimuli/demo/images');

before(async () => {
  await initBackend('wasm');
  const spec = ensureDefaultModel(tmpDir());
  const model = await loadModel(spec);
  phi = (x) => featuresOf(model, spec, x);
});

test('v keeps the dimensions active in both images and weighted by the neuron', () => {
  assert.deepEqual(Array.from(sharedVector([1, 2, 0, 1], [1, 1, 5, 0], [3, 0.5, 5, 4], false)), [3, 1, 0, 0]);
  assert.deepEqual(Array.from(sharedVector([-1, 1], [1, 1], [1, 1], true)), [0, 1]);
});

test('pointing game: the maps put more mass on the planted shared object than on the unshared one', async () => {
  let driverWins = 0;
  let referenceWins = 0;
  const report: string[] = [];
  for (const pair of scenePairs) {
    const w = await plantedNeuron(phi, images, pair);
    const { xO, xRef } = await scenePair(images, pair);
    const m = sharedFeatureMaps(phi, xO, xRef, w);
    tf.dispose([xO, xRef]);
    const shared = pair[0];
    const rO = massIn(m.driverMap, A, A) / massIn(m.driverMap, B, B);
    const rRef = massIn(m.referenceMap, B, B) / massIn(m.referenceMap, A, A);
    report.push(`${shared}: ${rO.toFixed(2)} / ${rRef.toFixed(2)}`);
    if (rO > 1.2) driverWins++;
    if (rRef > 1.2) referenceWins++;
    assert.ok(m.driverMap.every((v) => v >= 0 && v <= 1) && Math.max(...m.driverMap, ...m.referenceMap) === 1, 'one common scale');
  }
  assert.ok(driverWins >= 2 && referenceWins >= 2, `shared/unshared mass ratios ${report.join(', ')}`);
});

/**
 * Deletion curves (Petsiuk et al.): pixels set to grey in map order, the planted neuron's model response
 * w . phi(x) after deleting 5%, 15%, ..., 95% of them, averaged (the curve's area; lower = faster). Against
 * random order and against the plain single-image gradient of the same response, |J^T w| summed over colour
 * channels (one tf.grad of the neuron's response, no reference image, no smoothing).
 */
test('deletion: the shared map lowers the neuron faster than random pixels and than a plain single-image gradient', async () => {
  const r = mulberry32(7);
  const sums = { shared: 0, plain: 0, random: 0 };
  let sceneWins = 0;
  const report: string[] = [];
  for (const pair of scenePairs) {
    const w = await plantedNeuron(phi, images, pair);
    const wT = tf.tensor1d(w);
    const { xO, xRef } = await scenePair(images, pair);
    const area = (map: Float32Array) => deletionArea(phi, xO, w, map);
    const gradient = attribution(phi, xO, wT, 0);
    const plainMap = displayMap(gradient, 0).dataSync() as Float32Array;
    const scores = {
      shared: area(sharedFeatureMaps(phi, xO, xRef, w).driverMap),
      plain: area(plainMap),
      random: area(Float32Array.from(plainMap, () => r())),
    };
    tf.dispose([gradient, wT, xO, xRef]);
    for (const k of ['shared', 'plain', 'random'] as const) sums[k] += scores[k];
    if (scores.shared < scores.plain) sceneWins++;
    report.push(`${pair[0]}: shared ${scores.shared.toFixed(2)}, plain gradient ${scores.plain.toFixed(2)}, random ${scores.random.toFixed(2)}`);
  }
  const msg = report.join('; ');
  assert.ok(sums.shared < 0.6 * sums.random, `slower than needed against random: ${msg}`);
  assert.ok(sums.shared < 0.9 * sums.plain && sceneWins >= 2, `not faster than the plain gradient: ${msg}`);
});

test('one vector-Jacobian product equals the per-dimension Jacobian contracted with v', () => {
  const r = mulberry32(3);
  const wts = tf.tensor4d(Float32Array.from({ length: 3 * 3 * 3 * 6 }, () => r() - 0.5), [3, 3, 3, 6]);
  const small: FeatureFn = (x) => tf.tidy(() => tf.mean(tf.relu6(tf.conv2d(x, wts, 2, 'same')), [1, 2]) as tf.Tensor2D);
  const x = tf.tensor4d(Float32Array.from({ length: 12 * 12 * 3 }, () => r()), [1, 12, 12, 3]);
  const v = Float32Array.from({ length: 6 }, () => r());
  const vjp = attribution(small, x, tf.tensor1d(v), 0).dataSync();
  const naive = new Float32Array(vjp.length);
  for (let d = 0; d < 6; d++) {
    const g = tf.grad((inp: tf.Tensor) => tf.slice(small(inp as tf.Tensor4D), [0, d], [1, 1]).sum())(x).dataSync();
    for (let i = 0; i < g.length; i++) naive[i] += v[d] * g[i];
  }
  vjp.forEach((g, i) => assert.ok(Math.abs(g - naive[i]) < 1e-5, `pixel ${i}`));
  assert.equal(displayMap(attribution(small, x, tf.tensor1d(v), 0), 0).shape.join('x'), '12x12');
});

test('map jobs leave no tensors and no wasm heap growth behind (hours of jobs in one worker)', async () => {
  const { sideMap } = await import('../server/src/compute/shared-feature-maps.ts');
  const w = new Float32Array(1792).fill(0.1);
  const heap = () => ((tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.length);
  const sizes: number[] = [];
  const tensors: number[] = [];
  for (let k = 0; k < 6; k++) {
    const a = tf.randomUniform([1, SIZE, SIZE, 3]) as tf.Tensor4D;
    const b = tf.randomUniform([1, SIZE, SIZE, 3]) as tf.Tensor4D;
    sideMap(phi, a, b, w, { positiveOnly: true, integratedSteps: 0, smoothSigmaPx: 2 }, k % 2 ? 'driver' : 'reference');
    tf.dispose([a, b]);
    sizes.push(heap());
    tensors.push(tf.memory().numTensors);
  }
  assert.deepEqual(new Set(tensors.slice(1)).size, 1, `tensors per job: ${tensors}`);
  assert.equal(sizes[5], sizes[2], `wasm heap after jobs: ${sizes.map((s) => (s / 1e6).toFixed(0)).join(' ')} MB`);
});
