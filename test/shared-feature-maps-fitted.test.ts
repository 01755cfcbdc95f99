/**
 * Shared-feature maps with FITTED readouts (issue 15): the server maps each neuron with the readout its ridge fitted
 * (ridge.ts, RidgeCV with leave-one-out alphas), not with the neuron's true weights. Planted neurons' responses on
 * a training set of composites of the demo images are fitted by that ridge; the default map method
 * (config/default.json compute.maps) must then still depend on the neuron and point at each neuron's own part.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { initBackend, tf } from '../server/src/compute/backend.ts';
import { ensureDefaultModel, loadModel } from '../server/src/compute/feature-model.ts';
import { buildBasis, createRidgeState, neuronModel, type RidgeBasis } from '../server/src/compute/ridge.ts';
import { featureMoments, graphFeatureFn, sideMap, type FeatureFn, type MapOptions } from '../server/src/compute/shared-feature-maps.ts';
import { PART, SIZE, compose, ownPartScores, plantedNeurons, plantedScenes, rankCorrelation, sceneImages } from '../server/src/sim/planted-parts.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { demoStimuli, root, testConfig, tmpDir } from './helpers.ts';

const dir = path.join(root, 'stimuli/demo');
/** Composites in the training set (beside the 72 demo images): a host and 1-3 parts of other demo images at random places. */
const COMPOSITES = 120;

let phi: FeatureFn;
let train: { features: Float32Array; dim: number; n: number };
let basis: RidgeBasis;
let opts: MapOptions;

before(async () => {
  await initBackend('wasm');
  const spec = ensureDefaultModel(tmpDir());
  phi = graphFeatureFn(await loadModel(spec), spec);
  const r = mulberry32(1515);
  const files = demoStimuli.map((s) => s.file);
  const pick = () => files[Math.floor(r() * files.length)];
  const rows: number[] = [];
  const add = async (x: tf.Tensor4D) => {
    rows.push(...tf.tidy(() => phi(x).dataSync()));
    x.dispose();
  };
  for (const f of files) await add(await compose(dir, f, []));
  for (let i = 0; i < COMPOSITES; i++) {
    const parts = Array.from({ length: 1 + Math.floor(r() * 3) }, () => ({ file: pick(), box: { left: Math.floor(r() * (SIZE - PART)), top: Math.floor(r() * (SIZE - PART)), size: PART } }));
    await add(await compose(dir, pick(), parts));
  }
  const n = files.length + COMPOSITES;
  train = { features: Float32Array.from(rows), dim: rows.length / n, n };
  const c = testConfig().compute;
  basis = buildBasis(train.features, train.dim, Array.from({ length: n }, (_, i) => i), c.alphas);
  // the stimulus set's moments, as the map jobs take them from the set the ridge was fitted on
  const m = featureMoments(train.features, train.dim);
  const maps = c.maps;
  opts = { positiveOnly: maps.positiveOnly, integratedSteps: maps.integratedSteps, smoothSigmaPx: maps.smoothSigmaPx, method: maps.method, features: maps.features, layer: maps.layer, smoothSamples: maps.smoothSamples, occlusionCells: maps.occlusionCells, occlusionStride: maps.occlusionStride, occlusionRender: maps.occlusionRender, featureMean: m.mean, featureSd: m.sd };
});

/** The readout the server's ridge fits to the responses w . phi of the training images, and its leave-one-out R^2. */
function fitted(w: ArrayLike<number>): { weights: Float32Array; looR2: number } {
  const { n, dim, features } = train;
  const y = Float64Array.from({ length: n }, (_, i) => {
    let s = 0;
    for (let d = 0; d < dim; d++) s += w[d] * features[i * dim + d];
    return s;
  });
  const model = neuronModel(createRidgeState(basis, 1, y), 0);
  const mean = y.reduce((a, b) => a + b, 0) / n;
  let sse = 0;
  let sst = 0;
  y.forEach((v, i) => ([sse, sst] = [sse + (v - model.looPredictions[i]) ** 2, sst + (v - mean) ** 2]));
  return { weights: Float32Array.from(model.weights), looR2: 1 - sse / sst };
}

test('sanity checks with readouts fitted by the server ridge: randomising the readout or setting it to all ones changes the default map; two neurons on one pair point at their own parts', async (t) => {
  const scenes = plantedScenes(demoStimuli, 6);
  const r = mulberry32(16);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const corr = { random: [] as number[], ones: [] as number[] };
  const r2: number[] = [];
  let hits = 0;
  let own = 0;
  const report: string[] = [];
  for (const s of scenes) {
    const { xO, xRef } = await sceneImages(dir, s);
    const n = await plantedNeurons(phi, dir, s);
    const [fP, fQ] = [fitted(n.nP), fitted(n.nQ)];
    r2.push(fP.looR2, fQ.looR2);
    const side = (w: Float32Array, which: 'driver' | 'reference') => sideMap(phi, xO, xRef, w, opts, which).map;
    const dP = side(fP.weights, 'driver');
    // random and all-ones readouts are fitted the same way, to their own responses
    for (let k = 0; k < 2; k++) corr.random.push(rankCorrelation(dP, side(fitted(Float32Array.from({ length: train.dim }, gauss)).weights, 'driver')));
    corr.ones.push(rankCorrelation(dP, side(fitted(new Float32Array(train.dim).fill(1)).weights, 'driver')));
    const maps = { P: [dP, side(fP.weights, 'reference')], Q: [side(fQ.weights, 'driver'), side(fQ.weights, 'reference')] };
    const scored = ownPartScores(maps, s);
    hits += scored.hits;
    own += scored.own;
    report.push(...scored.ratios.map((r) => r.toFixed(2)));
    tf.dispose([xO, xRef]);
  }
  const median = (a: number[]) => {
    const s = [...a].sort((x, y) => x - y);
    return (s[Math.floor((s.length - 1) / 2)] + s[Math.ceil((s.length - 1) / 2)]) / 2;
  };
  t.diagnostic(`fits' leave-one-out R^2 ${r2.map((x) => x.toFixed(2))}; random ${corr.random.map((c) => c.toFixed(2))}; ones ${corr.ones.map((c) => c.toFixed(2))}; pointing ${hits}/${report.length}; own/other ${report.join(' ')} (${own} above 1)`);
  // the fits predict the neurons (so a map that fails is the map's fault, not the fit's)
  assert.ok(Math.min(...r2) > 0.8, `leave-one-out R^2 of the fitted readouts ${r2.map((x) => x.toFixed(2))}`);
  assert.ok(median(corr.random) < 0.3, `rank correlation with fitted random readouts ${corr.random.map((c) => c.toFixed(2))}`);
  // measured with the default (the fall of the predicted response, occlusion at expanded_conv_12, rendered at the
  // squares' centres) on these 6 scenes: all-ones 0.35 0.60 0.63 0.07 0.77 0.49 (median 0.55; the issue's target of
  // 0.5 is for the bench's 30 scenes, bench/maps-quality.ts onesReadoutRankCorrFitted), random readouts median 0.01,
  // pointing 24 of 24; with the centred v of the default before, fitted readouts pointed 0.55 on the bench's first 10
  assert.ok(median(corr.ones) < 0.65, `rank correlation with the fitted all-ones readout ${corr.ones.map((c) => c.toFixed(2))}`);
  assert.ok(hits >= 0.8 * report.length, `${hits} of ${report.length} maps point at their own neuron's part`);
  assert.ok(own >= 0.8 * report.length, `own part over the other neuron's part, per neuron and image: ${report.join(' ')}`);
});
