/**
 * Worker thread of offline-stats.ts: streams one recorded log through the statistics pipeline (memory
 * independent of its length) and posts both snapshots (plain and detailed) back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { from, lastValueFrom } from 'rxjs';
import type { Frame } from '@sharedlens/shared';
import { buildSnapshot } from '../compute/session-snapshot.ts';
import { sessionPipeline } from '../pipeline/session-pipeline.ts';
import { Recorder } from '../sinks/recorder.ts';
import type { OfflineJob } from './offline-stats.ts';

const job = (workerData as { job: OfflineJob }).job;
try {
  const recorder = new Recorder({ dataDir: job.dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
  const rejected: Record<string, number> = {};
  let seqGaps = 0;
  let lastSeq = 0;
  function* frames(): Generator<Frame> {
    for (const v of recorder.items(job.sessionId, null, job.toByte)) {
      if (!('item' in v)) continue;
      if ('note' in v.item) {
        if (v.item.note.kind === 'gap') seqGaps++;
        else rejected[v.item.note.code] = (rejected[v.item.note.code] ?? 0) + 1;
        continue;
      }
      const f = v.item.frame;
      if ('seq' in f && f.seq) lastSeq = Math.max(lastSeq, f.seq);
      yield f;
    }
  }
  const last = await lastValueFrom(from(frames()).pipe(sessionPipeline(job.pipeline)), { defaultValue: null });
  const meta = { sessionId: job.sessionId, startedAt: job.startedAt, state: job.state, lastSeq, seqGaps, rejected };
  parentPort!.postMessage(last ? { plain: buildSnapshot(last.state, meta, false), detail: buildSnapshot(last.state, meta, true) } : { plain: null, detail: null });
} catch (e) {
  parentPort!.postMessage({ error: (e as Error).message });
}
