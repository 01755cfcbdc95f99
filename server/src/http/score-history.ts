/** `/api/sessions/:id/score-history/:channelId`: a channel's model scores over the whole session. */
import { Router } from 'express';
import { asyncScheduler, groupBy, map, merge, mergeMap, throttleTime, type SchedulerLike, type Subscription } from 'rxjs';
import { addScores, createScoreHistory, type ScoreHistory } from '../compute/score-history.ts';
import type { SessionStore } from '../sinks/session-store.ts';
import { apiError } from './api-error.ts';

/**
 * Records every session's model scores (looked at every `intervalMs` on a statistics update or a new model
 * report; kept after the session ends). A report finished after the session's last trial is recorded too.
 */
export function recordScoreHistory(store: SessionStore, intervalMs = 500, scheduler: SchedulerLike = asyncScheduler): { histories: Map<string, ScoreHistory>; sub: Subscription } {
  const histories = new Map<string, ScoreHistory>();
  const versions = new Map<string, number>();
  const sub = merge(store.updates$.pipe(map((u) => u.runtime)), store.modelsReady$)
    .pipe(
      groupBy((rt) => rt.id),
      mergeMap((g) => g.pipe(throttleTime(intervalMs, scheduler, { leading: true, trailing: true }))),
    )
    .subscribe((rt) => {
      const m = store.models(rt);
      if (!m || versions.get(rt.id) === m.version || !rt.latest) return;
      versions.set(rt.id, m.version);
      if (!histories.has(rt.id)) histories.set(rt.id, createScoreHistory());
      addScores(histories.get(rt.id)!, rt.latest.trialsCompleted, m.channels);
    });
  return { histories, sub };
}

/** Routes mounted at /api/sessions: GET /:id/score-history/:channelId -> { trials, looR, normalisedR }. */
export function scoreHistoryRouter(histories: Map<string, ScoreHistory>, store: SessionStore): Router {
  const router = Router();
  router.get('/:id/score-history/:channelId', (req, res) => {
    const h = histories.get(req.params.id);
    if (!h && !store.get(req.params.id)) return apiError(res, 404, 'unknown-session', `no live session or replay "${req.params.id}"`);
    const pad = (v: (number | null)[] | undefined) => (h ? h.trials.map((_, i) => v?.[i] ?? null) : []);
    res.json({ sessionId: req.params.id, channelId: req.params.channelId, trials: h?.trials ?? [], looR: pad(h?.looR.get(req.params.channelId)), normalisedR: pad(h?.normalisedR.get(req.params.channelId)) });
  });
  return router;
}
