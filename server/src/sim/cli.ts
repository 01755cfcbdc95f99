/**
 * `npm run sim -- [--url URL] [--token T] [--channels N] [--trials N] [--fast] [--seed N] [--set ID]`
 * Streams a simulated session into a running server. `--help` lists the options.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../config.ts';
import { parseCli } from '../terminal/cli-help.ts';
import { progressBar } from '../terminal/progress-bar.ts';
import { loadStimulusSets } from '../stimulus-sets.ts';
import { runSimRig } from './sim-rig.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const config = loadConfig(root);
const usage = `
npm run sim -- [options]

Streams a simulated recording session (synthetic neurons, Poisson spike counts, aborted trials and one
planned reconnect) into a running sharedlens server, as a rig would. Start the server first (npm start,
or DEMO=0 npm start for the server alone).

Options:
  --url URL          server to stream to (default http://${config.host}:${config.port})
  --token T          rig token (default: the first of rigTokens in the configuration)
  --channels N       number of channels, 1..8192 (default ${config.sim.channels}; try 384)
  --trials N         trials before the session ends (default: until stopped with Ctrl-C)
  --seed N           random seed of the neurons and the stimulus order (default ${config.sim.seed})
  --set ID           stimulus set (default demo)
  --fast             as fast as the server accepts instead of the rig's pace
  --category-only    neurons tuned to categories only (no CNN features needed)
  -h, --help         this text

The simulated rig drops its connection once after ${config.sim.reconnectAfterTrials || 'N'} trials on purpose (sim.reconnectAfterTrials in
the configuration; 0 turns it off) to show that a rig resumes its session.
`;
const { values } = parseCli('sim', usage, {
    url: { type: 'string', default: `http://${config.host}:${config.port}` },
    token: { type: 'string', default: Object.keys(config.rigTokens)[0] },
    channels: { type: 'string', default: String(config.sim.channels) },
    trials: { type: 'string', default: 'Infinity' },
    seed: { type: 'string', default: String(config.sim.seed) },
    set: { type: 'string', default: 'demo' },
    fast: { type: 'boolean', default: false },
    'category-only': { type: 'boolean', default: false },
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
  const { lastValueFrom, tap } = await import('rxjs');
  const client = computeClientFor(config.compute, config.dataDir, 1);
  const bar = progressBar('sim: CNN features of the stimuli (cached after the first run)');
  const last = await lastValueFrom(client.features$(set.manifest.stimuli.map((s) => path.join(set.dir, s.file))).pipe(tap((e) => e.type === 'progress' && bar.update(e.done, e.total, e.cached ? `${e.cached} cached` : ''))));
  bar.done();
  await client.close();
  if (last.type === 'features') features = { features: last.features, dim: last.dim };
}
const stop = new AbortController();
// stop at once when asked, or when the server that started this rig (npm start) is gone
const quit = (why: string) => {
  if (stop.signal.aborted) return;
  console.log(`sim: stopping (${why})`);
  stop.abort();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGINT', () => quit('SIGINT'));
process.on('SIGTERM', () => quit('SIGTERM'));
process.on('disconnect', () => quit('the server that started it has exited'));
const planned = config.sim.reconnectAfterTrials;
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
    if (planned > 0 && t + 1 === planned) console.log(`sim: dropping the connection on purpose after ${planned} trials to show that a rig resumes its session (the server will log "rig disconnected"; sim.reconnectAfterTrials 0 turns this off)`);
    if (planned > 0 && t === planned) console.log(`sim: reconnected and resumed session ${id}`);
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
