/**
 * Child process of bench/durability.ts: replays a recorded session at full speed through the statistics
 * pipeline (`replay`) or only loads the same modules (`idle`, the baseline), then prints its peak RSS.
 */
import { BehaviorSubject, filter, lastValueFrom, map } from 'rxjs';
import { Recorder } from '../server/src/sinks/recorder.ts';
import { replayRecords, type Replayed } from '../server/src/sources/replay.ts';
import { sessionPipeline } from '../server/src/pipeline/session-pipeline.ts';

const [dataDir, sessionId, mode] = process.argv.slice(2);
const recorder = new Recorder({ dataDir: dataDir!, fsync: 'never', fsyncIntervalMs: 1000 });
if (mode === 'replay') {
  const source = recorder.source(sessionId!);
  const last = await lastValueFrom(
    replayRecords(source, { speed$: new BehaviorSubject(Infinity), paused$: new BehaviorSubject(false) }).pipe(
      filter((r): r is Extract<Replayed, { frame: unknown }> => 'frame' in r),
      map((r) => r.frame),
      sessionPipeline({ psthBinMs: 10 }),
    ),
  );
  console.log(`trials=${last.state.trialsCompleted} records=${source.total}`);
}
console.log(`maxRssMb=${(process.resourceUsage().maxRSS / 1024).toFixed(1)}`);
