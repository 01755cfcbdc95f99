/** `/api/sessions`: recorded and live sessions, their statistics, channels, and replays of them. */
import { Router } from 'express';
import type { Config } from '../config.ts';
import { startReplay, type CommandDeps } from '../dashboard-commands.ts';
import { OfflineStats } from '../sessions/offline-stats.ts';
import type { Recorder } from '../sinks/recorder.ts';
import type { SessionStore } from '../sinks/session-store.ts';
import { apiError } from './api-error.ts';

export interface SessionsRouterDeps {
  store: SessionStore;
  recorder: Recorder;
  pipeline: Config['pipeline'];
  commandDeps: CommandDeps;
  /** Clustered: the node that holds a live session, or undefined (none holds it: its node is gone, it is interrupted). */
  ownerOf?: (sessionId: string) => string | undefined;
}

/** Routes under /api/sessions: list, metadata, statistics (`?detail=1`), one channel, start a replay. */
export function sessionsRouter(deps: SessionsRouterDeps): Router {
  const { store, recorder } = deps;
  const router = Router();
  const offline = new OfflineStats(recorder, deps.pipeline);
  /** Clustered: a session left live on disk shows its node, or interrupted when no node holds it any more. */
  const clustered = (m: { sessionId: string; state: string }) => {
    if (!deps.ownerOf || (m.state !== 'live' && m.state !== 'disconnected')) return {};
    const node = deps.ownerOf(m.sessionId);
    return node ? { node } : { state: 'interrupted' as const };
  };
  router.get('/', (_req, res) => {
    if (deps.ownerOf) recorder.forgetMeta();
    res.json(recorder.list().map((m) => ({ ...m, ...(store.get(m.sessionId) ? { state: store.get(m.sessionId)!.state } : clustered(m)) })));
  });
  router.get('/:id', (req, res) => {
    const meta = recorder.meta(req.params.id) ?? (store.get(req.params.id) ? store.summary(store.get(req.params.id)!) : null);
    if (!meta) return apiError(res, 404, 'unknown-session', `no session "${req.params.id}"`);
    res.json(meta);
  });
  router.get('/:id/stats', async (req, res, next) => {
    try {
      const detail = req.query.detail === '1' || req.query.detail === 'true';
      const rt = store.get(req.params.id);
      if (rt) {
        const snap = store.snapshot(rt, detail);
        return snap ? res.json(snap) : apiError(res, 409, 'no-data', 'the session has no statistics yet');
      }
      const meta = recorder.meta(req.params.id);
      if (!meta) return apiError(res, 404, 'unknown-session', `no session "${req.params.id}"`);
      // a recorded session that is not loaded: its log streamed through the pipeline in a worker thread, cached
      const snap = await offline.snapshot(meta.sessionId, detail);
      if (!snap) return apiError(res, 409, 'no-data', 'the session log holds no statistics');
      res.json(snap);
    } catch (e) {
      next(e);
    }
  });
  router.get('/:id/channels/:channelId', (req, res) => {
    const rt = store.get(req.params.id);
    if (!rt?.latest) return apiError(res, 404, 'unknown-session', `no live session or replay "${req.params.id}" with statistics`);
    const detail = store.channelDetail(rt, req.params.channelId);
    if (!detail) return apiError(res, 404, 'unknown-channel', `no channel "${req.params.channelId}" in session ${rt.id}`);
    res.json(detail);
  });
  router.post('/:id/replay', (req, res) => {
    const result = startReplay(deps.commandDeps, { ...(req.body ?? {}), sessionId: req.params.id });
    if ('error' in result) return res.status(result.error.code === 'unknown-session' ? 404 : 400).json(result);
    res.json(result);
  });
  return router;
}
