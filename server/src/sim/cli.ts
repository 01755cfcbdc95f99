/**
 * `npm run sim -- [--url URL] [--token T] [--channels N] [--trials N] [--fast] [--seed N] [--set ID]`
 * Streams a simulated session into a running server.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../config.ts';
import { loadStimulusSets } from '../stimulus-sets.ts';
import { runSimRig } from './sim-rig.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const config = loadConfig(root);
const { values } = parseArgs({
  options: {
    url: { type: 'string', default: `http://${config.host}:${config.port}` },
    token: { type: 'string', default: Object.keys(config.rigTokens)[0] },
    channels: { type: 'string', default: String(config.sim.channels) },
    trials: { type: 'string', default: 'Infinity' },
    seed: { type: 'string', default: String(config.sim.seed) },
    set: { type: 'string', default: 'demo' },
    fast: { type: 'boolean', default: false },
    'category-only': { type: 'boolean', default: false },
  },
});
const set = loadStimulusSets(config.stimulusDir).sets.get(values.set);
if (!set) {
  console.error(`sim: unknown stimulus set "${values.set}" in ${config.stimulusDir}`);
  process.exit(2);
}
const channels = Number(values.channels);
if (!Number.isInteger(channels) || channels < 1 || channels > 8192) {
  console.error(`sim: --channels must be an integer 1..8192, got ${values.channels}`);
  process.exit(2);
}
// neurons driven by CNN features (the ground truth of the encoding models) unless --category-only
let features: { features: Float32Array; dim: number } | undefined;
if (!values['category-only'] && config.compute.features) {
  const { computeClientFor } = await import('../workers/compute-client.ts');
  const { lastValueFrom } = await import('rxjs');
  const client = computeClientFor(config.compute, config.dataDir, 1);
  console.log('sim: computing the CNN features of the stimuli (cached after the first run)...');
  const last = await lastValueFrom(client.features$(set.manifest.stimuli.map((s) => path.join(set.dir, s.file))));
  await client.close();
  if (last.type === 'features') features = { features: last.features, dim: last.dim };
}
const stop = new AbortController();
process.on('SIGINT', () => stop.abort());
process.on('SIGTERM', () => stop.abort());
const started = Date.now();
runSimRig({
  url: values.url,
  token: values.token,
  stimuli: set.manifest.stimuli,
  stimulusSetId: set.manifest.id,
  channels,
  trials: Number(values.trials),
  onMs: config.sim.onMs,
  offMs: config.sim.offMs,
  abortRate: config.sim.abortRate,
  seed: Number(values.seed),
  reconnectAfterTrials: config.sim.reconnectAfterTrials,
  fast: values.fast,
  signal: stop.signal,
  ...(features ? { features } : {}),
  onTrial: (t, id) => {
    if ((t + 1) % 25 === 0) console.log(`sim: session ${id}: ${t + 1} trials in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  },
})
  .then((r) => {
    console.log(`sim: session ${r.sessionId} ended after ${r.trials} trials (${r.aborted} aborted, ${r.client.reports.resumes} reconnects)`);
    r.client.close();
    process.exit(0);
  })
  .catch((e: Error) => {
    console.error(`sim: ${e.message}`);
    process.exit(1);
  });
