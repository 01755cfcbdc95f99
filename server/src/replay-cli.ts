/**
 * `npm run replay -- SESSION_ID [--speed N|max] [--json]`: replays a recorded session through the same
 * pipeline, offline, and prints its statistics (`--json`: the full snapshot). `npm run replay` alone lists
 * the recorded sessions. A running server replays through the dashboard or POST /api/sessions/:id/replay.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BehaviorSubject, filter, last, map, tap } from 'rxjs';
import { loadConfig } from './config.ts';
import { parseCli } from './terminal/cli-help.ts';
import { buildSnapshot } from './compute/session-snapshot.ts';
import { sessionPipeline } from './pipeline/session-pipeline.ts';
import { Recorder } from './sinks/recorder.ts';
import { replayRecords, type Replayed } from './sources/replay.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const config = loadConfig(root);
const usage = `
npm run replay -- [SESSION_ID] [options]

Replays a recorded session through the same pipeline as a live one, offline, and prints its statistics.
Without SESSION_ID: lists the recorded sessions in ${config.dataDir}. A running server replays from the
dashboard (Sessions & replay) or with POST /api/sessions/SESSION_ID/replay.

Options:
  --speed N|max   N times the recorded pace, or max: as fast as possible (default max)
  --json          print the full statistics snapshot as JSON
  -h, --help      this text
`;
const { values, positionals } = parseCli('replay', usage, { speed: { type: 'string', default: 'max' }, json: { type: 'boolean', default: false } }, process.argv.slice(2), true);
const recorder = new Recorder({ dataDir: config.dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
const id = positionals[0];
if (!id) {
  const list = recorder.list();
  if (!list.length) console.log(`no recorded sessions in ${recorder.root}`);
  for (const s of list) console.log(`${s.sessionId}  ${s.state.padEnd(11)} ${s.channels} channels  rig ${s.rigId}  subject ${s.subject}  started ${s.startedAt}`);
  process.exit(0);
}
if (!Recorder.isSessionId(id) || !recorder.meta(id)) {
  console.error(`replay: no recorded session "${id}" in ${recorder.root} (npm run replay lists them)`);
  process.exit(2);
}
const speed = values.speed === 'max' ? Infinity : Number(values.speed);
if (!(speed > 0)) {
  console.error(`replay: --speed must be a positive number or "max", got ${values.speed}`);
  process.exit(2);
}
const source = recorder.source(id);
if (source.tornBytes) console.error(`replay: the log ends in a torn record of ${source.tornBytes} bytes; it is skipped`);
for (const d of source.damaged) console.error(`replay: unreadable bytes ${d.fromByte}-${d.toByte} are skipped (npm run verify -- ${id})`);
const meta = recorder.meta(id)!;
const rejected: Record<string, number> = {};
let seqGaps = 0;
replayRecords(source, { speed$: new BehaviorSubject(speed), paused$: new BehaviorSubject(false) })
  .pipe(
    tap((r) => {
      if (!values.json && Number.isFinite(speed) && r.index % 500 === 0) console.log(`replay: record ${r.index + 1}/${source.total}`);
      if (!('note' in r)) return;
      if (r.note.kind === 'gap') seqGaps++;
      else rejected[r.note.code] = (rejected[r.note.code] ?? 0) + 1;
    }),
    filter((r): r is Extract<Replayed, { frame: unknown }> => 'frame' in r),
    map(({ frame }) => frame),
    sessionPipeline(config.pipeline),
    last(),
  )
  .subscribe({
    next: (u) => {
      const snap = buildSnapshot(u.state, { sessionId: id, startedAt: meta.startedAt, state: meta.state, lastSeq: 0, seqGaps, rejected }, values.json);
      if (values.json) return console.log(JSON.stringify(snap, null, 2));
      console.log(`session ${id}: ${snap.trialsCompleted} trials, ${snap.trialsAborted} aborted, categories ${snap.categories.join(', ')}`);
      const f = (v: number | null) => (v === null ? '    -' : v.toFixed(2).padStart(5));
      console.log('channel        trials preferred   SI    d\'  ceiling');
      for (const c of snap.channels) console.log(`${c.label.slice(0, 14).padEnd(14)} ${String(c.nTrials).padStart(6)} ${(c.preferredCategory ?? '-').padEnd(9)} ${f(c.selectivityIndex)} ${f(c.dPrime)} ${f(c.noiseCeiling)}`);
    },
    error: (e: Error) => {
      console.error(`replay: ${e.message}`);
      process.exit(1);
    },
  });
