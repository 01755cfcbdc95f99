/**
 * `npm run export -- SESSION_ID [--out FILE.nwb]`: writes a recorded session as an NWB 2.6 file (default
 * SESSION_ID.nwb in the current folder): counts, trials, images, statistics. Models, readout weights and
 * maps come with the export of a running server (GET /api/sessions/:id/export.nwb) once the session or a
 * replay of it has them.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../config.ts';
import { parseCli } from '../terminal/cli-help.ts';
import { Recorder } from '../sinks/recorder.ts';
import { loadStimulusSets } from '../stimulus-sets.ts';
import { exportRecorded } from './export-recorded.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const config = loadConfig(root);
const usage = `
npm run export -- SESSION_ID [--out FILE.nwb]

Writes a recorded session as an NWB 2.6 file: counts, trials, images, statistics. Models, readout weights
and maps come with the export of a running server (GET /api/sessions/SESSION_ID/export.nwb).
npm run replay lists the recorded sessions.

Options:
  --out FILE.nwb   where to write (default SESSION_ID.nwb in the current folder)
  -h, --help       this text
`;
const { values, positionals } = parseCli('export', usage, { out: { type: 'string' } }, process.argv.slice(2), true);
const id = positionals[0];
const recorder = new Recorder({ dataDir: config.dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
if (!id || !Recorder.isSessionId(id) || !recorder.meta(id)) {
  console.error(id ? `export: no recorded session "${id}" in ${recorder.root} (npm run replay lists them)` : 'usage: npm run export -- SESSION_ID [--out FILE.nwb]');
  process.exit(2);
}
const file = path.resolve(values.out ?? `${id}.nwb`);
const { sets } = loadStimulusSets(config.stimulusDir);
const t0 = performance.now();
try {
  const r = await exportRecorded({ recorder, sessionId: id, file, sets, pipeline: config.pipeline, about: config.nwb });
  for (const n of r.notes) console.log(`export: note: ${n}`);
  console.log(`export: ${r.file} (${(r.bytes / 1e6).toFixed(1)} MB): ${r.trials} trials, ${r.bins ? `${r.bins} bins` : `${r.trialCountRows} per-trial count rows`}, ${r.images} images, in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
} catch (e) {
  console.error(`export: ${(e as Error).message}`);
  process.exit(1);
}
