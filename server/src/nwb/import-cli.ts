/**
 * `npm run import -- FILE.nwb [--set SET_ID] [--id SESSION_ID] [--bin-ms N] [--latency-ms N] [--window-ms N]
 * [--baseline-ms N]`: turns an NWB file into a recorded sharedlens session (its images become a stimulus
 * set unless --set names a registered one), replays it through the pipeline and prints its statistics.
 * A running server lists it with the other sessions and replays it from the dashboard.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../config.ts';
import { parseCli } from '../terminal/cli-help.ts';
import { Recorder } from '../sinks/recorder.ts';
import { importNwb } from './import-session.ts';
import { recordedFrames } from './export-recorded.ts';
import { statisticsOf } from './session-analysis.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const config = loadConfig(root);
const opt = { type: 'string' } as const;
const usage = `
npm run import -- FILE.nwb [options]

Turns an NWB file into a recorded sharedlens session (its images become a stimulus set unless --set names a
registered one), replays it through the pipeline and prints its statistics. A running server lists it with
the other sessions and replays it from the dashboard.

Options:
  --set SET_ID       a registered stimulus set to use instead of the file's images
  --id SESSION_ID    the new session's id
  --bin-ms N         bin width of the counts (ms)
  --latency-ms N     response latency after onset (ms)
  --window-ms N      response window (ms)
  --baseline-ms N    baseline window before onset (ms)
  -h, --help         this text
`;
const { values, positionals } = parseCli('import', usage, { set: opt, id: opt, 'bin-ms': opt, 'latency-ms': opt, 'window-ms': opt, 'baseline-ms': opt }, process.argv.slice(2), true);
const file = positionals[0];
if (!file) {
  console.error('usage: npm run import -- FILE.nwb [--set SET_ID] [--id SESSION_ID] [--bin-ms N] [--latency-ms N] [--window-ms N] [--baseline-ms N]');
  process.exit(2);
}
const timing: Record<string, number> = {};
for (const [flag, key] of [['bin-ms', 'binWidthMs'], ['latency-ms', 'latencyMs'], ['window-ms', 'responseWindowMs'], ['baseline-ms', 'baselineWindowMs']] as const) {
  const v = values[flag];
  if (v === undefined) continue;
  if (!(Number(v) >= 0)) {
    console.error(`import: --${flag} must be a number of milliseconds, got ${v}`);
    process.exit(2);
  }
  timing[key] = Number(v);
}
if (values.id !== undefined && !Recorder.isSessionId(values.id)) {
  console.error(`import: --id must be letters, digits, - or _ (at most 100), got ${values.id}`);
  process.exit(2);
}
const recorder = new Recorder({ dataDir: config.dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
try {
  const r = await importNwb({ file: path.resolve(file), recorder, stimulusDir: config.stimulusDir, ...(values.set ? { setId: values.set } : {}), ...(values.id ? { sessionId: values.id } : {}), timing });
  console.log(`import: session ${r.sessionId}: ${r.channels} channels, ${r.trials} trials (${r.counts} counts), ${r.records} records; stimulus set ${r.stimulusSetId}${r.setCreated ? ' (written from the file)' : ''}`);
  const meta = recorder.meta(r.sessionId)!;
  const snap = await statisticsOf(recordedFrames(recorder, r.sessionId), config.pipeline, { sessionId: r.sessionId, startedAt: meta.startedAt, state: meta.state });
  if (!snap) console.log('import: the replay completed no trial');
  else {
    console.log(`replay: ${snap.trialsCompleted} trials, ${snap.trialsAborted} aborted, categories ${snap.categories.join(', ')}`);
    const f = (v: number | null) => (v === null ? '    -' : v.toFixed(2).padStart(5));
    console.log("channel        trials preferred   SI    d'  ceiling");
    for (const c of snap.channels) console.log(`${c.label.slice(0, 14).padEnd(14)} ${String(c.nTrials).padStart(6)} ${(c.preferredCategory ?? '-').padEnd(9)} ${f(c.selectivityIndex)} ${f(c.dPrime)} ${f(c.noiseCeiling)}`);
  }
} catch (e) {
  console.error(`import: ${(e as Error).message}`);
  process.exit(1);
} finally {
  recorder.close();
}
