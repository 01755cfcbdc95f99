/**
 * `npm run bench -- nwb`: NWB export and import of a 384-channel session at 1 ms bins (Poisson counts at
 * 10 spikes/s, a trial every 400 ms, 5% aborted). Sessions of BENCH_NWB_MINUTES (default 60: the hour the
 * figures are quoted for) and a third of that are generated straight into a recorder; export, import and the baseline (the statistics replay of the
 * same log, the cheapest full pass over it) each run in a child process of their own, so peak RSS is
 * theirs alone. Times are scaled to one hour of session; peak RSS of both lengths shows whether memory
 * grows with length. sizeVsLog: NWB file bytes / session log bytes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { sessionStartSchema, type Frame } from '@sharedlens/shared';
import { Recorder } from '../server/src/sinks/recorder.ts';
import { loadStimulusSets } from '../server/src/stimulus-sets.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { exportRecorded, recordedFrames } from '../server/src/nwb/export-recorded.ts';
import { importNwb } from '../server/src/nwb/import-session.ts';
import { statisticsOf } from '../server/src/nwb/session-analysis.ts';
import { root, tmpDir, demoStimuli } from './support.ts';

const C = 384;
const FRAME_BINS = 50;
const pipeline = { psthBinMs: 10 };

/** Writes a session of `minutes` into a recorder under `dataDir`; returns its id. */
function generate(dataDir: string, minutes: number): string {
  const recorder = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
  const id = `bench-nwb-${Math.round(minutes * 60)}s`;
  const start = sessionStartSchema.parse({
    rigId: 'bench-rig',
    subject: 'B1',
    channels: Array.from({ length: C }, (_, i) => ({ id: `ch${i}`, label: `channel ${i}`, area: i % 2 ? 'IT' : 'V4' })),
    stimulusSetId: 'demo',
    timing: { responseWindowMs: 200, latencyMs: 50, baselineWindowMs: 100, binWidthMs: 1 },
  });
  recorder.create({ type: 'session:start', sessionId: id, startedAt: '2026-01-01T00:00:00.000Z', start, stimuli: demoStimuli }, 0);
  const rand = mulberry32(minutes * 1000 + 1);
  const totalBins = Math.round(minutes * 60_000);
  let seq = 0;
  let trial = 0;
  const rec = (frame: Frame) => recorder.append({ atMs: 0, frame });
  for (let b0 = 0; b0 < totalBins; b0 += FRAME_BINS) {
    // trials every 400 ms: onset at 100 ms into the period, offset 200 ms later
    if (b0 % 400 === 100 - (100 % FRAME_BINS) && b0 + 400 < totalBins) {
      const s = demoStimuli[Math.floor(rand() * demoStimuli.length)];
      rec({ type: 'stim:onset', sessionId: id, seq: ++seq, trial, stimulusId: s.id, tMs: b0 });
      if (rand() < 0.05) rec({ type: 'trial:abort', sessionId: id, seq: ++seq, trial, reason: 'fixation break' });
      else rec({ type: 'stim:offset', sessionId: id, seq: ++seq, trial, stimulusId: s.id, tMs: b0 + 200 });
      trial++;
    }
    const counts = new Uint16Array(FRAME_BINS * C);
    // 10 spikes/s per channel: about n * 0.01 spikes in the frame, each in a random bin
    const spikes = Math.round(counts.length * 0.01 * (0.5 + rand()));
    for (let k = 0; k < spikes; k++) counts[Math.floor(rand() * counts.length)]++;
    rec({ type: 'counts:binned', sessionId: id, seq: ++seq, startMs: b0, binWidthMs: 1, nBins: FRAME_BINS, counts });
  }
  rec({ type: 'session:end', sessionId: id, seq: ++seq });
  recorder.finish(id, 'ended');
  recorder.close();
  return id;
}

const peakRssMb = () => process.resourceUsage().maxRSS / 1024;

/** One phase in this (child) process; prints {seconds, peakRssMb, bytes?}. */
async function child(phase: string, args: string[]): Promise<void> {
  const t0 = performance.now();
  let bytes = 0;
  if (phase === 'export') {
    const [dataDir, id, file] = args;
    const recorder = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
    bytes = (await exportRecorded({ recorder, sessionId: id, file, sets: loadStimulusSets(path.join(root, 'stimuli')).sets, pipeline, about: {} })).bytes;
  } else if (phase === 'import') {
    const [dataDir, file] = args;
    const recorder = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
    await importNwb({ file, recorder, stimulusDir: path.join(root, 'stimuli') });
    recorder.close();
  } else if (phase === 'replay') {
    const [dataDir, id] = args;
    const recorder = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
    await statisticsOf(recordedFrames(recorder, id), pipeline, { sessionId: id, startedAt: '', state: 'ended' });
  }
  console.log(JSON.stringify({ seconds: (performance.now() - t0) / 1000, peakRssMb: peakRssMb(), bytes }));
}

