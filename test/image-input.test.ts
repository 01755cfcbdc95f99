/** CNN input preprocessing: the backbone's own bilinear resize (aligned corners), checked against Pillow + scipy and TensorFlow.js. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { loadImage, resizeBilinearAligned } from '../server/src/compute/image-input.ts';
import { demoStimuli, root, tmpDir } from './helpers.ts';

const SIZE = 224;

test('loadImage equals an independent decode and resize (Pillow, grey compositing, scipy bilinear with aligned corners)', async () => {
  const dir = tmpDir();
  // a wide and a tall image with transparency, besides demo emoji (square, transparent backgrounds)
  const wide = path.join(dir, 'wide.png');
  const tall = path.join(dir, 'tall.png');
  const gradient = (w: number, h: number) => Buffer.from(Array.from({ length: w * h * 4 }, (_, i) => ((i >> 2) % w) * 7 + (i % 4) * 40 + (i % 4 === 3 ? (((i >> 2) / w) | 0) * 9 : 0)).map((v) => v % 256));
  await sharp(gradient(30, 12), { raw: { width: 30, height: 12, channels: 4 } }).png().toFile(wide);
  await sharp(gradient(9, 20), { raw: { width: 9, height: 20, channels: 4 } }).png().toFile(tall);
  const files = [...demoStimuli.slice(0, 6).map((s) => path.join(root, 'stimuli/demo', s.file)), wide, tall];
  const py = spawnSync('/usr/bin/python3', [path.join(root, 'test/reference/image_resize.py')], { input: JSON.stringify({ files, size: SIZE }), encoding: 'utf8', maxBuffer: 512 * 1024 * 1024 });
  assert.equal(py.status, 0, py.stderr);
  const ref: number[][] = JSON.parse(py.stdout).images;
  for (const [i, f] of files.entries()) {
    const ours = await loadImage(f, SIZE);
    assert.equal(ours.length, SIZE * SIZE * 3);
    let maxErr = 0;
    for (let k = 0; k < ours.length; k++) maxErr = Math.max(maxErr, Math.abs(ours[k] - ref[i][k]));
    // compositing rounds to whole 8-bit levels in both decoders, possibly differently: one level
    assert.ok(maxErr <= 1.01 / 255, `${path.basename(f)}: max difference ${maxErr * 255} levels`);
  }
});

test('the resize is TensorFlow.js resizeBilinear with aligned corners (what nsfwjs feeds the backbone)', async () => {
  await tf.setBackend('cpu');
  const H = 17;
  const W = 11;
  const src = Float32Array.from({ length: H * W * 3 }, (_, i) => Math.sin(i * 0.37) * 0.5 + 0.5);
  for (const [h, w] of [[SIZE, SIZE], [40, 25], [5, 9]]) {
    const ours = resizeBilinearAligned(src, H, W, h, w);
    const theirs = tf.tidy(() => tf.image.resizeBilinear(tf.tensor3d(src, [H, W, 3]), [h, w], true).dataSync());
    let maxErr = 0;
    for (let k = 0; k < ours.length; k++) maxErr = Math.max(maxErr, Math.abs(ours[k] - theirs[k]));
    assert.ok(maxErr < 1e-5, `${h}x${w}: ${maxErr}`);
  }
  // the earlier input (sharp's Lanczos resize) differs by far more than the tolerance above: the check can fail
  const file = path.join(root, 'stimuli/demo', demoStimuli[0].file);
  const grey = { r: 128, g: 128, b: 128 };
  const lanczos = await sharp(file).flatten({ background: grey }).resize(SIZE, SIZE, { fit: 'contain', background: grey }).removeAlpha().raw().toBuffer();
  const ours = await loadImage(file, SIZE);
  const maxLevels = lanczos.reduce((m, v, k) => Math.max(m, Math.abs(v - 255 * ours[k])), 0);
  assert.ok(maxLevels > 10, `Lanczos vs bilinear: ${maxLevels} levels`);
});
