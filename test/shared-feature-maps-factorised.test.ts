/** The factorised space x feature readout (compute/factorised-readout.ts): its fit against numpy / scipy, its map's decomposition, and its maps on the real network. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { initBackend, tf } from '../server/src/compute/backend.ts';
import { ensureDefaultModel, loadModel } from '../server/src/compute/feature-model.ts';
import { blankLayerActivation, factorisedCellMap, factorisedSideMap, factorisedVector, fitFactorisedReadout, layerActivation, maskPooled, predictFactorised, type FactorisedReadout } from '../server/src/compute/factorised-readout.ts';
import { graphFeatureFn } from '../server/src/compute/shared-feature-maps.ts';
import { compose, PART, QUADRANTS, pointsInto } from '../server/src/sim/planted-parts.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { demoStimuli, root, tmpDir } from './helpers.ts';

/** A small problem: n activations (h x w x C) and responses of a planted rank-one readout plus noise. */
function problem(seed: number, n: number, height: number, width: number, channels: number) {
  const r = mulberry32(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const S = height * width;
  const F = Float64Array.from({ length: n * S * channels }, () => Math.max(0, gauss() + 0.3));
  const mTrue = Float64Array.from({ length: S }, (_, s) => Math.exp(-((Math.floor(s / width) - 1) ** 2 + ((s % width) - 2) ** 2) / 2));
  const wTrue = Float64Array.from({ length: channels }, gauss);
  const y = Float64Array.from({ length: n }, (_, i) => {
    let v = 3;
    for (let s = 0; s < S; s++) for (let c = 0; c < channels; c++) v += mTrue[s] * wTrue[c] * F[(i * S + s) * channels + c];
    return v + 0.3 * gauss();
  });
  return { F, y, grid: { height, width, channels }, mTrue, wTrue };
}

test('factorised readout: alternating ridge reaches the objective of numpy ALS and of scipy L-BFGS on the full objective', () => {
  const { F, y, grid } = problem(3, 80, 3, 4, 6);
  for (const opts of [
    { alphaMask: 0.5, alphaWeights: 0.5, smoothness: 0 },
    { alphaMask: 2, alphaWeights: 0.2, smoothness: 1.5 },
  ]) {
    const fit = fitFactorisedReadout(F, y, grid, { ...opts, tolerance: 1e-13, maxIterations: 5000 });
    const py = spawnSync('/usr/bin/python3', [path.join(root, 'test/reference/factorised_readout.py')], {
      input: JSON.stringify({ F: Array.from(F), y: Array.from(y), ...grid, ...opts }),
      encoding: 'utf8',
    });
    assert.equal(py.status, 0, py.stderr);
    const ref = JSON.parse(py.stdout) as { als: { objective: number; mask: number[]; weights: number[]; intercept: number }; lbfgs: { objective: number } };
    const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
    assert.ok(rel(fit.objective, ref.als.objective) < 1e-8, `objective ${fit.objective} vs numpy ALS ${ref.als.objective}`);
    assert.ok(fit.objective <= ref.lbfgs.objective * (1 + 1e-6), `objective ${fit.objective} vs scipy L-BFGS ${ref.lbfgs.objective}`);
    fit.mask.forEach((m, s) => assert.ok(Math.abs(m - ref.als.mask[s]) < 1e-5, `mask ${s}: ${m} vs ${ref.als.mask[s]}`));
    fit.weights.forEach((w, c) => assert.ok(Math.abs(w - ref.als.weights[c]) < 1e-5, `weight ${c}: ${w} vs ${ref.als.weights[c]}`));
    assert.ok(Math.abs(fit.intercept - ref.als.intercept) < 1e-6);
  }
});

test('factorised readout: recovers a planted rank-one readout, predicts it, and refuses bad input', () => {
  const { F, y, grid, mTrue, wTrue } = problem(5, 400, 3, 4, 6);
  const fit = fitFactorisedReadout(F, y, grid, { alphaMask: 0.05, alphaWeights: 0.05 });
  const P = 3 * 4 * 6;
  const cos = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    let ab = 0;
    let aa = 0;
    let bb = 0;
    for (let i = 0; i < a.length; i++) [ab, aa, bb] = [ab + a[i] * b[i], aa + a[i] * a[i], bb + b[i] * b[i]];
    return ab / Math.sqrt(aa * bb);
  };
  assert.ok(cos(fit.mask, mTrue) > 0.99, `mask cosine ${cos(fit.mask, mTrue)}`);
  assert.ok(cos(fit.weights, wTrue) > 0.99, `weights cosine ${cos(fit.weights, wTrue)}`);
  let sse = 0;
  let sst = 0;
  const mean = y.reduce((a, b) => a + b, 0) / y.length;
  y.forEach((yi, i) => {
    sse += (yi - predictFactorised(fit, F.subarray(i * P, (i + 1) * P))) ** 2;
    sst += (yi - mean) ** 2;
  });
  assert.ok(1 - sse / sst > 0.95, `R^2 ${1 - sse / sst}`);
  assert.throws(() => fitFactorisedReadout(F.subarray(1), y, grid, { alphaMask: 1, alphaWeights: 1 }), /feature values for 400 responses/);
  assert.throws(() => fitFactorisedReadout(F, y, grid, { alphaMask: 0, alphaWeights: 1 }), /penalties must be positive/);
  const bad = Float64Array.from(y);
  bad[7] = NaN;
  assert.throws(() => fitFactorisedReadout(F, bad, grid, { alphaMask: 1, alphaWeights: 1 }), /non-finite/);
});

