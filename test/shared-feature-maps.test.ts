/** Parallel backpropagation maps on the real MobileNetV2 (wasm): planted shared feature, deletion curve, one VJP = contracted Jacobian. */
import { test, before } from 'node:test';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import path from 'node:path';
import { initBackend, tf } from '../server/src/compute/backend.ts';
import { ensureDefaultModel, featuresOf, loadModel } from '../server/src/compute/feature-model.ts';
import { BLANK, attribution, displayMap, graphFeatureFn, imageSetMoments, mapVector, rawMap, sharedFeatureMaps, sharedVector, sideMap, type FeatureFn, type MapOptions } from '../server/src/compute/shared-feature-maps.ts';
import { driverRegionFeatures, ownPartScores, plantedNeurons, plantedScenes, rankCorrelation, regionOcclusionMap, sceneImages } from '../server/src/sim/planted-parts.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { A, B, SIZE, deletionArea, massIn, plantedNeuron, scenePair, scenePairs } from '../server/src/sim/planted-scenes.ts';
import { demoStimuli, root, testConfig, tmpDir } from './helpers.ts';

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

test('map jobs leave no tensors and no wasm heap growth behind (hours of jobs in one worker), pixel gradient, layer and layer occlusion maps', async () => {
  const w = new Float32Array(1792).fill(0.1);
  const heap = () => ((tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.length);
  const spec = ensureDefaultModel(tmpDir());
  const phiSplit = graphFeatureFn(await loadModel(spec), spec);
  const c = testConfig().compute.maps;
  const runs: [FeatureFn, MapOptions][] = [
    [phi, { positiveOnly: true, integratedSteps: 0, smoothSigmaPx: 2 }],
    [phiSplit, { positiveOnly: true, integratedSteps: 0, smoothSigmaPx: 0, method: 'layer', layer: c.layer }],
    [phiSplit, { positiveOnly: false, integratedSteps: 0, smoothSigmaPx: 0, method: 'layerOcclusion', layer: c.layer, occlusionCells: 3, occlusionStride: 2 }],
  ];
  for (const [f, opts] of runs) {
    const sizes: number[] = [];
    const tensors: number[] = [];
    for (let k = 0; k < 6; k++) {
      const a = tf.randomUniform([1, SIZE, SIZE, 3]) as tf.Tensor4D;
      const b = tf.randomUniform([1, SIZE, SIZE, 3]) as tf.Tensor4D;
      sideMap(f, a, b, w, opts, k % 2 ? 'driver' : 'reference');
      tf.dispose([a, b]);
      sizes.push(heap());
      tensors.push(tf.memory().numTensors);
    }
    assert.deepEqual(new Set(tensors.slice(1)).size, 1, `${opts.method ?? 'gradient'}: tensors per job: ${tensors}`);
    assert.equal(sizes[5], sizes[2], `${opts.method ?? 'gradient'}: wasm heap after jobs: ${sizes.map((s) => (s / 1e6).toFixed(0)).join(' ')} MB`);
  }
});

/**
 * A two-layer network split at a 10 x 10 x 4 layer (stride 1 'same' below the cut: the layer has the image's
 * size, so the resize is the identity), a 10 x 10 image and a readout v over its 6 features, from `seed`.
 */
function smallSplitNetwork(seed: number) {
  const r = mulberry32(seed);
  const w1 = tf.tensor4d(Float32Array.from({ length: 3 * 3 * 3 * 4 }, () => r() - 0.5), [3, 3, 3, 4]);
  const w2 = tf.tensor4d(Float32Array.from({ length: 3 * 3 * 4 * 6 }, () => r() - 0.5), [3, 3, 4, 6]);
  const lower = (x: tf.Tensor4D) => tf.tidy(() => tf.relu6(tf.conv2d(x, w1, 1, 'same')) as tf.Tensor4D);
  const upper = (a: tf.Tensor4D) => tf.tidy(() => tf.mean(tf.relu6(tf.conv2d(a, w2, 2, 'same')), [1, 2]) as tf.Tensor2D);
  const small: FeatureFn = Object.assign((x: tf.Tensor4D) => tf.tidy(() => upper(lower(x))), { split: () => ({ lower, upper }) });
  const x = tf.tensor4d(Float32Array.from({ length: 10 * 10 * 3 }, () => r()), [1, 10, 10, 3]);
  const v = Float32Array.from({ length: 6 }, () => r() - 0.3);
  return { w1, w2, lower, upper, small, x, v };
}

test("the 'layer' map is the activation's change from the blank screen times the finite-difference gradient of <v, phi> at the layer, positive part, summed over channels", () => {
  const { w1, w2, lower, upper, small, x, v } = smallSplitNetwork(5);
  const map = rawMap(small, x, tf.tensor1d(v), { positiveOnly: true, integratedSteps: 0, smoothSigmaPx: 0, method: 'layer', layer: 'cut' }).dataSync();
  const a = lower(x);
  const av = Float64Array.from(a.dataSync());
  // against the blank screen: the layer's activation to a plain grey image
  const a0 = lower(tf.fill(x.shape, BLANK) as tf.Tensor4D).dataSync();
  const f = (vals: Float64Array) => tf.tidy(() => tf.sum(tf.mul(upper(tf.tensor4d(Float32Array.from(vals), a.shape as [number, number, number, number])), tf.tensor1d(v))).dataSync()[0]);
  const eps = 1e-2;
  let checked = 0;
  let positive = 0;
  for (let p = 0; p < 100; p += 7) {
    let expected = 0;
    for (let c = 0; c < 4; c++) {
      const i = p * 4 + c;
      const up = Float64Array.from(av);
      const down = Float64Array.from(av);
      up[i] += eps;
      down[i] -= eps;
      expected += (av[i] - a0[i]) * ((f(up) - f(down)) / (2 * eps));
    }
    assert.ok(Math.abs(Math.max(0, expected) - map[p]) < 2e-3 * (1 + Math.abs(expected)), `pixel ${p}: ${map[p]} vs finite differences ${expected}`);
    checked++;
    if (map[p] > 1e-4) positive++;
  }
  assert.ok(checked === 15 && positive >= 3, `${positive} of ${checked} pixels checked carry map mass`);
  tf.dispose([w1, w2, x, a]);
});

test("the 'layerOcclusion' map is the fall of <v, phi> when squares of layer cells take the blank screen's activation, averaged over the squares covering each cell", () => {
  const { w1, w2, lower, upper, small, x, v } = smallSplitNetwork(9);
  const av = lower(x).dataSync();
  const a0 = lower(tf.fill(x.shape, BLANK) as tf.Tensor4D).dataSync();
  const response = (vals: Float32Array) => tf.tidy(() => tf.sum(tf.mul(upper(tf.tensor4d(vals, [1, 10, 10, 4])), tf.tensor1d(v))).dataSync()[0]);
  const full = response(Float32Array.from(av));
  // 3 x 3 squares every 2 cells on a 10 x 10 grid: starts 0, 2, 4, 6 and 7 (the last reaches the border)
  const starts = [0, 2, 4, 6, 7];
  const sum = new Float64Array(100);
  const count = new Float64Array(100);
  for (const i of starts)
    for (const j of starts) {
      const occluded = Float32Array.from(av);
      const cells: number[] = [];
      for (let y = i; y < i + 3; y++) for (let xx = j; xx < j + 3; xx++) cells.push(y * 10 + xx);
      for (const p of cells) for (let c = 0; c < 4; c++) occluded[p * 4 + c] = a0[p * 4 + c];
      const fall = full - response(occluded);
      for (const p of cells) {
        sum[p] += fall;
        count[p]++;
      }
    }
  // the layer has the image's size (stride 1 below the cut), so the resize is the identity
  const map = rawMap(small, x, tf.tensor1d(v), { positiveOnly: true, integratedSteps: 0, smoothSigmaPx: 0, method: 'layerOcclusion', layer: 'cut', occlusionCells: 3, occlusionStride: 2 }).dataSync();
  let positive = 0;
  for (let p = 0; p < 100; p++) {
    const expected = Math.max(0, sum[p] / count[p]);
    assert.ok(Math.abs(expected - map[p]) < 1e-4 * (1 + Math.abs(expected)), `cell ${p}: ${map[p]} vs direct occlusion ${expected}`);
    if (expected > 1e-4) positive++;
  }
  assert.ok(positive >= 10 && positive < 100, `${positive} of 100 cells carry map mass`);
  tf.dispose([w1, w2, x]);
});

test("the 'layerOcclusion' map rendered at the squares' centres equals scipy's bilinear interpolation of the squares' falls (RegularGridInterpolator, held constant beyond the outer centres)", () => {
  const { w1, w2, lower, upper, small, x, v } = smallSplitNetwork(13);
  const av = lower(x).dataSync();
  const a0 = lower(tf.fill(x.shape, BLANK) as tf.Tensor4D).dataSync();
  const response = (vals: Float32Array) => tf.tidy(() => tf.sum(tf.mul(upper(tf.tensor4d(vals, [1, 10, 10, 4])), tf.tensor1d(v))).dataSync()[0]);
  const full = response(Float32Array.from(av));
  // 3 x 3 squares every 3 cells on a 10 x 10 grid: starts 0, 3, 6 and 7 (the last reaches the border)
  const starts = [0, 3, 6, 7];
  const falls = starts.map((i) =>
    starts.map((j) => {
      const occluded = Float32Array.from(av);
      for (let y = i; y < i + 3; y++) for (let xx = j; xx < j + 3; xx++) for (let c = 0; c < 4; c++) occluded[(y * 10 + xx) * 4 + c] = a0[(y * 10 + xx) * 4 + c];
      return full - response(occluded);
    }),
  );
  const py = `import sys, json, numpy as np
from scipy.interpolate import RegularGridInterpolator
d = json.load(sys.stdin)
c = np.array(d['starts']) + 1.5
f = RegularGridInterpolator((c, c), np.array(d['falls']), method='linear')
p = np.clip(np.arange(10) + 0.5, c[0], c[-1])
yy, xx = np.meshgrid(p, p, indexing='ij')
print(json.dumps(np.maximum(0, f(np.stack([yy.ravel(), xx.ravel()], 1))).tolist()))`;
  const expected = JSON.parse(execFileSync('/usr/bin/python3', ['-c', py], { input: JSON.stringify({ starts, falls }) }).toString()) as number[];
  const map = rawMap(small, x, tf.tensor1d(v), { positiveOnly: true, integratedSteps: 0, smoothSigmaPx: 0, method: 'layerOcclusion', layer: 'cut', occlusionCells: 3, occlusionStride: 3, occlusionRender: 'centres' }).dataSync();
  let positive = 0;
  expected.forEach((e, p) => {
    assert.ok(Math.abs(e - map[p]) < 1e-4 * (1 + Math.abs(e)), `pixel ${p}: ${map[p]} vs scipy ${e}`);
    if (e > 1e-4) positive++;
  });
  assert.ok(positive >= 10 && new Set(expected.map((e) => e.toFixed(5))).size > 16, `${positive} of 100 pixels carry map mass, more values than squares`);
  tf.dispose([w1, w2, x]);
});

test('rank correlation of two maps equals scipy.stats.spearmanr, over all pixels and over those where either map is non-zero', () => {
  const r = mulberry32(3);
  // positive-part maps: many zeros, some shared, and ties
  const a = Array.from({ length: 400 }, (_, i) => (i % 3 === 0 ? 0 : Math.round(r() * 20) / 4));
  const b = Array.from({ length: 400 }, (_, i) => (i % 5 === 0 ? 0 : Math.round((a[i] + r() * 3) * 4) / 4));
  const py = `import sys, json, numpy as np
from scipy.stats import spearmanr
a, b = (np.array(v) for v in json.load(sys.stdin))
nz = (a != 0) | (b != 0)
print(json.dumps([spearmanr(a, b)[0], spearmanr(a[nz], b[nz])[0]]))`;
  const [all, nonZero] = JSON.parse(execFileSync('/usr/bin/python3', ['-c', py], { input: JSON.stringify([a, b]) }).toString()) as number[];
  assert.ok(Math.abs(rankCorrelation(a, b) - all) < 1e-9, `${rankCorrelation(a, b)} vs scipy ${all}`);
  assert.ok(Math.abs(rankCorrelation(a, b, true) - nonZero) < 1e-9, `${rankCorrelation(a, b, true)} vs scipy ${nonZero}`);
  assert.ok(Math.abs(all - nonZero) > 0.01, 'the shared zeros change the correlation');
});

test("the map's vector by features: 'prediction' is the readout, 'predictionShared' the readout times the other image's centred prediction (numpy), 'centred' the shared vector", () => {
  const r = mulberry32(21);
  const vec = () => Float32Array.from({ length: 12 }, () => r() - 0.4);
  const [w, mean] = [vec(), vec()];
  // the reference's centred prediction above 0 (the driver's map keeps w), the driver's below (the reference's map is 0)
  const phiRef = mean.map((m, d) => m + 0.5 * w[d]);
  const phiO = mean.map((m, d) => m - 0.5 * w[d]);
  const base: MapOptions = { positiveOnly: false, integratedSteps: 0, smoothSigmaPx: 0, featureMean: mean };
  const py = `import sys, json, numpy as np
w, o, ref, mu = (np.array(v) for v in json.load(sys.stdin))
print(json.dumps([(w * max(0.0, w @ (ref - mu))).tolist(), (w * max(0.0, w @ (o - mu))).tolist()]))`;
  const [driver, reference] = JSON.parse(execFileSync('/usr/bin/python3', ['-c', py], { input: JSON.stringify([w, phiO, phiRef, mean].map((a) => Array.from(a))) }).toString()) as number[][];
  const close = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).every((x, i) => Math.abs(x - b[i]) < 1e-6);
  assert.ok(close(mapVector(w, phiO, phiRef, { ...base, features: 'predictionShared' }, 'driver'), driver), 'driver side');
  assert.ok(close(mapVector(w, phiO, phiRef, { ...base, features: 'predictionShared' }, 'reference'), reference), 'reference side');
  assert.ok(driver.some((x) => x !== 0) && reference.every((x) => x === 0), 'one side zero, the other not');
  assert.deepEqual(Array.from(mapVector(w, phiO, phiRef, { ...base, features: 'prediction', featureMean: undefined }, 'driver')), Array.from(w));
  assert.deepEqual(Array.from(mapVector(w, phiO, phiRef, { ...base, features: 'centred' }, 'reference')), Array.from(sharedVector(w, phiO, phiRef, false, { mean })));
  assert.throws(() => mapVector(w, phiO, phiRef, { ...base, features: 'predictionShared', featureMean: undefined }, 'driver'), /need the stimulus set's feature mean/);
});

test("the planted ground truth's region map equals numpy's: each part's pixels the fall of <v, phi> when it is removed, the host's fall per part area, positive part", () => {
  const r = mulberry32(11);
  const vec = () => Float32Array.from({ length: 8 }, () => r() - 0.5);
  const regions = { full: vec(), without: { P: vec(), Q: vec(), R: vec(), host: vec() } };
  const [s] = plantedScenes(demoStimuli, 1);
  const v = vec();
  const m = regionOcclusionMap(regions, s.driverBoxes, v);
  const py = `import sys, json, numpy as np
d = json.load(sys.stdin)
v = np.array(d['v']); full = np.dot(d['full'], v)
m = np.full((224, 224), max(0.0, (full - np.dot(d['without']['host'], v)) * 72 * 72 / (224 * 224 - 3 * 72 * 72)))
for k in 'PQR':
    b = d['boxes'][k]
    m[b['top']:b['top'] + b['size'], b['left']:b['left'] + b['size']] = max(0.0, full - np.dot(d['without'][k], v))
print(json.dumps(m.ravel().tolist()))`;
  const plain = (f: Float32Array) => Array.from(f);
  const input = { v: plain(v), full: plain(regions.full), without: Object.fromEntries(Object.entries(regions.without).map(([k, f]) => [k, plain(f)])), boxes: s.driverBoxes };
  const expected = JSON.parse(execFileSync('/usr/bin/python3', ['-c', py], { input: JSON.stringify(input), maxBuffer: 1 << 24 }).toString()) as number[];
  let worst = 0;
  expected.forEach((e, i) => (worst = Math.max(worst, Math.abs(e - m[i]))));
  assert.ok(worst < 1e-5, `largest difference from numpy ${worst}`);
  assert.ok(new Set(expected.map((e) => e.toFixed(6))).size >= 3, 'regions take different values');
});

/** The default map method (config/default.json's compute.maps) with the demo set's feature moments, as the server runs it. */
async function defaultMethod(): Promise<{ phiSplit: FeatureFn; opts: MapOptions }> {
  const spec = ensureDefaultModel(tmpDir());
  const model = await loadModel(spec);
  const phiSplit = graphFeatureFn(model, spec);
  const m = await imageSetMoments(phiSplit, demoStimuli.map((s) => path.join(root, 'stimuli/demo', s.file)));
  const c = testConfig().compute.maps;
  return { phiSplit, opts: { positiveOnly: c.positiveOnly, integratedSteps: c.integratedSteps, smoothSigmaPx: c.smoothSigmaPx, method: c.method, features: c.features, layer: c.layer, smoothSamples: c.smoothSamples, occlusionCells: c.occlusionCells, occlusionStride: c.occlusionStride, occlusionRender: c.occlusionRender, featureMean: m.mean, featureSd: m.sd } };
}

test('sanity checks on planted scenes: randomising the readout or setting it to all ones changes the default map; two neurons on one pair point at their own parts', async (t) => {
  const { phiSplit, opts } = await defaultMethod();
  const scenes = plantedScenes(demoStimuli, 4);
  const r = mulberry32(15);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const corr = { random: [] as number[], ones: [] as number[], onesTruth: [] as number[] };
  let own = 0;
  let hits = 0;
  const report: string[] = [];
  for (const s of scenes) {
    const { xO, xRef } = await sceneImages(path.join(root, 'stimuli/demo'), s);
    const n = await plantedNeurons(phiSplit, path.join(root, 'stimuli/demo'), s);
    const side = (w: Float32Array, which: 'driver' | 'reference') => sideMap(phiSplit, xO, xRef, w, opts, which).map;
    const dP = side(n.nP, 'driver');
    corr.random.push(rankCorrelation(dP, side(Float32Array.from({ length: n.nP.length }, gauss), 'driver')));
    const ones = new Float32Array(n.nP.length).fill(1);
    corr.ones.push(rankCorrelation(dP, side(ones, 'driver')));
    // the ground truth of the standardised v (the default before): the maps that each region's removal gives,
    // for the neuron and the all-ones readout
    const regions = await driverRegionFeatures(phiSplit, path.join(root, 'stimuli/demo'), s, xO);
    const phiRef = tf.tidy(() => phiSplit(xRef).dataSync() as Float32Array);
    const truth = (w: Float32Array) => regionOcclusionMap(regions, s.driverBoxes, sharedVector(w, regions.full, phiRef, false, { mean: opts.featureMean!, sd: opts.featureSd }));
    corr.onesTruth.push(rankCorrelation(truth(n.nP), truth(ones)));
    // each neuron's map peaks at its own part (pointing game) and has more mass per area there than on the
    // other neuron's part, in both images
    const maps = { P: [dP, side(n.nP, 'reference')], Q: [side(n.nQ, 'driver'), side(n.nQ, 'reference')] };
    const scored = ownPartScores(maps, s);
    hits += scored.hits;
    own += scored.own;
    report.push(...scored.ratios.map((r) => r.toFixed(2)));
    tf.dispose([xO, xRef]);
  }
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const ratios = report.map(Number);
  // 16 maps (4 scenes, 2 neurons, 2 images); measured with the default (the fall of the predicted response w . phi,
  // occlusion at expanded_conv_12, 3 x 3 cells every 3, rendered at the squares' centres): 16 of 16 pointing, 16
  // own/other above 1, median ratio 85; random readouts 0.10 -0.01 0.45 0.02, all-ones 0.11 0.34 0.33 -0.01 (signed
  // centred v per cell, the default before: 14 of 16, median ratio 3.49, random -0.14 0.10 0.33 -0.54, all-ones
  // 0.36 0.27 0.76 0.29; the standardised v before that: all-ones 0.83 0.33 0.79 0.20). With
  // standardised v the ground truth itself fails the all-ones target (the neuron's and the all-ones readout's
  // region maps correlate 1.00 0.50 0.98 -0.17: the all-ones readout falls most, like the neuron, where the
  // neuron's part is removed, since both images share it); that claim of docs/compute.md is asserted too
  t.diagnostic(`random ${corr.random.map((c) => c.toFixed(2))}; ones ${corr.ones.map((c) => c.toFixed(2))} (ground truth ${corr.onesTruth.map((c) => c.toFixed(2))}); pointing ${hits}/16; own/other ${report.join(' ')} (${own} above 1, median ${median(ratios).toFixed(2)})`);
  assert.ok(median(corr.onesTruth) > 0.5, `standardised v's ground truth's all-ones correlation ${corr.onesTruth.map((c) => c.toFixed(2))}`);
  assert.ok(median(corr.ones) <= 0.5, `rank correlation with the all-ones readout ${corr.ones.map((c) => c.toFixed(2))}`);
  assert.ok(median(corr.random) < 0.3, `rank correlation with random readouts ${corr.random.map((c) => c.toFixed(2))}`);
  assert.ok(hits >= 13, `${hits} of 16 maps point at their own neuron's part`);
  assert.ok(own >= 12 && median(ratios) > 2, `own part over the other neuron's part, per neuron and image: ${report.join(' ')}`);
});
