/**
 * `npm run bench -- durability`: what issue 11 promises, measured.
 * - killRuns / ackedLost: a server process killed with SIGKILL mid-stream BENCH_KILL_RUNS times (default 20),
 *   restarted, the rig resumes; then a disk-full loop (ENOSPC injected into the recorder's file calls);
 *   ackedLost counts acknowledged events missing from the log (must be 0).
 * - resumeSecondsPerGiB, replayPeakRssMbPerGiB: a generated log of BENCH_LOG_GIB (default 2.1) GiB at 384
 *   channels, 1 ms bins (written through the recorder, with its checkpoints); resume is timed to the rig's ack,
 *   replay runs in a child process whose peak RSS is read. Baselines in the same run: one plain read of the
 *   file (seconds per GiB) and the peak RSS of a child that imports the same modules and replays nothing.
 * - ackP99MsDuringOfflineStats: a rig streaming 384 channels while GET /stats of a 500 MB recorded log runs,
 *   against the same stream with no request (baseline).
 * - junkFrameRejectMs: a 4 MiB msgpack frame of 2 million one-character strings, median of 5.
 * Needs about 2.7 GB free in the temporary folder (checked first); deletes what it wrote.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { RigClient, encodePayload, type Frame } from '@sharedlens/shared';
import { Recorder } from '../server/src/sinks/recorder.ts';
import { realFileOps } from '../server/src/storage/session-log.ts';
import { applyFrame, createGuard, saveGuard } from '../server/src/sources/ingest-guard.ts';
import { apiFetch, rawRig, send, sessionStart, startApp, testConfig, TOKEN } from '../test/helpers.ts';
import { demoStimuli, root, tmpDir } from './support.ts';

const GiB = 1024 ** 3;
const C = 384;
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function untilOut(child: ReturnType<typeof spawn>, re: RegExp): Promise<RegExpExecArray> {
  let out = '';
  return new Promise((resolve, reject) => {
    const on = (d: Buffer) => {
      out += d;
      const m = re.exec(out);
      if (m) resolve(m);
    };
    child.stdout!.on('data', on);
    child.stderr!.on('data', on);
    child.once('exit', () => reject(new Error(`server exited: ${out}`)));
  });
}

/** SIGKILL mid-stream, restart, resume: returns runs and acknowledged events missing from the log. */
async function killRuns(runs: number): Promise<{ runs: number; acked: number; lost: number }> {
  const dataDir = tmpDir();
  const acked = new Set<number>();
  let sessionId: string | null = null;
  let trial = 0;
  let tMs = 0;
  for (let run = 0; run < runs; run++) {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'server/src/main.ts')], {
      cwd: root,
      env: { ...process.env, PORT: '0', DEMO: '0', DATA_DIR: dataDir, RIG_TOKENS: TOKEN, LOG_LEVEL: 'error', FSYNC: 'never', FEATURES: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const url = (await untilOut(child, /(http:\/\/[\d.]+:\d+)\/\?token/))[1];
    const rig = new RigClient({ url, token: TOKEN, ackTimeoutMs: 3000, socket: { reconnection: false } });
    await rig.connect();
    if (sessionId) await rig.resume(sessionId);
    else sessionId = await rig.startSession(sessionStart(8));
    const killAfter = 60 + Math.floor(Math.random() * 240);
    let n = 0;
    const pending: Promise<void>[] = [];
    const track = (p: Promise<{ seq: number }>) => pending.push(p.then((a) => void (acked.add(a.seq), n++), () => {}));
    while (child.exitCode === null && child.signalCode === null) {
      const stim = demoStimuli[trial % demoStimuli.length].id;
      track(rig.onset(trial, stim, tMs + 100));
      track(rig.binned(tMs, 1, new Uint16Array(400 * 8).fill(trial % 3)));
      track(rig.offset(trial, stim, tMs + 300));
      trial++;
      tMs += 400;
      if (n >= killAfter) child.kill('SIGKILL');
      await new Promise((r) => setImmediate(r));
    }
    await Promise.race([Promise.all(pending), sleep(3500)]);
    rig.close();
  }
  const rec = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
  const inLog = new Set(rec.load(sessionId!).records.flatMap((r) => ('seq' in r.frame && r.frame.seq ? [r.frame.seq] : [])));
  const lost = [...acked].filter((s) => !inLog.has(s)).length;
  rec.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
  return { runs, acked: acked.size, lost };
}

