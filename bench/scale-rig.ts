/**
 * The rig side of the scale benchmark, in its own process: feature-driven simulated neurons
 * (server/src/sim/synthetic-neurons.ts; 60% category-dominated, 40% weak mixed tuning at 0.4x the rates)
 * streamed through a real socket at 10 trials/s in real time (1 ms bins in 50-bin frames, 60 ms on,
 * 40 ms off, the set in shuffled passes), every event timed from emit to acknowledgement. Meanwhile it
 * polls GET /models and GET /api/health every 500 ms, as a dashboard and a monitor would.
 * Usage: scale-rig.ts ARGS_JSON_FILE; writes ARGS.outFile.
 */
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { io } from 'socket.io-client';
import { encodePayload, type Stimulus } from '@sharedlens/shared';
import { createFeatureNeurons, mulberry32, poissonKnuth, shuffle } from '../server/src/sim/synthetic-neurons.ts';

interface Args {
  url: string;
  token: string;
  /** The operator's sign-in token for the HTTP API. */
  authToken: string;
  setId: string;
  channels: number;
  seconds: number;
  stimuli: Stimulus[];
  featuresFile: string;
  dim: number;
  outFile: string;
}

const args = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')) as Args;
const buf = fs.readFileSync(args.featuresFile);
const features = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
const C = args.channels;
const nStrong = Math.round(0.6 * C);
const neurons = [
  ...createFeatureNeurons(nStrong, args.stimuli, features, args.dim, 11),
  ...createFeatureNeurons(C - nStrong, args.stimuli, features, args.dim, 12, { spread: 0.6, rateScale: 0.4 }),
];
const now = () => performance.now();
const socket = io(`${args.url}/rig`, { auth: { token: args.token }, transports: ['websocket'] });
await new Promise<void>((resolve, reject) => {
  socket.once('connect', () => resolve());
  socket.once('connect_error', reject);
});
const start = (await socket.timeout(30_000).emitWithAck('session:start', encodePayload({
  rigId: 'bench-scale',
  subject: 'bench',
  channels: neurons.map((n, i) => ({ id: `ch${i}`, label: `ch${i} (${n.preferredCategory})` })),
  stimulusSetId: args.setId,
  timing: { responseWindowMs: 60, latencyMs: 40, baselineWindowMs: 30, binWidthMs: 1 },
}))) as { data?: { sessionId: string }; error?: unknown };
if (!start.data) throw new Error(`session:start refused: ${JSON.stringify(start.error)}`);
const sessionId = start.data.sessionId;

const ackMs: number[] = [];
let errors = 0;
/** Refused events by error code (or 'timeout'). */
const errorCodes: Record<string, number> = {};
let seq = 0;
let inFlight = 0;
const emit = (event: string, body: Record<string, unknown>) => {
  const t0 = now();
  inFlight++;
  socket.timeout(60_000).emit(event, encodePayload({ ...body, sessionId, seq: ++seq }), (err: Error | null, ack: { error?: { code?: string } }) => {
    inFlight--;
    if (err || ack.error) {
      errors++;
      const code = err ? 'timeout' : (ack.error?.code ?? 'unknown');
      errorCodes[code] = (errorCodes[code] ?? 0) + 1;
    }
    ackMs.push(now() - t0);
  });
};

