/**
 * The simulated rig: connects over socket.io with the RigClient like a real rig and streams a session of
 * binned spike counts from synthetic neurons, with aborted trials and a mid-session reconnect. In real
 * time it follows the on/off schedule; `fast` sends as quickly as acknowledgements come back.
 */
import { RigClient, type Stimulus, type Timing } from '@sharedlens/shared';
import { createFeatureNeurons, createNeurons, mulberry32, poisson, shuffle, type SyntheticNeuron } from './synthetic-neurons.ts';

export interface SimOptions {
  url: string;
  token: string;
  stimuli: Stimulus[];
  stimulusSetId: string;
  channels: number;
  /** Number of trials; Infinity runs until stopped. */
  trials: number;
  onMs: number;
  offMs: number;
  abortRate: number;
  seed: number;
  /** Drop the connection once after this many trials (0: never). */
  reconnectAfterTrials: number;
  fast: boolean;
  timing?: Timing;
  /** Bins per counts:binned frame. */
  chunkBins?: number;
  rigId?: string;
  signal?: AbortSignal;
  /** Leave the session open at the end (the caller ends it). */
  keepOpen?: boolean;
  /** CNN features of the stimuli (S x dim): neurons respond through known readout weights on them. */
  features?: { features: Float32Array; dim: number };
  onTrial?: (trial: number, sessionId: string) => void;
}

export interface SimResult {
  sessionId: string;
  trials: number;
  aborted: number;
  neurons: SyntheticNeuron[];
  client: RigClient;
}

const defaultTiming: Timing = { responseWindowMs: 200, latencyMs: 50, baselineWindowMs: 100, binWidthMs: 1 };

/** Runs one simulated session to its end (or until `signal` aborts) and returns what it sent. */
export async function runSimRig(o: SimOptions): Promise<SimResult> {
  const timing = o.timing ?? defaultTiming;
  const bw = timing.binWidthMs;
  const chunkBins = o.chunkBins ?? Math.max(1, Math.round(50 / bw));
  const rand = mulberry32(o.seed + 17);
  const neurons = o.features ? createFeatureNeurons(o.channels, o.stimuli, o.features.features, o.features.dim, o.seed) : createNeurons(o.channels, o.stimuli, o.seed);
  const client = new RigClient({ url: o.url, token: o.token });
  await client.connect();
  const sessionId = await client.startSession({
    rigId: o.rigId ?? 'sim-rig',
    subject: 'simulated',
    channels: neurons.map((n, i) => ({ id: `ch${String(i + 1).padStart(3, '0')}`, label: `ch${i + 1} (${n.preferredCategory})`, area: i % 2 ? 'aSTS' : 'mSTS' })),
    stimulusSetId: o.stimulusSetId,
    timing,
  });
  const C = o.channels;
  const perBinBase = neurons.map((n) => (n.baselineHz * bw) / 1000);
  let tMs = 1000; // rig clock
  let aborted = 0;
  let order: number[] = [];
  const wallStart = Date.now();
  const pace = async () => {
    if (o.fast) return;
    const ahead = tMs - 1000 - (Date.now() - wallStart);
    if (ahead > 0) await new Promise((r) => setTimeout(r, ahead));
  };
  // in flight at once, so fast mode is not limited by one round trip per frame
  const window: Promise<unknown>[] = [];
  const send = async (p: Promise<unknown>) => {
    window.push(p);
    if (window.length >= 64) await Promise.all(window.splice(0));
  };
  const emitBins = async (untilMs: number, stimulus: number, onsetMs: number, offsetMs: number) => {
    while (tMs < untilMs - 1e-9) {
      const n = Math.min(chunkBins, Math.round((untilMs - tMs) / bw));
      const counts = new Uint16Array(n * C);
      for (let b = 0; b < n; b++) {
        const t = tMs + b * bw;
        const evoked = stimulus >= 0 && t >= onsetMs + timing.latencyMs && t < offsetMs + timing.latencyMs;
        for (let c = 0; c < C; c++) counts[b * C + c] = poisson(rand, perBinBase[c] + (evoked ? (neurons[c].evokedHz[stimulus] * bw) / 1000 : 0));
      }
      await send(client.binned(tMs, bw, counts));
      tMs += n * bw;
      await pace();
    }
  };
  let trial = 0;
  for (; trial < o.trials && !o.signal?.aborted; trial++) {
    if (!order.length) order = shuffle(o.stimuli.map((_, i) => i), rand);
    const s = order.pop()!;
    const stim = o.stimuli[s].id;
    const onsetMs = tMs;
    const offsetMs = onsetMs + o.onMs;
    await send(client.onset(trial, stim, onsetMs));
    if (rand() < o.abortRate) {
      // fixation break half-way through the presentation
      await emitBins(onsetMs + o.onMs / 2, s, onsetMs, onsetMs + o.onMs / 2);
      await send(client.abort(trial, 'fixation break'));
      aborted++;
      await emitBins(onsetMs + o.onMs + o.offMs, -1, onsetMs, offsetMs);
    } else {
      await emitBins(offsetMs, s, onsetMs, offsetMs);
      await send(client.offset(trial, stim, offsetMs));
      await emitBins(offsetMs + o.offMs, s, onsetMs, offsetMs);
    }
    o.onTrial?.(trial, sessionId);
    if (o.reconnectAfterTrials > 0 && trial + 1 === o.reconnectAfterTrials) {
      await Promise.all(window.splice(0));
      client.socket.io.engine.close(); // a dropped connection; the client reconnects and resumes
    }
  }
  await Promise.all(window.splice(0));
  if (!o.keepOpen) await client.end();
  return { sessionId, trials: trial, aborted, neurons, client };
}
