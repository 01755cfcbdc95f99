/**
 * Worker thread of one HTTP export (started by exportInWorker): the export reads the whole log and
 * compresses every count, seconds for a long session, so it runs here and the server's event loop never
 * waits on it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Recorder } from '../sinks/recorder.ts';
import { loadStimulusSets } from '../stimulus-sets.ts';
import { exportRecorded } from './export-recorded.ts';
import type { ExportJob } from './export-in-worker.ts';

const job = (workerData as { job: ExportJob }).job;
try {
  const recorder = new Recorder({ dataDir: job.dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
  const { sets } = loadStimulusSets(job.stimulusDir);
  const result = await exportRecorded({ recorder, sessionId: job.sessionId, file: job.file, sets, pipeline: job.pipeline, about: job.about, ...(job.models ? { models: job.models } : {}) });
  parentPort!.postMessage({ result });
} catch (e) {
  parentPort!.postMessage({ error: (e as Error).message });
}
