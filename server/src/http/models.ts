/** `/api/sessions/:id/models` and `/api/sessions/:id/explanations`: encoding models, drivers and their maps. */
import { Router } from 'express';
import { z } from 'zod';
import type { SessionStore } from '../sinks/session-store.ts';
import type { scheduleExplanations } from '../sinks/explain-jobs.ts';
import { mapsUrl } from '@sharedlens/shared';
import { apiError } from './api-error.ts';

const explainRequestSchema = z.object({ channelId: z.string().min(1).max(256), driverId: z.string().min(1).max(256) }).strict();

export interface ModelsRouterDeps {
  store: SessionStore;
  /** False when compute.features is off. */
  modelsOn: boolean;
  minStimuli: number;
  computeStatus: { features: Record<string, string> };
  explanations: ReturnType<typeof scheduleExplanations> | null;
}

/** Routes mounted at /api/sessions: GET /:id/models, GET /:id/explanations (every computed pair without its maps, which are PNG), POST /:id/explanations (maps of one driver on request). */
export function modelsRouter(deps: ModelsRouterDeps): Router {
  const { store, explanations } = deps;
  const router = Router();
  router.get('/:id/models', (req, res) => {
    const rt = store.get(req.params.id);
    if (!rt) return apiError(res, 404, 'unknown-session', `no live session or replay "${req.params.id}"`);
    if (!deps.modelsOn) return apiError(res, 409, 'no-models', 'encoding models are off (compute.features is false)');
    const models = store.models(rt);
    if (!models) return apiError(res, 409, 'no-models', `no models yet: features ${deps.computeStatus.features[rt.start.stimulusSetId] ?? 'pending'}, or fewer than ${deps.minStimuli} stimuli seen`);
    // the report thread's own JSON text of it (a report of 1,536 channels is about a megabyte to stringify)
    const json = store.modelsJson(rt);
    if (json) res.type('application/json').send(json);
    else res.json(models);
  });
  // maps for any driver of a channel, on request (issue 15): 200 with the pair when its maps are fresh,
  // 202 when queued (they arrive as explain:ready and in GET /:id/explanations), 4xx with the reason
  router.post('/:id/explanations', (req, res) => {
    if (!store.get(req.params.id)) return apiError(res, 404, 'unknown-session', `no live session or replay "${req.params.id}"`);
    if (!explanations) return apiError(res, 409, 'no-maps', 'shared-feature maps are off (compute.features or compute.maps.enabled is false)');
    const body = explainRequestSchema.safeParse(req.body);
    if (!body.success) return apiError(res, 400, 'bad-request', `expected { channelId, driverId }: ${body.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}`);
    const r = explanations.request(req.params.id, body.data.channelId, body.data.driverId);
    if (r.status === 'rejected') return apiError(res, r.code === 'queue-full' ? 503 : r.code === 'no-models' || r.code === 'no-readout' ? 409 : 404, r.code, r.message);
    if (r.status === 'queued') return res.status(202).json({ status: 'queued', key: r.key });
    const { driverMap: _d, referenceMap: _r, ...e } = r.explanation!;
    res.json({ status: 'ready', key: r.key, explanation: { ...e, maps: mapsUrl(e.sessionId, e) } });
  });
  router.get('/:id/explanations', (req, res) => {
    if (!store.get(req.params.id)) return apiError(res, 404, 'unknown-session', `no live session or replay "${req.params.id}"`);
    const list = [...(explanations?.results.get(req.params.id)?.values() ?? [])];
    res.json({
      queued: explanations?.queued() ?? 0,
      // never every map in one JSON (35.7 MB for 266 pairs froze the dashboard, issue 16): each pair names
      // its maps' PNG, and /:id/driver-pairs lists the current pairs paged
      explanations: list.map(({ driverMap: _d, referenceMap: _r, ...e }) => ({ ...e, maps: mapsUrl(e.sessionId, e) })),
    });
  });
  return router;
}
