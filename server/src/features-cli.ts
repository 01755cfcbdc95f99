/**
 * `npm run features -- [--set ID]`: computes (or checks) the cached CNN features of a stimulus set, with a
 * progress line. The server and the simulated rig do the same on demand; this warms the cache ahead of a
 * session.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { lastValueFrom, tap } from 'rxjs';
import { loadConfig } from './config.ts';
import { loadStimulusSets } from './stimulus-sets.ts';
import { computeClientFor } from './workers/compute-client.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const config = loadConfig(root);
const { values } = parseArgs({ options: { set: { type: 'string', default: 'demo' } } });
const set = loadStimulusSets(config.stimulusDir).sets.get(values.set);
if (!set) {
  console.error(`features: unknown stimulus set "${values.set}" in ${config.stimulusDir}`);
  process.exit(2);
}
const client = computeClientFor(config.compute, config.dataDir, 1);
const started = Date.now();
// a progress line rewritten in place (a dozen characters of ANSI; no progress-bar dependency for this)
const bar = (done: number, total: number) => `[${'#'.repeat(Math.round((30 * done) / total)).padEnd(30)}] ${done}/${total}`;
try {
  const last = await lastValueFrom(
    client.features$(set.manifest.stimuli.map((s) => path.join(set.dir, s.file))).pipe(
      tap((e) => e.type === 'progress' && process.stderr.write(`\rfeatures ${values.set}: ${bar(e.done, e.total)} (${e.cached} cached)`)),
    ),
  );
  process.stderr.write('\n');
  if (last.type === 'features') console.log(`features ${values.set}: ${set.manifest.stimuli.length} x ${last.dim} from ${last.modelId} on ${last.backend} in ${((Date.now() - started) / 1000).toFixed(1)} s; cache ${config.compute.cacheDir}`);
} catch (e) {
  console.error(`\nfeatures: ${(e as Error).message}`);
  process.exitCode = 1;
} finally {
  await client.close();
}
