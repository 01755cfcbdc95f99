/**
 * CNN feature extraction with TensorFlow.js graph models loaded from disk (model.json + weight files)
 * through a small fs loader, so it works on every backend (tf.loadGraphModel('file://') needs tfjs-node).
 *
 * Default backbone: the MobileNetV2 1.4 (224 x 224) inside the npm package nsfwjs 4.4.0
 * (dist/models/mobilenet_v2_mid, base64 in UMD modules). It is TF-Hub's imagenet/mobilenet_v2_140_224
 * feature-vector model, ImageNet-trained, fine-tuned by the nsfwjs project as the trunk of a 5-way
 * image-content classifier. Its 1792-d pooled feature vector (`feature_vector/SpatialSqueeze`) is the
 * default layer. Inputs are RGB in [0, 1]; the graph scales them to [-1, 1] itself.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { threadId } from 'node:worker_threads';
import { loadGraphModel, type GraphModel } from '@tensorflow/tfjs-converter';
import { tf } from './backend.ts';

export interface FeatureModelSpec {
  /** Stable id used in cache keys. */
  id: string;
  /** Folder holding model.json and its weight files. */
  dir: string;
  /** Graph node whose output is the feature layer; 4-D outputs are spatially averaged. */
  layer: string;
  inputSize: number;
}

export const NSFWJS_MOBILENET_LAYER =
  'StatefulPartitionedCall/sequential/keras_layer/StatefulPartitionedCall/StatefulPartitionedCall/StatefulPartitionedCall/predict/feature_vector/SpatialSqueeze';
export const NSFWJS_MOBILENET_ID = 'nsfwjs-4.4.0-mobilenet_v2_140_224';

/**
 * Writes the nsfwjs MobileNetV2 as model.json + weights.bin under `dir` (once; later calls only check).
 * Returns the spec of the default backbone.
 */
export function ensureDefaultModel(dataDir: string): FeatureModelSpec {
  const dir = path.join(dataDir, 'models', NSFWJS_MOBILENET_ID);
  const spec = { id: NSFWJS_MOBILENET_ID, dir, layer: NSFWJS_MOBILENET_LAYER, inputSize: 224 };
  if (fs.existsSync(path.join(dir, 'model.json')) && fs.existsSync(path.join(dir, 'weights.bin'))) return spec;
  const require = createRequire(import.meta.url);
  // the package's exports hide dist/models; find its folder from its main entry
  let pkg = path.dirname(require.resolve('nsfwjs'));
  while (path.basename(pkg) !== 'nsfwjs' && pkg !== path.dirname(pkg)) pkg = path.dirname(pkg);
  const base = path.join(pkg, 'dist', 'models', 'mobilenet_v2_mid');
  const model = require(path.join(base, 'model.min.js')) as { modelTopology: unknown; weightsManifest: { paths: string[]; weights: unknown[] }[]; format: string; generatedBy: string; convertedBy: string };
  const shards = model.weightsManifest[0].paths.map((p) => Buffer.from(require(path.join(base, `${p}.min.js`)) as string, 'base64'));
  fs.mkdirSync(dir, { recursive: true });
  writeFileAtomic(path.join(dir, 'weights.bin'), Buffer.concat(shards));
  const json = { ...model, weightsManifest: [{ paths: ['weights.bin'], weights: model.weightsManifest[0].weights }] };
  // model.json last: a concurrent reader sees both files complete or not at all
  writeFileAtomic(path.join(dir, 'model.json'), JSON.stringify(json));
  return spec;
}

/**
 * Writes a file whole by renaming a temporary file of this process and thread over it. The temporary name is
 * unique, so the two compute workers writing the same cache entry at once (both cores start cold) cannot
 * rename each other's file away; the last rename wins with identical content.
 */
export function writeFileAtomic(file: string, data: string | NodeJS.ArrayBufferView): void {
  const tmp = `${file}.${process.pid}-${threadId}-${crypto.randomBytes(4).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

/** Loads a graph model from a folder with the fs loader. */
export async function loadModel(spec: FeatureModelSpec): Promise<GraphModel> {
  const json = JSON.parse(fs.readFileSync(path.join(spec.dir, 'model.json'), 'utf8'));
  const manifest = json.weightsManifest as { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  const buffers = manifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(spec.dir, path.basename(p)))));
  const data = Buffer.concat(buffers);
  const weightData = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  return loadGraphModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs: manifest.flatMap((g) => g.weights),
      weightData,
      format: json.format,
      generatedBy: json.generatedBy,
      convertedBy: json.convertedBy,
    }),
  );
}

/** Feature vectors (B x D) of a batch of images (B x H x W x 3 in [0, 1]). Spatially averaged when 4-D. */
export function featuresOf(model: GraphModel, spec: FeatureModelSpec, images: tf.Tensor4D): tf.Tensor2D {
  return tf.tidy(() => {
    const out = model.execute(images, spec.layer) as tf.Tensor;
    return (out.rank === 4 ? tf.mean(out, [1, 2]) : out) as tf.Tensor2D;
  });
}

/** Content hash of an image file (feature cache key). */
export function imageHash(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}
