/**
 * The compute worker thread: TensorFlow.js (one wasm thread) off the event loop of the server, so ingest
 * never waits on a CNN pass. Messages in: `{ id, type: 'features', files, cacheDir, dataDir, backend }`.
 * Messages out: `{ id, type: 'progress', ... }`, `{ id, type: 'rows', rows, features, dim, backend, modelId }`
 * (rows of the request's files as they are ready: the cached ones, then each batch), `{ id, type: 'features',
 * features, dim, backend }` (all of them), `{ id, type: 'error', message }`.
 */
import { parentPort } from 'node:worker_threads';
import type { GraphModel } from '@tensorflow/tfjs-converter';
import { backendReason, initBackend, type BackendChoice, type BackendName } from '../compute/backend.ts';
import { computeFeatures } from '../compute/feature-cache.ts';
import { ensureDefaultModel, loadModel, type FeatureModelSpec } from '../compute/feature-model.ts';
import { loadImage } from '../compute/image-input.ts';
import { graphFeatureFn, sideMap, type MapOptions } from '../compute/shared-feature-maps.ts';
import { tf } from '../compute/backend.ts';
import { topValues } from './pair-bytes.ts';

export interface FeaturesRequest {
  id: number;
  type: 'features';
  files: string[];
  cacheDir: string;
  dataDir: string;
  backend: BackendChoice;
  model?: FeatureModelSpec;
}

export interface ExplainRequest {
  id: number;
  type: 'explain-side';
  side: 'driver' | 'reference';
  driverFile: string;
  referenceFile: string;
  weights: Float32Array;
  options: MapOptions;
  /** Cached features of the two images, when the caller has them. */
  known?: { phiO: Float32Array; phiRef: Float32Array };
  cacheDir: string;
  dataDir: string;
  backend: BackendChoice;
  model?: FeatureModelSpec;
}

let ready: Promise<{ model: GraphModel; spec: FeatureModelSpec; backend: BackendName }> | null = null;

function init(req: FeaturesRequest | ExplainRequest) {
  ready ??= (async () => {
    const backend = await initBackend(req.backend);
    const spec = req.model ?? ensureDefaultModel(req.dataDir);
    return { model: await loadModel(spec), spec, backend };
  })();
  return ready;
}

parentPort!.on('message', async (req: FeaturesRequest | ExplainRequest) => {
  try {
    const { model, spec, backend } = await init(req);
    if (req.type === 'explain-side') {
      const t0 = performance.now();
      const size = spec.inputSize;
      // with the features of both images known, only this side's image is needed (decoding the other
      // took a share of the 2 cores from the other side's worker)
      const own = req.side === 'driver' ? req.driverFile : req.referenceFile;
      const files = req.known ? [own] : [req.driverFile, req.referenceFile];
      const xs = (await Promise.all(files.map((f) => loadImage(f, size)))).map((px) => tf.tensor4d(px, [1, size, size, 3]));
      const [xO, xR] = req.known ? [xs[0], xs[0]] : xs;
      const side = sideMap(graphFeatureFn(model, spec), xO, xR, req.weights, req.options, req.side, req.known);
      tf.dispose(xs);
      const top = topValues(side.map);
      parentPort!.postMessage({ id: req.id, type: 'side', ...side, top, size, ms: performance.now() - t0, backend }, [side.map.buffer as ArrayBuffer, top.buffer as ArrayBuffer]);
      return;
    }
    const { features, dim } = await computeFeatures(
      model,
      spec,
      req.files,
      req.cacheDir,
      (p) => parentPort!.postMessage({ id: req.id, type: 'progress', ...p }),
      (rows, f, d) => parentPort!.postMessage({ id: req.id, type: 'rows', rows, features: f, dim: d, backend, backendReason, modelId: spec.id }),
    );
    parentPort!.postMessage({ id: req.id, type: 'features', features, dim, backend, backendReason, modelId: spec.id }, [features.buffer as ArrayBuffer]);
  } catch (e) {
    parentPort!.postMessage({ id: req.id, type: 'error', message: (e as Error).message });
  }
});
