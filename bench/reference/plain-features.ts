/**
 * The baseline of the scale benchmark's features: a plain TF.js wasm script, as a lab would write one,
 * that extracts the same MobileNetV2 features in batches of 8 (sharp decoding, one process, no cache).
 * Usage: plain-features.ts MODEL_DIR LAYER INPUT_SIZE FILE_LIST_JSON  -> prints {"seconds" (extraction),
 * "totalSeconds" (from the script's start: imports, backend, model load and extraction), "images", "dim"}
 */
const start = performance.now();
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { loadGraphModel } from '@tensorflow/tfjs-converter';

const [modelDir, layer, sizeArg, listFile] = process.argv.slice(2);
const size = Number(sizeArg);
const files = JSON.parse(fs.readFileSync(listFile, 'utf8')) as string[];
const BATCH = 8;

await tf.setBackend('wasm');
await tf.ready();
const json = JSON.parse(fs.readFileSync(path.join(modelDir, 'model.json'), 'utf8'));
const data = fs.readFileSync(path.join(modelDir, 'weights.bin'));
const model = await loadGraphModel(
  tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: json.weightsManifest[0].weights, weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength), format: json.format }),
);
const decode = async (file: string) => {
  const { data: px } = await sharp(file).flatten({ background: { r: 128, g: 128, b: 128 } }).resize(size, size, { fit: 'contain', background: { r: 128, g: 128, b: 128 } }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return Float32Array.from(px, (v) => v / 255);
};
const t0 = performance.now();
let dim = 0;
for (let i = 0; i < files.length; i += BATCH) {
  const chunk = files.slice(i, i + BATCH);
  const pixels = await Promise.all(chunk.map(decode));
  const batch = new Float32Array(chunk.length * size * size * 3);
  pixels.forEach((p, k) => batch.set(p, k * p.length));
  const out = tf.tidy(() => model.execute(tf.tensor4d(batch, [chunk.length, size, size, 3]), layer) as tf.Tensor);
  const feats = await out.data();
  dim = feats.length / chunk.length;
  out.dispose();
}
console.log(JSON.stringify({ seconds: (performance.now() - t0) / 1000, totalSeconds: (performance.now() - start) / 1000, images: files.length, dim, backend: tf.getBackend() }));
