/**
 * The rig side of the ingest benchmark, run as its own process so the server has a core of its own.
 * Sends pre-built trials (onset, 1 ms bins in 50-bin frames, offset) as fast as acknowledgements allow,
 * with a bounded number in flight, and writes the emit time of every sequence number as JSON to OUT_FILE.
 * Usage: ingest-rig.ts URL TOKEN CHANNELS CODEC(msgpack|json) SECONDS STIMULUS_ID OUT_FILE
 */
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { io } from 'socket.io-client';
import { encodePayload } from '@sharedlens/shared';

const [url, token, channelsArg, codec, secondsArg, stimulusId, outFile] = process.argv.slice(2);
const C = Number(channelsArg);
const seconds = Number(secondsArg);
const BINS = 50;
const IN_FLIGHT = 4;
const now = () => performance.timeOrigin + performance.now();

const socket = io(`${url}/rig`, { auth: { token }, transports: ['websocket'] });
await new Promise<void>((resolve, reject) => {
  socket.once('connect', () => resolve());
  socket.once('connect_error', reject);
});
const encode = (body: unknown) => (codec === 'json' ? JSON.stringify(body, (_k, v) => (v instanceof Uint16Array ? Array.from(v) : v)) : encodePayload(body));
const request = (event: string, body: unknown): Promise<any> => socket.timeout(30_000).emitWithAck(event, encode(body));

const start = await request('session:start', {
  rigId: `bench-${codec}`,
  subject: 'bench',
  channels: Array.from({ length: C }, (_, i) => ({ id: `c${i}`, label: `c${i}` })),
  stimulusSetId: 'demo',
  timing: { responseWindowMs: 200, latencyMs: 50, baselineWindowMs: 100, binWidthMs: 1 },
});
const sessionId: string = start.data.sessionId;
// one block of Poisson-like counts reused for every frame: the server's work does not depend on values
const counts = new Uint16Array(BINS * C);
for (let i = 0; i < counts.length; i++) counts[i] = (i * 2654435761) % 7 === 0 ? 1 : 0;

let seq = 0;
const emitMs = new Map<number, number>();
let inFlight = 0;
let wake: (() => void) | null = null;
let channelBins = 0;
const send = async (event: string, body: Record<string, unknown>) => {
  while (inFlight >= IN_FLIGHT) await new Promise<void>((r) => (wake = r));
  const s = ++seq;
  const payload = encode({ ...body, sessionId, seq: s });
  inFlight++;
  emitMs.set(s, now());
  socket.timeout(30_000).emit(event, payload, (err: Error | null, ack: any) => {
    inFlight--;
    if (err || ack.error) {
      console.error(`rig: ${event} failed: ${err?.message ?? JSON.stringify(ack.error)}`);
      process.exit(1);
    }
    wake?.();
    wake = null;
  });
};

const t0 = now();
let tMs = 0;
let trial = 0;
while (now() - t0 < seconds * 1000) {
  // a trial: 400 ms of bins (200 on, 200 off), onset at 0, offset at 200
  await send('stim:onset', { trial, stimulusId, tMs: tMs + 100 });
  for (let b = 0; b < 400; b += BINS) {
    await send('counts:binned', { startMs: tMs + b, binWidthMs: 1, counts });
    channelBins += BINS * C;
    if (b === 250) await send('stim:offset', { trial, stimulusId, tMs: tMs + 300 });
  }
  tMs += 400;
  trial++;
}
while (inFlight > 0) await new Promise<void>((r) => (wake = r));
const elapsedS = (now() - t0) / 1000;
await request('session:end', { sessionId, seq: ++seq });
fs.writeFileSync(outFile, JSON.stringify({ sessionId, channelBins, elapsedS, trials: trial, emitMs: Object.fromEntries(emitMs) }));
socket.close();
process.exit(0);
