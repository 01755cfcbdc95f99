/**
 * Statistics of a recorded session that is not loaded: computed in a worker thread (the event loop, and
 * with it every rig's acknowledgements, never waits on a long log) and cached per log version (size and
 * modification time), so a second request costs nothing. Concurrent requests for one log share one run.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { SessionSnapshot, SessionState } from '@sharedlens/shared';
import type { Recorder } from '../sinks/recorder.ts';

export interface OfflineJob {
  dataDir: string;
  sessionId: string;
  startedAt: string;
  state: SessionState;
  /** Read the log up to here (its length when the request came). */
  toByte: number;
  pipeline: { psthBinMs: number };
}

type Snapshots = { plain: SessionSnapshot | null; detail: SessionSnapshot | null };

/** Logs whose statistics stay cached (each entry is one snapshot pair, not the log). */
const MAX_CACHED = 32;

export class OfflineStats {
  private readonly cache = new Map<string, Promise<Snapshots>>();
  /** Worker runs started (a cached or shared answer starts none). */
  runs = 0;

  constructor(
    private readonly recorder: Recorder,
    private readonly pipeline: { psthBinMs: number },
  ) {}

  /** The snapshot of a recorded session (null when its log holds no statistics); rejects on a worker failure. */
  async snapshot(sessionId: string, detail: boolean): Promise<SessionSnapshot | null> {
    const meta = this.recorder.meta(sessionId);
    if (!meta) throw new Error(`no recorded session "${sessionId}"`);
    const st = fs.statSync(this.recorder.logFile(sessionId));
    const key = `${sessionId}:${st.size}:${st.mtimeMs}`;
    let run = this.cache.get(key);
    if (!run) {
      run = this.compute({ dataDir: path.dirname(this.recorder.root), sessionId, startedAt: meta.startedAt, state: meta.state, toByte: st.size, pipeline: this.pipeline });
      this.cache.set(key, run);
      run.catch(() => this.cache.delete(key));
      while (this.cache.size > MAX_CACHED) this.cache.delete(this.cache.keys().next().value!);
    }
    const s = await run;
    return detail ? s.detail : s.plain;
  }

  private compute(job: OfflineJob): Promise<Snapshots> {
    this.runs++;
    return new Promise((resolve, reject) => {
      const w = new Worker(new URL('../workers/worker-entry.mjs', import.meta.url), { workerData: { module: '../sessions/offline-stats-worker.ts', job } });
      w.once('message', (msg: Snapshots | { error: string }) => {
        void w.terminate();
        if ('error' in msg) reject(new Error(`offline statistics failed: ${msg.error}`));
        else resolve(msg);
      });
      w.once('error', (e) => reject(new Error(`offline statistics worker failed: ${e.message}`)));
      w.once('exit', (code) => {
        if (code !== 0) reject(new Error(`offline statistics worker exited with code ${code}`));
      });
    });
  }
}
