/**
 * The compute worker thread: TensorFlow.js (one wasm thread) off the event loop of the server, so ingest
 * never waits on a CNN pass. Messages in: `{ id, type: 'features', files, cacheDir, dataDir, backend }`.
 * Messages out: `{ id, type: 'progress', ... }`, `{ id, type: 'features', features, dim, backend }`,
 * `{ id, type: 'error', message }`.
 */
import { parentPort } from 'node:worker_threads';
import type { GraphModel } from '@tensorflow/tfjs-converter';
import { initBackend, type BackendChoice, type BackendName } from '../compute/backend.ts';
import { computeFeatures } from '../compute/feature-cache.ts';
import { ensureDefaultModel, loadModel, type FeatureModelSpec } from '../compute/feature-model.ts';

export interface FeaturesRequest {
  id: number;
  type: 'features';
  files: string[];
  cacheDir: string;
  dataDir: string;
  backend: BackendChoice;
  model?: FeatureModelSpec;
}

let ready: Promise<{ model: GraphModel; spec: FeatureModelSpec; backend: BackendName }> | null = null;

function init(req: FeaturesRequest) {
  ready ??= (async () => {
    const backend = await initBackend(req.backend);
    const spec = req.model ?? ensureDefaultModel(req.dataDir);
    return { model: await loadModel(spec), spec, backend };
  })();
  return ready;
}

parentPort!.on('message', async (req: FeaturesRequest) => {
  try {
    const { model, spec, backend } = await init(req);
    const { features, dim } = await computeFeatures(model, spec, req.files, req.cacheDir, (p) => parentPort!.postMessage({ id: req.id, type: 'progress', ...p }));
    parentPort!.postMessage({ id: req.id, type: 'features', features, dim, backend, modelId: spec.id }, [features.buffer as ArrayBuffer]);
  } catch (e) {
    parentPort!.postMessage({ id: req.id, type: 'error', message: (e as Error).message });
  }
});
