/**
 * `GET /api/sessions/:id/export.nwb` (operators): a recorded session as an NWB 2.6 file (docs/nwb.md).
 * Statistics come from the log; models, readout weights and maps from the session itself while it is
 * loaded, or from its latest finished replay.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Router } from 'express';
import type { Explanation } from '@sharedlens/shared';
import type { Config } from '../config.ts';
import type { Recorder } from '../sinks/recorder.ts';
import type { Runtime, SessionStore } from '../sinks/session-store.ts';
import { exportInWorker } from '../nwb/export-in-worker.ts';
import { requireOperator, type Refusals } from '../auth/guards.ts';
import { apiError } from './api-error.ts';

export interface ExportsRouterDeps {
  store: SessionStore;
  recorder: Recorder;
  dataDir: string;
  stimulusDir: string;
  pipeline: Config['pipeline'];
  about: Config['nwb'];
  /** Shared-feature maps by runtime id (null: maps are off). */
  maps: Map<string, Map<string, Explanation>> | null;
  refused: Refusals;
  log: (fields: Record<string, unknown>, msg: string) => void;
}

/** The runtime whose models go into the export: the session itself, else its latest finished replay. */
function modelRuntime(store: SessionStore, id: string): Runtime | null {
  const own = store.get(id);
  if (own?.encoding) return own;
  const replays = store.all().filter((rt) => rt.kind === 'replay' && rt.sourceSessionId === id && rt.replay?.done && rt.encoding);
  return replays.at(-1) ?? null;
}

export function exportsRouter(deps: ExportsRouterDeps): Router {
  const router = Router();
  let counter = 0;
  router.get('/:id/export.nwb', requireOperator(deps.refused, deps.log), async (req, res, next) => {
    const id = req.params.id as string;
    if (!deps.recorder.meta(id)) return apiError(res, 404, 'unknown-session', `no recorded session "${id}"`);
    const rt = modelRuntime(deps.store, id);
    const models = rt ? deps.store.models(rt) : null;
    const file = path.join(os.tmpdir(), `sharedlens-export-${process.pid}-${++counter}.nwb`);
    try {
      // in a worker thread: the event loop keeps serving rigs and dashboards meanwhile
      const r = await exportInWorker({
        dataDir: deps.dataDir,
        stimulusDir: deps.stimulusDir,
        sessionId: id,
        file,
        pipeline: deps.pipeline,
        about: deps.about,
        ...(rt && models
          ? {
              models: {
                models,
                readouts: { featureModel: models.featureModel, weights: rt.latest!.start.channels.map((_, c) => deps.store.readout(rt, c)) },
                explanations: [...(deps.maps?.get(rt.id)?.values() ?? [])],
              },
            }
          : {}),
      });
      deps.log({ sessionId: id, bytes: r.bytes, notes: r.notes, modelsFrom: rt?.id ?? null }, 'NWB export');
      res.download(file, `${id}.nwb`, { headers: { 'content-type': 'application/x-hdf5' } }, (err) => {
        fs.rm(file, { force: true }, () => undefined);
        if (err && !res.headersSent) next(err);
      });
    } catch (e) {
      fs.rm(file, { force: true }, () => undefined);
      next(e);
    }
  });
  return router;
}
