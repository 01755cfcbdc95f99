/**
 * A large stimulus set for the scale benchmark, made from the 72 demo emoji (Noto Emoji, Apache 2.0):
 * `n` images in 4 categories, body, face and object (one demo image of that category, hue-rotated,
 * cropped, scaled and placed on a grey field of random shade) and scene (two or three demo images of any
 * category composited on one field). Written with a manifest to a stimulus folder outside the repository.
 */
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import type { Stimulus } from '@sharedlens/shared';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { demoStimuli, root } from './support.ts';

const SIZE = 160;
const CATEGORIES = ['body', 'face', 'object', 'scene'];

/** One demo image recoloured (hue turned by `hue` degrees), cropped to `crop` of its side, scaled to `px`. */
async function variant(file: string, hue: number, crop: number, px: number, r: () => number): Promise<Buffer> {
  const side = Math.max(16, Math.round(64 * crop));
  const left = Math.floor(r() * (64 - side + 1));
  const top = Math.floor(r() * (64 - side + 1));
  return sharp(path.join(root, 'stimuli/demo', file)).extract({ left, top, width: side, height: side }).modulate({ hue }).resize(px, px).png().toBuffer();
}

/** Writes the set `setId` with `n` images under `stimulusDir/setId` (skips files already there); returns its stimuli. */
export async function makeScaleSet(stimulusDir: string, setId: string, n: number, seed = 1): Promise<Stimulus[]> {
  const dir = path.join(stimulusDir, setId);
  fs.mkdirSync(path.join(dir, 'images'), { recursive: true });
  const r = mulberry32(seed);
  const byCat = (c: string) => demoStimuli.filter((s) => s.category === c);
  const stimuli: Stimulus[] = [];
  for (let i = 0; i < n; i++) {
    const category = CATEGORIES[i % 4];
    const parts = category === 'scene' ? [0, 1, 2].slice(0, 2 + Math.floor(r() * 2)).map(() => demoStimuli[Math.floor(r() * demoStimuli.length)]) : [byCat(category)[Math.floor(r() * 24)]];
    const shade = 90 + Math.floor(r() * 80);
    const layers = [];
    for (const p of parts) {
      const px = Math.round((parts.length > 1 ? 0.35 : 0.5 + 0.4 * r()) * SIZE);
      const input = await variant(p.file, Math.floor(r() * 360), 0.7 + 0.3 * r(), px, r);
      layers.push({ input, left: Math.floor(r() * (SIZE - px)), top: Math.floor(r() * (SIZE - px)) });
    }
    const file = `images/${category}-${i}.png`;
    await sharp({ create: { width: SIZE, height: SIZE, channels: 3, background: { r: shade, g: shade, b: shade } } }).composite(layers).png().toFile(path.join(dir, file));
    stimuli.push({ id: `${category}-${i}`, file, category, tags: parts.map((p) => p.id) });
  }
  const manifest = { id: setId, description: `scale benchmark: ${n} images made from the demo emoji`, license: 'Noto Emoji, Apache License 2.0', stimuli };
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
  return stimuli;
}