const self = fileURLToPath(import.meta.url);
const phase = (name: string, ...args: string[]): { seconds: number; peakRssMb: number; bytes: number } =>
  JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', self, name, ...args], { cwd: root, encoding: 'utf8', maxBuffer: 1 << 20 }).trim().split('\n').at(-1)!);

export async function run(): Promise<Record<string, unknown>> {
  const minutes = Number(process.env.BENCH_NWB_MINUTES ?? 60);
  const lengths = [minutes / 3, minutes];
  const rows: Record<string, number>[] = [];
  const idle = phase('idle');
  for (const m of lengths) {
    const dir = tmpDir();
    try {
      const id = generate(path.join(dir, 'data'), m);
      const logBytes = fs.statSync(path.join(dir, 'data', 'sessions', id, 'log.bin')).size;
      const file = path.join(dir, `${id}.nwb`);
      const replay = phase('replay', path.join(dir, 'data'), id);
      const exp = phase('export', path.join(dir, 'data'), id, file);
      const imp = phase('import', path.join(dir, 'imported'), file);
      const perHour = 60 / m;
      rows.push({
        minutes: m,
        logMb: logBytes / 1e6,
        nwbMb: exp.bytes / 1e6,
        exportSecondsPerHour: exp.seconds * perHour,
        importSecondsPerHour: imp.seconds * perHour,
        replaySecondsPerHour: replay.seconds * perHour,
        exportPeakRssMb: exp.peakRssMb,
        importPeakRssMb: imp.peakRssMb,
        replayPeakRssMb: replay.peakRssMb,
      });
      console.log(
        `  ${m.toFixed(1)} min (log ${(logBytes / 1e6).toFixed(0)} MB): export ${exp.seconds.toFixed(1)} s, import ${imp.seconds.toFixed(1)} s, statistics replay ${replay.seconds.toFixed(1)} s; ` +
          `peak RSS export ${exp.peakRssMb.toFixed(0)} MB, import ${imp.peakRssMb.toFixed(0)} MB, replay ${replay.peakRssMb.toFixed(0)} MB (idle child ${idle.peakRssMb.toFixed(0)} MB); NWB ${(exp.bytes / 1e6).toFixed(0)} MB`,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  const [short, long] = rows;
  const slope = (k: string) => ((long[k] * long.minutes - short[k] * short.minutes) / 60 / (long.minutes - short.minutes)) * 60;
  const result = {
    channels: C,
    binMs: 1,
    minutes,
    exportSecondsPerHour: long.exportSecondsPerHour,
    importSecondsPerHour: long.importSecondsPerHour,
    peakRssMb: Math.max(long.exportPeakRssMb, long.importPeakRssMb),
    sizeVsLog: long.nwbMb / long.logMb,
    baseline: 'statistics replay of the same log in a child process (one full pass through the pipeline); idle child for memory',
    // the cost of each further hour, without the fixed part (images, wasm start): the slope between both lengths
    exportSecondsPerHourMarginal: slope('exportSecondsPerHour'),
    importSecondsPerHourMarginal: slope('importSecondsPerHour'),
    exportVsReplay: long.exportSecondsPerHour / long.replaySecondsPerHour,
    importVsReplay: long.importSecondsPerHour / long.replaySecondsPerHour,
    peakRssGrowth: { exportLongVsShort: long.exportPeakRssMb / short.exportPeakRssMb, importLongVsShort: long.importPeakRssMb / short.importPeakRssMb },
    idleChildRssMb: idle.peakRssMb,
    rows,
  };
  console.log(
    `  per hour: export ${result.exportSecondsPerHour.toFixed(0)} s (${result.exportVsReplay.toFixed(2)}x the statistics replay), import ${result.importSecondsPerHour.toFixed(0)} s (${result.importVsReplay.toFixed(2)}x); ` +
      `peak RSS ${result.peakRssMb.toFixed(0)} MB (x${result.peakRssGrowth.exportLongVsShort.toFixed(2)} export, x${result.peakRssGrowth.importLongVsShort.toFixed(2)} import for 3x the length); size ${result.sizeVsLog.toFixed(3)} x the log`,
  );
  return result;
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) await child(process.argv[2] ?? 'idle', process.argv.slice(3));
