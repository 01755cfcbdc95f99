/**
 * Deletion curves of the shared-feature map against a plain single-image gradient (METHOD.md), on the
 * planted scenes of the map tests (server/src/sim/planted-scenes.ts): a model neuron on 20 latent
 * dimensions of the shared object, the driver scene with the shared object and an unshared one. Pixels set
 * to grey in map order, the neuron's model response after deleting 5%, 15%, ..., 95%, averaged (the
 * curve's area; lower = faster). Baseline: the plain gradient of the neuron's response, |J^T w| summed over
 * colour channels, same run. Also: that gradient smoothed like the display, integrated gradients (8 steps)
 * for all, the server's default map (config compute.maps), random order.
 */
import path from 'node:path';
import { initBackend, tf } from '../server/src/compute/backend.ts';
import { ensureDefaultModel, featuresOf, loadModel } from '../server/src/compute/feature-model.ts';
import { attribution, imageSetMoments, gradientMapOptions, displayMap, graphFeatureFn, sharedFeatureMaps, type FeatureFn, type MapOptions } from '../server/src/compute/shared-feature-maps.ts';
import { loadConfig } from '../server/src/config.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { deletionArea, plantedNeuron, scenePair, scenePairs } from '../server/src/sim/planted-scenes.ts';
import { demoStimuli, root, tmpDir } from './support.ts';

export async function run(): Promise<Record<string, unknown>> {
  const backend = await initBackend('wasm');
  const spec = ensureDefaultModel(tmpDir());
  const model = await loadModel(spec);
  const phi: FeatureFn = (x) => featuresOf(model, spec, x);
  const images = path.join(root, 'stimuli/demo/images');
  // the server's default map (config/default.json's compute.maps) with the demo set's feature moments
  const phiSplit = graphFeatureFn(model, spec);
  const moments = await imageSetMoments(phiSplit, demoStimuli.map((s) => path.join(root, 'stimuli/demo', s.file)));
  const c = loadConfig(root, {}).compute.maps;
  const defaultOpts: MapOptions = { ...c, featureMean: moments.mean, featureSd: moments.sd };
  const r = mulberry32(7);
  const sums: Record<string, number> = {};
  const scenes: Record<string, Record<string, number>> = {};
  for (const pair of scenePairs) {
    const w = await plantedNeuron(phi, images, pair);
    const wT = tf.tensor1d(w);
    const { xO, xRef } = await scenePair(images, pair);
    const maps: Record<string, Float32Array> = {};
    for (const steps of [0, 8]) {
      const tag = steps ? `, integrated gradients ${steps}` : '';
      maps[`shared map${tag}`] = sharedFeatureMaps(phi, xO, xRef, w, { ...gradientMapOptions, integratedSteps: steps }).driverMap;
      const g = attribution(phi, xO, wT, steps);
      maps[`plain gradient${tag}`] = displayMap(g, 0).dataSync() as Float32Array;
      maps[`plain gradient smoothed ${gradientMapOptions.smoothSigmaPx} px${tag}`] = displayMap(g, gradientMapOptions.smoothSigmaPx).dataSync() as Float32Array;
      g.dispose();
    }
    maps[`default map (${c.method}, ${c.features} v${c.positiveOnly ? ', positive part' : ', signed'})`] = sharedFeatureMaps(phiSplit, xO, xRef, w, defaultOpts).driverMap;
    maps.random = Float32Array.from(maps['shared map'], () => r());
    const areas = Object.fromEntries(Object.entries(maps).map(([k, m]) => [k, deletionArea(phi, xO, w, m)]));
    tf.dispose([wT, xO, xRef]);
    scenes[pair[0]] = areas;
    for (const [k, v] of Object.entries(areas)) sums[k] = (sums[k] ?? 0) + v;
    console.log(`  ${pair[0]}: ${Object.entries(areas).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}`);
  }
  const base = sums['plain gradient'];
  for (const [k, v] of Object.entries(sums)) console.log(`  sum over scenes: ${k.padEnd(48)} ${v.toFixed(2)}  (${(v / base).toFixed(2)}x the plain gradient's area)`);
  return {
    backend,
    baseline: 'plain single-image gradient |J^T w| summed over colour channels, same scenes, same run',
    areaRatioVsPlainGradient: sums['shared map'] / base,
    areaRatioVsRandom: sums['shared map'] / sums.random,
    areaRatioVsSmoothedGradient: sums['shared map'] / sums[`plain gradient smoothed ${gradientMapOptions.smoothSigmaPx} px`],
    sums,
    scenes,
    note: 'lower area = the map finds what drives the neuron faster; ratios below 1 favour the shared map',
  };
}