test("factorised map: the cells sum to <v, g(x)> - <v, g(blank)>, and v is w times both images' mask-pooled deviations", () => {
  const { F } = problem(9, 3, 3, 4, 6);
  const P = 72;
  const r: FactorisedReadout = { mask: Float64Array.from({ length: 12 }, (_, s) => (s % 5) - 1.5), weights: Float64Array.from({ length: 6 }, (_, c) => c - 2.5), intercept: 0, height: 3, width: 4, channels: 6, objective: 0, iterations: 0 };
  const [aO, aRef, aMean] = [F.subarray(0, P), F.subarray(P, 2 * P), F.subarray(2 * P, 3 * P)];
  const a0 = new Float64Array(P).fill(0.2);
  const v = factorisedVector(r, 'shared', aO, aRef, aMean);
  const [gO, gRef, mu] = [maskPooled(r, aO), maskPooled(r, aRef), maskPooled(r, aMean)];
  v.forEach((vc, c) => assert.ok(Math.abs(vc - r.weights[c] * (gO[c] - mu[c]) * (gRef[c] - mu[c])) < 1e-9));
  const cells = factorisedCellMap(r, v, aO, a0);
  const g0 = maskPooled(r, a0);
  const expected = v.reduce((s, vc, c) => s + vc * (gO[c] - g0[c]), 0);
  assert.ok(Math.abs(cells.reduce((a, b) => a + b, 0) - expected) < 1e-9 * Math.max(1, Math.abs(expected)));
  assert.deepEqual(Array.from(factorisedVector(r, 'contribution', aO, aRef, aMean)), Array.from(r.weights));
});

test('factorised maps on the network: two readouts on one image pair, masks on different parts, each map peaks at its own part; a grey background carries no map', async () => {
  await initBackend('wasm');
  const spec = ensureDefaultModel(tmpDir());
  const phi = graphFeatureFn(await loadModel(spec), spec);
  const layer = 'StatefulPartitionedCall/sequential/keras_layer/StatefulPartitionedCall/StatefulPartitionedCall/StatefulPartitionedCall/predict/MobilenetV2/expanded_conv_12/add';
  const dir = path.join(root, 'stimuli/demo');
  const files = demoStimuli.filter((s) => s.category !== 'object').map((s) => s.file);
  const host = demoStimuli.find((s) => s.category === 'object')!.file;
  const box = (q: number) => ({ left: QUADRANTS[q][0], top: QUADRANTS[q][1], size: PART });
  const xO = await compose(dir, host, [{ file: files[0], box: box(0) }, { file: files[1], box: box(3) }]);
  const xRef = await compose(dir, null, [{ file: files[0], box: box(1) }, { file: files[1], box: box(2) }]);
  const xGrey = await compose(dir, null, []);
  const { a, height, width, channels } = layerActivation(phi, layer, xO);
  const a0 = blankLayerActivation(phi, layer, 224);
  // feature weights: the sign of each channel's mean change from the blank screen over the driver (so a part's
  // cells add up positive); a mask on the cells of one quadrant box (16 px per cell), zero elsewhere
  const change = new Float64Array(channels);
  a.forEach((x, i) => (change[i % channels] += x - a0[i]));
  const maskOn = (q: number) => Float64Array.from({ length: height * width }, (_, s) => {
    const [cy, cx] = [(Math.floor(s / width) + 0.5) * 16, ((s % width) + 0.5) * 16];
    const b = box(q);
    return cx >= b.left && cx < b.left + b.size && cy >= b.top && cy < b.top + b.size ? 1 : 0;
  });
  const readout = (q: number): FactorisedReadout => ({ mask: maskOn(q), weights: change.map(Math.sign), intercept: 0, height, width, channels, objective: 0, iterations: 0 });
  const aMean = new Float64Array(height * width * channels);
  for (const q of [0, 3]) {
    const { map } = factorisedSideMap(phi, layer, xO, xRef, readout(q), aMean, { kind: 'contribution', smoothSigmaPx: 2 }, 'driver');
    let peak = 0;
    map.forEach((m, i) => (peak = m > map[peak] ? i : peak));
    assert.ok(map[peak] > 0 && pointsInto(map, box(q)), `the map of the readout masked on quadrant ${q} peaks in its box (peak ${map[peak]} at x ${peak % 224}, y ${Math.floor(peak / 224)})`);
  }
  const grey = factorisedSideMap(phi, layer, xGrey, xGrey, readout(3), aMean, { kind: 'contribution', smoothSigmaPx: 2 }, 'driver');
  assert.ok(Math.max(...grey.map) < 1e-4, `grey background: max ${Math.max(...grey.map)}`);
  tf.dispose([xO, xRef, xGrey]);
});
