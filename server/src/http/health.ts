/** `/api/health` (open: liveness for monitors) and `/api/status` (every session's snapshot or summary). */
import { Router } from 'express';
import type { SessionStore } from '../sinks/session-store.ts';
import type { StimulusSet } from '../stimulus-sets.ts';

export interface HealthRouterDeps {
  store: SessionStore;
  rejectedCounts: { total: number; byCode: Record<string, number> };
  computeStatus: { backend: string | null; features: Record<string, string> };
  stimulusSets: Map<string, StimulusSet>;
  /** Clustered: the nodes, the workers and the job queues (cluster/cluster-status.ts). */
  cluster?: () => Promise<unknown>;
}

/** GET /health: uptime, session count, rejected inputs, compute status; clustered, nodes, workers and queues. */
export function healthRouter(deps: HealthRouterDeps): Router {
  const router = Router();
  router.get('/health', async (_req, res) => {
    const cluster = deps.cluster ? await deps.cluster().catch((e: Error) => ({ error: `redis: ${e.message}` })) : undefined;
    res.json({ status: 'ok', uptimeS: Math.round(process.uptime()), sessions: deps.store.all().length, rejectedInputs: deps.rejectedCounts.total, compute: deps.computeStatus, ...(cluster ? { cluster } : {}) });
  });
  return router;
}

/** GET /status: the sessions' snapshots (or summaries), rejection counts and stimulus set ids. */
export function statusRouter(deps: HealthRouterDeps): Router {
  const router = Router();
  router.get('/status', async (_req, res) => {
    const cluster = deps.cluster ? await deps.cluster().catch((e: Error) => ({ error: `redis: ${e.message}` })) : undefined;
    res.json({
      ...(cluster ? { cluster } : {}),
      sessions: deps.store.all().map((rt) => deps.store.snapshot(rt, false) ?? deps.store.summary(rt)),
      rejected: deps.rejectedCounts,
      stimulusSets: [...deps.stimulusSets.keys()],
    });
  });
  return router;
}