/** ENOSPC on every other append for a while, the rig resending what was refused: acknowledged events lost. */
async function diskFullLoop(): Promise<{ acked: number; refused: number; lost: number }> {
  const t = await startApp();
  const s = await rawRig(t.url);
  const id = (await send(s, 'session:start', sessionStart(8))).data.sessionId as string;
  const acked: number[] = [];
  let refused = 0;
  let flip = 0;
  for (let seq = 1; seq <= 400; ) {
    t.app.recorder.fileOps = seq > 100 && seq < 300 && flip++ % 2 === 0 ? { ...realFileOps, writeSync: () => { throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }); } } : realFileOps;
    const a = await send(s, 'counts:binned', { sessionId: id, seq, startMs: seq * 10, binWidthMs: 1, counts: new Uint16Array(80).fill(1) });
    if ('data' in a) acked.push(seq++);
    else refused++;
  }
  s.close();
  await t.close();
  const rec = new Recorder({ dataDir: t.config.dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
  const inLog = new Set(rec.load(id).records.flatMap((r) => ('seq' in r.frame && r.frame.seq ? [r.frame.seq] : [])));
  rec.close();
  fs.rmSync(t.config.dataDir, { recursive: true, force: true });
  return { acked: acked.length, refused, lost: acked.filter((s) => !inLog.has(s)).length };
}

/** Writes a binned session of about `bytes` through the recorder (1000 bins x 384 channels per record, one trial each). */
function generateLog(dataDir: string, bytes: number): { sessionId: string; bytes: number; lastSeq: number } {
  const rec = new Recorder({ dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
  const start = { ...sessionStart(C), rigId: 'bench' };
  const parsed = { ...start, countsMode: 'binned' as const, channels: start.channels.map((c) => ({ ...c })) } as unknown as Extract<Frame, { type: 'session:start' }>['start'];
  const sessionId = `bench-${Math.round(bytes)}`;
  const first: Extract<Frame, { type: 'session:start' }> = { type: 'session:start', sessionId, startedAt: new Date().toISOString(), start: parsed, stimuli: demoStimuli };
  rec.create(first, Date.now(), 'rig1');
  const guard = createGuard(sessionId, parsed, demoStimuli);
  const counts = new Uint16Array(1000 * C);
  for (let i = 0; i < counts.length; i++) counts[i] = (i * 7919) % 5;
  let seq = 0;
  let records = 1;
  for (let trial = 0; fs.statSync(rec.logFile(sessionId)).size < bytes; trial++) {
    const t0 = trial * 1000;
    const stim = demoStimuli[trial % demoStimuli.length].id;
    const frames: Frame[] = [
      { type: 'stim:onset', sessionId, seq: ++seq, trial, stimulusId: stim, tMs: t0 + 100 },
      { type: 'counts:binned', sessionId, seq: ++seq, startMs: t0, binWidthMs: 1, nBins: 1000, counts },
      { type: 'stim:offset', sessionId, seq: ++seq, trial, stimulusId: stim, tMs: t0 + 400 },
    ];
    for (const f of frames) {
      rec.append({ atMs: Date.now(), frame: f });
      applyFrame(guard, f);
      rec.maybeCheckpoint(sessionId, ++records, () => saveGuard(guard));
    }
  }
  rec.finish(sessionId, 'interrupted');
  return { sessionId, bytes: fs.statSync(rec.logFile(sessionId)).size, lastSeq: seq };
}

/** Peak RSS (MB) of a child that replays the session through the statistics pipeline (or only loads the modules). */
function childReplayRss(dataDir: string, sessionId: string, replay: boolean): number {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'bench/durability-replay-child.ts'), dataDir, sessionId, replay ? 'replay' : 'idle'], { cwd: root, encoding: 'utf8', maxBuffer: 1 << 20 });
  const m = /maxRssMb=([\d.]+)/.exec(r.stdout);
  if (!m) throw new Error(`replay child failed: ${r.stdout} ${r.stderr}`);
  return Number(m[1]);
}

