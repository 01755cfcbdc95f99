/**
 * Features of a stimulus set, computed once per (model, layer, image content) and cached on disk as raw
 * float32 files: `<cacheDir>/<modelId>/<layerHash>/<imageSha256>.f32`.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import type { GraphModel } from '@tensorflow/tfjs-converter';
import { tf } from './backend.ts';
import { featuresOf, imageHash, type FeatureModelSpec } from './feature-model.ts';
import { loadImage } from './image-input.ts';

export interface FeatureProgress {
  done: number;
  total: number;
  cached: number;
}

/** Folder of one (model, layer) in the cache. */
export function cacheFolder(cacheDir: string, spec: FeatureModelSpec): string {
  const layer = crypto.createHash('sha256').update(spec.layer).digest('hex').slice(0, 16);
  return path.join(cacheDir, spec.id.replace(/[^A-Za-z0-9._-]/g, '_'), layer);
}

/**
 * Features (files.length x D, row-major) of image files, from the cache where present, otherwise computed
 * one image at a time and cached. Reports progress after each image.
 */
export async function computeFeatures(
  model: GraphModel,
  spec: FeatureModelSpec,
  files: string[],
  cacheDir: string,
  onProgress: (p: FeatureProgress) => void = () => {},
): Promise<{ features: Float32Array; dim: number }> {
  const folder = cacheFolder(cacheDir, spec);
  fs.mkdirSync(folder, { recursive: true });
  const rows: Float32Array[] = [];
  let cached = 0;
  for (let i = 0; i < files.length; i++) {
    const file = path.join(folder, `${imageHash(files[i])}.f32`);
    let row: Float32Array;
    if (fs.existsSync(file)) {
      const buf = fs.readFileSync(file);
      row = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
      cached++;
    } else {
      const pixels = await loadImage(files[i], spec.inputSize);
      const out = tf.tidy(() => featuresOf(model, spec, tf.tensor4d(pixels, [1, spec.inputSize, spec.inputSize, 3])));
      row = out.dataSync() as Float32Array;
      out.dispose();
      const tmp = `${file}.tmp`;
      fs.writeFileSync(tmp, Buffer.from(row.buffer, row.byteOffset, row.byteLength));
      fs.renameSync(tmp, file);
    }
    rows.push(row);
    onProgress({ done: i + 1, total: files.length, cached });
  }
  const dim = rows[0]?.length ?? 0;
  const features = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => features.set(r, i * dim));
  return { features, dim };
}