const login = await fetch(`${args.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: args.authToken }) });
if (!login.ok) throw new Error(`sign-in failed: ${login.status}`);
const headers = { cookie: login.headers.get('set-cookie')!.split(';')[0]! };
const polls: Record<'models' | 'health', { ms: number[]; status: Record<string, number> }> = { models: { ms: [], status: {} }, health: { ms: [], status: {} } };
let modelsFirstS: number | null = null;
/** The first GET /models with a channel's scores (a 200 before the first fit lists channels without scores). */
let modelsScoredFirstS: number | null = null;
const wall0 = now();
const poll = async (kind: 'models' | 'health') => {
  const t0 = now();
  let status: number | string;
  try {
    const res = await fetch(kind === 'models' ? `${args.url}/api/sessions/${sessionId}/models` : `${args.url}/api/health`, { headers });
    const body = await res.arrayBuffer();
    status = res.status;
    // read until the first scores are seen (a report at 1,536 channels is megabytes of JSON)
    if (kind === 'models' && status === 200 && modelsScoredFirstS === null) {
      const r = JSON.parse(Buffer.from(body).toString('utf8')) as { channels: { scores: unknown }[] };
      if (r.channels.some((c) => c.scores)) modelsScoredFirstS = (now() - wall0) / 1000;
    }
  } catch (e) {
    // counted, not fatal (a keep-alive connection closed by the server between polls)
    status = `error: ${(e as Error).cause ?? (e as Error).message}`;
  }
  polls[kind].ms.push(now() - t0);
  polls[kind].status[status] = (polls[kind].status[status] ?? 0) + 1;
  if (kind === 'models' && status === 200 && modelsFirstS === null) modelsFirstS = (now() - wall0) / 1000;
};
let polling = true;
const poller = (async () => {
  while (polling) {
    await Promise.all([poll('models'), poll('health')]);
    await new Promise((r) => setTimeout(r, 500));
  }
})();

const rand = mulberry32(7);
/**
 * poisson() (Knuth's sampler) with exp(-mean) looked up per channel, at baseline and evoked by the trial's
 * stimulus: the same counts from the same random numbers, one exp per channel and trial instead of one per
 * bin (the simulated rig shares the server's two cores; a real rig does not).
 */
const lBase = Float64Array.from(neurons, (n) => Math.exp(-n.baselineHz / 1000));
const lEvoked = new Float64Array(C);
const BINS = 50;
const ON = 60;
let order: number[] = [];
let tMs = 1000;
let trials = 0;
let stimulus = -1;
let onsetMs = 0;
while (now() - wall0 < args.seconds * 1000) {
  // two frames per trial: onset, 50 bins, offset, 50 bins (the last 40 off)
  for (let half = 0; half < 2; half++) {
    if (half === 0) {
      if (!order.length) order = shuffle(args.stimuli.map((_, i) => i), rand);
      stimulus = order.pop()!;
      onsetMs = tMs;
      for (let c = 0; c < C; c++) lEvoked[c] = Math.exp(-(neurons[c].baselineHz + neurons[c].evokedHz[stimulus]) / 1000);
      emit('stim:onset', { trial: trials, stimulusId: args.stimuli[stimulus].id, tMs: onsetMs });
    }
    const counts = new Uint16Array(BINS * C);
    for (let b = 0; b < BINS; b++) {
      const t = tMs + b;
      const evoked = t >= onsetMs + 40 && t < onsetMs + ON + 40;
      const l = evoked ? lEvoked : lBase;
      for (let c = 0; c < C; c++) counts[b * C + c] = poissonKnuth(rand, l[c]);
    }
    emit('counts:binned', { startMs: tMs, binWidthMs: 1, counts });
    tMs += BINS;
    if (half === 1) {
      emit('stim:offset', { trial: trials, stimulusId: args.stimuli[stimulus].id, tMs: onsetMs + ON });
      trials++;
    }
    // real time: frame k is due at k x 50 ms of wall time
    const ahead = tMs - 1000 - (now() - wall0);
    if (ahead > 0) await new Promise((r) => setTimeout(r, ahead));
  }
}
// the trailing bins cover the last trial's response window
polling = false;
await poller;
while (inFlight > 0) await new Promise((r) => setTimeout(r, 20));
const final = await fetch(`${args.url}/api/sessions/${sessionId}/models`, { headers });
const report = final.ok ? ((await final.json()) as { channels: { drivers: unknown[]; scores: { looR: number | null } | null }[] }) : null;
const end = (await socket.timeout(60_000).emitWithAck('session:end', encodePayload({ sessionId, seq: ++seq }))) as { error?: unknown };
if (end.error) errors++;
socket.close();
fs.writeFileSync(
  args.outFile,
  JSON.stringify({
    sessionId,
    trials,
    elapsedS: (now() - wall0) / 1000,
    ackMs,
    errors,
    errorCodes,
    polls,
    modelsFirstS,
    modelsScoredFirstS,
    driversTotal: report ? report.channels.reduce((a, c) => a + c.drivers.length, 0) : null,
    channelsWithScores: report ? report.channels.filter((c) => c.scores?.looR != null).length : null,
  }),
);
process.exit(0);
