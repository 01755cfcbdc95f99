/**
 * `npm run features -- [--set ID]`: computes (or checks) the cached CNN features of a stimulus set, with a
 * progress line. The server and the simulated rig do the same on demand; this warms the cache ahead of a
 * session.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { lastValueFrom, tap } from 'rxjs';
import { loadConfig } from './config.ts';
import { parseCli } from './terminal/cli-help.ts';
import { progressBar } from './terminal/progress-bar.ts';
import { loadStimulusSets } from './stimulus-sets.ts';
import { computeClientFor } from './workers/compute-client.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const config = loadConfig(root);
const usage = `
npm run features -- [--set ID]

Computes the CNN features of a stimulus set (MobileNetV2 in TensorFlow.js, ${config.compute.backend} backend) and
caches them in ${config.compute.cacheDir}, so a session's encoding models start at once.

Options:
  --set ID     stimulus set under ${config.stimulusDir} (default demo)
  -h, --help   this text
`;
const { values } = parseCli('features', usage, { set: { type: 'string', default: 'demo' } });
const set = loadStimulusSets(config.stimulusDir).sets.get(values.set);
if (!set) {
  console.error(`features: unknown stimulus set "${values.set}" in ${config.stimulusDir}`);
  process.exit(2);
}
const client = computeClientFor(config.compute, config.dataDir, 1);
const started = Date.now();
const bar = progressBar(`features ${values.set}:`);
try {
  const last = await lastValueFrom(
    client.features$(set.manifest.stimuli.map((s) => path.join(set.dir, s.file))).pipe(
      tap((e) => e.type === 'progress' && bar.update(e.done, e.total, `(${e.cached} cached)`)),
    ),
  );
  bar.done();
  if (last.type === 'features') console.log(`features ${values.set}: ${set.manifest.stimuli.length} x ${last.dim} from ${last.modelId} on ${last.backend} in ${((Date.now() - started) / 1000).toFixed(1)} s; cache ${config.compute.cacheDir}`);
} catch (e) {
  console.error(`\nfeatures: ${(e as Error).message}`);
  process.exitCode = 1;
} finally {
  await client.close();
}
