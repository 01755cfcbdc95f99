/** Runs one export in a worker thread (export-worker.ts) and resolves with its result. */
import { Worker } from 'node:worker_threads';
import type { RecordedExport } from './export-recorded.ts';
import type { ExportResult } from './export-session.ts';

/** What the worker needs: plain data (the recorder and the sets are opened again there). */
export interface ExportJob extends Omit<RecordedExport, 'recorder' | 'sets'> {
  dataDir: string;
  stimulusDir: string;
}

export function exportInWorker(job: ExportJob): Promise<ExportResult> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL('../workers/worker-entry.mjs', import.meta.url), { workerData: { module: '../nwb/export-worker.ts', job } });
    let settled = false;
    w.once('message', (m: { result?: ExportResult; error?: string }) => {
      settled = true;
      if (m.result) resolve(m.result);
      else reject(new Error(m.error ?? 'the export worker gave no result'));
      void w.terminate();
    });
    w.once('error', (e) => {
      settled = true;
      reject(new Error(`the export worker failed: ${e.message}`));
    });
    w.once('exit', (code) => {
      if (!settled) reject(new Error(`the export worker exited with code ${code}`));
    });
  });
}
