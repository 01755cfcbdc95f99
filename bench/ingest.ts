/**
 * Ingest benchmark: throughput (channel-bins/s) and latency from a rig emit to the statistics update it
 * causes (taken at the pipeline output, before dashboard throttling), over real sockets on loopback,
 * at 384 and 1536 channels with 1 ms bins. The baseline is the same server fed JSON text payloads in the
 * same run; the rig runs in a child process.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { createApp } from '../server/src/app.ts';
import { loadConfig } from '../server/src/config.ts';
import { demoStimuli, root, tmpDir } from './support.ts';

const TOKEN = 'bench-rig-token';
const SECONDS = Number(process.env.BENCH_INGEST_SECONDS ?? 6);

interface Run {
  channels: number;
  codec: 'msgpack' | 'json';
  channelBinsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  trials: number;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function once(channels: number, codec: 'msgpack' | 'json'): Promise<Run> {
  const config = { ...loadConfig(root, { RIG_TOKENS: TOKEN, DEMO: '0' }), dataDir: tmpDir() };
  config.limits = { ...config.limits, maxPayloadBytes: 16 * 1024 * 1024 };
  const app = createApp({ config, logger: pino({ level: 'silent' }) });
  const port = await app.listen(0, '127.0.0.1');
  const outFile = path.join(config.dataDir, 'rig-times.json');
  const updateMs = new Map<number, number>();
  const sub = app.store.updates$.subscribe(({ update }) => {
    if (update.cause === 'trial' && update.seq !== undefined) updateMs.set(update.seq, performance.timeOrigin + performance.now());
  });
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'bench/ingest-rig.ts'), `http://127.0.0.1:${port}`, TOKEN, String(channels), codec, String(SECONDS), demoStimuli[0].id, outFile], { stdio: ['ignore', 'inherit', 'inherit'] });
  const code = await new Promise((r) => child.once('exit', r));
  sub.unsubscribe();
  await app.close();
  if (code !== 0) throw new Error(`ingest rig exited with ${code}`);
  const rig = JSON.parse(fs.readFileSync(outFile, 'utf8')) as { channelBins: number; elapsedS: number; trials: number; emitMs: Record<string, number> };
  fs.rmSync(config.dataDir, { recursive: true, force: true });
  const lat = [...updateMs].map(([seq, t]) => t - rig.emitMs[seq]).filter((x) => Number.isFinite(x));
  return { channels, codec, channelBinsPerSec: rig.channelBins / rig.elapsedS, p50Ms: pct(lat, 50), p99Ms: pct(lat, 99), trials: lat.length };
}

export async function run(): Promise<Record<string, unknown>> {
  const runs: Run[] = [];
  for (const channels of [384, 1536]) {
    for (const codec of ['msgpack', 'json'] as const) {
      const r = await once(channels, codec);
      runs.push(r);
      console.log(`  ${String(channels).padStart(4)} ch ${codec.padEnd(7)} ${(r.channelBinsPerSec / 1e6).toFixed(2)} M channel-bins/s   latency p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms  (${r.trials} trials)`);
    }
  }
  const get = (c: number, k: string) => runs.find((r) => r.channels === c && r.codec === k)!;
  const m384 = get(384, 'msgpack');
  const j384 = get(384, 'json');
  const m1536 = get(1536, 'msgpack');
  const j1536 = get(1536, 'json');
  const result = {
    channelBinsPerSec: Math.round(m384.channelBinsPerSec),
    p50Ms: m384.p50Ms,
    p99Ms: m384.p99Ms,
    msgpackOverJson: m384.channelBinsPerSec / j384.channelBinsPerSec,
    channels1536: { channelBinsPerSec: Math.round(m1536.channelBinsPerSec), p99Ms: m1536.p99Ms, p50Ms: m1536.p50Ms, msgpackOverJson: m1536.channelBinsPerSec / j1536.channelBinsPerSec },
    json384: { channelBinsPerSec: Math.round(j384.channelBinsPerSec), p99Ms: j384.p99Ms },
    baseline: 'JSON text payloads (counts as number arrays) into the same server, same run',
    targets: { channelBinsPerSec: 1_000_000, p99Ms: 20, msgpackOverJson: 2 },
    secondsPerRun: SECONDS,
  };
  console.log(`  384 ch msgpack: ${(result.channelBinsPerSec / 1e6).toFixed(2)} M channel-bins/s (target >= 1.00: ${(result.channelBinsPerSec / 1e6).toFixed(2)}x), p99 ${result.p99Ms.toFixed(2)} ms (target < 20)`);
  console.log(`  msgpackr over JSON baseline: ${result.msgpackOverJson.toFixed(2)}x at 384 ch, ${result.channels1536.msgpackOverJson.toFixed(2)}x at 1536 ch (target >= 2x)`);
  return result;
}
