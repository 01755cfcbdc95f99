/** Parallel backpropagation maps on the real MobileNetV2 (wasm): planted shared feature, deletion curve, one VJP = contracted Jacobian. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import sharp from 'sharp';
import { initBackend, tf } from '../server/src/compute/backend.ts';
import { ensureDefaultModel, featuresOf, loadModel } from '../server/src/compute/feature-model.ts';
import { GREY } from '../server/src/compute/image-input.ts';
import { attribution, displayMap, sharedFeatureMaps, sharedVector, type FeatureFn } from '../server/src/compute/shared-feature-maps.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { root, tmpDir } from './helpers.ts';

let phi: FeatureFn;
const SIZE = 224;
const OBJ = 80;
const img = (name: string) => path.join(root, 'stimuli/demo/images', `${name}.png`);

before(async () => {
  await initBackend('wasm');
  const spec = ensureDefaultModel(tmpDir());
  const model = await loadModel(spec);
  phi = (x) => featuresOf(model, spec, x);
});

/** A grey 224 x 224 scene with 80 x 80 objects at known places. */
async function scene(parts: { name: string; left: number; top: number }[]): Promise<tf.Tensor4D> {
  const layers = await Promise.all(parts.map(async (p) => ({ input: await sharp(img(p.name)).resize(OBJ, OBJ).png().toBuffer(), left: p.left, top: p.top })));
  const { data } = await sharp({ create: { width: SIZE, height: SIZE, channels: 3, background: GREY } }).composite(layers).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return tf.tensor4d(Float32Array.from(data, (v) => v / 255), [1, SIZE, SIZE, 3]);
}
const massIn = (m: Float32Array, left: number, top: number) => {
  let s = 0;
  for (let y = top; y < top + OBJ; y++) for (let x = left; x < left + OBJ; x++) s += m[y * SIZE + x];
  return s;
};
const A = 16;
const B = 128;

/** A model neuron on known latent dimensions: the 20 where the shared object alone exceeds both distractors and the blank. */
async function plantedNeuron(shared: string, d1: string, d2: string): Promise<Float32Array> {
  const f = async (parts: { name: string; left: number; top: number }[]) => phi(await scene(parts)).dataSync();
  const [ps, p1, p2, pb] = await Promise.all([f([{ name: shared, left: 72, top: 72 }]), f([{ name: d1, left: 72, top: 72 }]), f([{ name: d2, left: 72, top: 72 }]), f([])]);
  const margin = Array.from(ps, (x, d) => x - Math.max(p1[d], p2[d], pb[d]));
  const w = new Float32Array(ps.length);
  for (const d of Array.from(margin.keys()).sort((a, b) => margin[b] - margin[a]).slice(0, 20)) w[d] = 1;
  return w;
}

const pairs: [string, string, string][] = [
  ['guitar', 'car', 'baby'],
  ['hammer', 'cactus', 'frog'],
  ['monkey', 'umbrella', 'key'],
];

test('v keeps the dimensions active in both images and weighted by the neuron', () => {
  assert.deepEqual(Array.from(sharedVector([1, 2, 0, 1], [1, 1, 5, 0], [3, 0.5, 5, 4], false)), [3, 1, 0, 0]);
  assert.deepEqual(Array.from(sharedVector([-1, 1], [1, 1], [1, 1], true)), [0, 1]);
});

test('pointing game: the maps put more mass on the planted shared object than on the unshared one', async () => {
  let driverWins = 0;
  let referenceWins = 0;
  const report: string[] = [];
  for (const [shared, d1, d2] of pairs) {
    const w = await plantedNeuron(shared, d1, d2);
    const xO = await scene([{ name: shared, left: A, top: A }, { name: d1, left: B, top: B }]);
    const xRef = await scene([{ name: shared, left: B, top: B }, { name: d2, left: A, top: A }]);
    const m = sharedFeatureMaps(phi, xO, xRef, w);
    const rO = massIn(m.driverMap, A, A) / massIn(m.driverMap, B, B);
    const rRef = massIn(m.referenceMap, B, B) / massIn(m.referenceMap, A, A);
    report.push(`${shared}: ${rO.toFixed(2)} / ${rRef.toFixed(2)}`);
    if (rO > 1.2) driverWins++;
    if (rRef > 1.2) referenceWins++;
    assert.ok(m.driverMap.every((v) => v >= 0 && v <= 1) && Math.max(...m.driverMap, ...m.referenceMap) === 1, 'one common scale');
  }
  assert.ok(driverWins >= 2 && referenceWins >= 2, `shared/unshared mass ratios ${report.join(', ')}`);
});

test('deletion: removing the most salient pixels first lowers the neuron faster than removing random pixels', async () => {
  const r = mulberry32(7);
  let shared = 0;
  let random = 0;
  for (const [s, d1, d2] of pairs) {
    const w = await plantedNeuron(s, d1, d2);
    const wT = tf.tensor1d(w);
    const xO = await scene([{ name: s, left: A, top: A }, { name: d1, left: B, top: B }]);
    const xRef = await scene([{ name: s, left: B, top: B }, { name: d2, left: A, top: A }]);
    const m = sharedFeatureMaps(phi, xO, xRef, w);
    const xv = xO.dataSync();
    const response = (order: number[]) => {
      let total = 0;
      for (const frac of [0.05, 0.1, 0.2, 0.3]) {
        const x = Float32Array.from(xv);
        for (const i of order.slice(0, Math.floor(frac * order.length))) x.fill(0.5, i * 3, i * 3 + 3);
        total += tf.tidy(() => tf.sum(tf.mul(phi(tf.tensor4d(x, [1, SIZE, SIZE, 3])), wT)).dataSync()[0]);
      }
      return total / 4;
    };
    const idx = Array.from(m.driverMap.keys());
    shared += response([...idx].sort((a, b) => m.driverMap[b] - m.driverMap[a]));
    random += response([...idx].sort(() => r() - 0.5));
  }
  assert.ok(shared < 0.8 * random, `mean response after deletion: salient-first ${shared.toFixed(2)} vs random ${random.toFixed(2)}`);
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