/** Ack latencies (ms) of a rig streaming 384 channels (20 bins per event) for `ms`. */
async function streamAcks(url: string, ms: number): Promise<number[]> {
  const s = await rawRig(url);
  const id = (await send(s, 'session:start', sessionStart(C))).data.sessionId as string;
  const lat: number[] = [];
  const end = Date.now() + ms;
  for (let seq = 1; Date.now() < end; seq++) {
    const t0 = performance.now();
    await send(s, 'counts:binned', { sessionId: id, seq, startMs: seq * 20, binWidthMs: 1, counts: new Uint16Array(20 * C).fill(1) });
    lat.push(performance.now() - t0);
    await sleep(10);
  }
  s.close();
  return lat;
}

export async function run(): Promise<Record<string, unknown>> {
  const logGiB = Number(process.env.BENCH_LOG_GIB ?? 2.1);
  const free = fs.statfsSync(tmpDir()).bavail * fs.statfsSync(tmpDir()).bsize;
  const need = (logGiB + 0.6) * GiB;
  if (free < need) throw new Error(`durability bench needs ${(need / GiB).toFixed(1)} GiB free in the temporary folder, ${(free / GiB).toFixed(1)} GiB are`);

  const runs = Number(process.env.BENCH_KILL_RUNS ?? 20);
  const kills = await killRuns(runs);
  console.log(`  kill -9 runs: ${kills.runs}, acknowledged ${kills.acked}, lost ${kills.lost}`);
  const full = await diskFullLoop();
  console.log(`  disk-full loop: acknowledged ${full.acked}, refused ${full.refused} (ENOSPC), lost ${full.lost}`);

  // a long log: resume and replay
  const bigDir = tmpDir();
  let resumeSecondsPerGiB = NaN;
  let plainReadSecondsPerGiB = NaN;
  let replayPeakRssMbPerGiB = NaN;
  let replayRssMb = NaN;
  let idleRssMb = NaN;
  let bigBytes = 0;
  try {
    const t0 = performance.now();
    const big = generateLog(bigDir, logGiB * GiB);
    bigBytes = big.bytes;
    console.log(`  generated ${(big.bytes / GiB).toFixed(2)} GiB in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const r0 = performance.now();
    const fd = fs.openSync(path.join(bigDir, 'sessions', big.sessionId, 'log.bin'), 'r');
    const chunk = Buffer.allocUnsafe(1 << 20);
    for (let off = 0; fs.readSync(fd, chunk, 0, chunk.length, off) > 0; off += chunk.length);
    fs.closeSync(fd);
    plainReadSecondsPerGiB = (performance.now() - r0) / 1000 / (big.bytes / GiB);
    const t = await startApp({ dataDir: bigDir });
    try {
      const s = await rawRig(t.url);
      const q0 = performance.now();
      const ack = await s.timeout(120_000).emitWithAck('session:resume', encodePayload({ sessionId: big.sessionId }));
      resumeSecondsPerGiB = (performance.now() - q0) / 1000 / (big.bytes / GiB);
      if (ack.data?.lastSeq !== big.lastSeq) throw new Error(`resume answered ${JSON.stringify(ack)}, expected lastSeq ${big.lastSeq}`);
      s.close();
    } finally {
      await t.close();
    }
    replayRssMb = childReplayRss(bigDir, big.sessionId, true);
    idleRssMb = childReplayRss(bigDir, big.sessionId, false);
    replayPeakRssMbPerGiB = replayRssMb / (big.bytes / GiB);
  } finally {
    fs.rmSync(bigDir, { recursive: true, force: true });
  }
  console.log(`  resume: ${resumeSecondsPerGiB.toFixed(3)} s/GiB (baseline: one plain read of the file ${plainReadSecondsPerGiB.toFixed(3)} s/GiB; ${(resumeSecondsPerGiB / plainReadSecondsPerGiB).toFixed(2)}x)`);
  console.log(`  replay: peak RSS ${replayRssMb.toFixed(0)} MB for ${(bigBytes / GiB).toFixed(2)} GiB = ${replayPeakRssMbPerGiB.toFixed(1)} MB/GiB (baseline: the same child replaying nothing ${idleRssMb.toFixed(0)} MB; ${(replayRssMb / idleRssMb).toFixed(2)}x)`);

  // offline statistics of a 500 MB log while a rig streams
  const statsDir = tmpDir();
  let ackP99MsDuringOfflineStats = NaN;
  let ackP99MsBaseline = NaN;
  let ackMaxMsDuringOfflineStats = NaN;
  let statsRequestS = NaN;
  try {
    const mid = generateLog(statsDir, 500 * 1024 * 1024);
    const t = await startApp({ dataDir: statsDir, limits: { ...testConfig().limits, eventsPerSec: 100_000, burstEvents: 100_000 } });
    try {
      ackP99MsBaseline = pct(await streamAcks(t.url, 3000), 99);
      const during = streamAcks(t.url, 6000);
      await sleep(500);
      const q0 = performance.now();
      const res = await apiFetch(`${t.url}/api/sessions/${mid.sessionId}/stats`);
      await res.arrayBuffer();
      statsRequestS = (performance.now() - q0) / 1000;
      const lat = await during;
      ackP99MsDuringOfflineStats = pct(lat, 99);
      ackMaxMsDuringOfflineStats = Math.max(...lat);
    } finally {
      await t.close();
    }
  } finally {
    fs.rmSync(statsDir, { recursive: true, force: true });
  }
  console.log(`  ack p99 during offline statistics of 500 MB: ${ackP99MsDuringOfflineStats.toFixed(1)} ms (max ${ackMaxMsDuringOfflineStats.toFixed(0)} ms; request ${statsRequestS.toFixed(1)} s; baseline without it ${ackP99MsBaseline.toFixed(1)} ms; ${(ackP99MsDuringOfflineStats / ackP99MsBaseline).toFixed(1)}x)`);

  // a junk frame
  const t = await startApp({ limits: { ...testConfig().limits, maxPayloadBytes: 4 * 1024 * 1024 } });
  const junkMs: number[] = [];
  const okMs: number[] = [];
  try {
    const s = await rawRig(t.url);
    const id = (await send(s, 'session:start', sessionStart(C))).data.sessionId as string;
    const junk = encodePayload({ sessionId: id, seq: 1, startMs: 0, binWidthMs: 1, counts: Array.from({ length: 2_000_000 }, (_, i) => String.fromCharCode(97 + (i % 26))) });
    for (let i = 0; i < 5; i++) {
      const q0 = performance.now();
      const a = await send(s, 'counts:binned', junk, true);
      junkMs.push(performance.now() - q0);
      if (!('error' in a)) throw new Error('junk frame accepted');
      // baseline: a valid frame of the same size (5400 bins x 384 channels)
      const q1 = performance.now();
      await send(s, 'counts:binned', { sessionId: id, seq: i + 1, startMs: i * 5400, binWidthMs: 1, counts: new Uint16Array(5400 * C).fill(1) });
      okMs.push(performance.now() - q1);
    }
    s.close();
  } finally {
    await t.close();
    fs.rmSync(t.config.dataDir, { recursive: true, force: true });
  }
  const junkFrameRejectMs = pct(junkMs, 50);
  console.log(`  4 MiB junk frame rejected in ${junkFrameRejectMs.toFixed(1)} ms (median of 5; baseline: a valid 4 MiB frame recorded in ${pct(okMs, 50).toFixed(1)} ms)`);

  return {
    killRuns: kills.runs,
    ackedLost: kills.lost + full.lost,
    resumeSecondsPerGiB,
    replayPeakRssMbPerGiB,
    ackP99MsDuringOfflineStats,
    junkFrameRejectMs,
    detail: { kills, diskFull: full, logBytes: bigBytes, plainReadSecondsPerGiB, replayRssMb, idleChildRssMb: idleRssMb, ackP99MsBaseline, ackMaxMsDuringOfflineStats, statsRequestS, validFrameMs: pct(okMs, 50) },
  };
}
