/**
 * What a node adds to the app when clustered (docs/deploy.md): the socket.io Redis adapter (a room's emit
 * reaches the dashboards of every node), answers to the other nodes (a watched session's snapshot, a
 * follow-up asked for on another node's dashboard, a control of a replay this node runs), and HTTP requests for a session another node runs
 * forwarded to it (a proxy, not a redirect: the browser keeps one origin and one sign-in cookie).
 */
import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Request, Response, NextFunction } from 'express';
import { createAdapter } from '@socket.io/redis-adapter';
import type { Namespace, Server } from 'socket.io';
import type { Ack, SessionSnapshot } from '@sharedlens/shared';
import type { Person } from '../auth/sign-in.ts';
import type { SessionStore } from '../sinks/session-store.ts';
import { apiError } from '../http/api-error.ts';
import { CLUSTER_KEY_HEADER, type ClusterNode } from './cluster-node.ts';
import type { MapQueue } from './map-jobs.ts';
import type { FeatureQueue } from './feature-jobs.ts';
import type { RefitQueue } from './refit-jobs.ts';

/** Header of a request one node forwards to another: the cluster's key, and the signed-in person as JSON. */
const KEY_HEADER = CLUSTER_KEY_HEADER;
const PERSON_HEADER = 'x-sharedlens-person';

/** True when `value` (a request header) is the cluster's key, compared in constant time. */
export function keyMatches(node: ClusterNode, value: unknown): boolean {
  return typeof value === 'string' && !!node.key && value.length === node.key.length && timingSafeEqual(Buffer.from(value), Buffer.from(node.key));
}

/** How long a node waits for the others' answers (a snapshot, a follow-up) before it gives up. */
export const REMOTE_TIMEOUT_MS = 3000;

/** Puts every namespace of `io` on the Redis adapter (rooms and broadcasts across nodes). */
export function useRedisAdapter(io: Server, node: ClusterNode): void {
  io.adapter(createAdapter(node.redis, node.duplicate(), { key: `${node.prefix}socket.io`, requestsTimeout: REMOTE_TIMEOUT_MS }));
}

export interface RemoteSessions {
  /** Snapshot (with per-stimulus detail) of a session or replay another node runs, or null. */
  snapshot(sessionId: string): Promise<SessionSnapshot | null>;
  /** A follow-up asked for on this node for a session another node runs: that node computes, records and pushes it. */
  followup(sessionId: string, body: Record<string, unknown>, by?: string): Promise<Ack<unknown> | null>;
  /** A replay another node runs, paused, resumed, sought, sped up or stopped there (replay:control's body). */
  replayControl(replayId: string, body: unknown): Promise<Ack<unknown> | null>;
  /** Asks the node that holds a session to let go of it because its rig resumes it here (null: no node runs it). */
  handover(sessionId: string, rig: string): Promise<Ack<unknown> | null>;
}

type Local = {
  store: SessionStore;
  followups?: (sessionId: string, body: Record<string, unknown>, by?: string) => Ack<unknown>;
  replayControl?: (body: unknown) => Ack<unknown>;
  /** Closes a session whose rig left it, for `rig` to resume on another node, and gives up its hold. */
  handover?: (sessionId: string, rig: string) => Promise<Ack<unknown>>;
};

/** Asks every other node; the one that runs the session answers, the others answer null. */
function ask<T>(nsp: Namespace, event: string, ...args: unknown[]): Promise<T | null> {
  return new Promise((resolve) => {
    // a node that does not answer in time is left out (its answers are logged by socket.io as a timeout)
    (nsp.serverSideEmit as (ev: string, ...a: unknown[]) => boolean)(event, ...args, (_err: Error | null, answers: (T | null)[] = []) => resolve(answers.find((a) => a !== null && a !== undefined) ?? null));
  });
}

/** Answers the other nodes' questions about this node's sessions, and asks them about theirs. */
export function remoteSessions(nsp: Namespace, local: Local): RemoteSessions {
  nsp.on('cluster:snapshot', (sessionId: unknown, reply: (s: SessionSnapshot | null) => void) => {
    const rt = typeof sessionId === 'string' ? local.store.get(sessionId) : undefined;
    reply(rt ? local.store.snapshot(rt, true) : null);
  });
  nsp.on('cluster:followup', (m: { sessionId: string; body: Record<string, unknown>; by?: string }, reply: (r: Ack<unknown> | null) => void) => {
    if (!local.store.get(m?.sessionId) || !local.followups) return reply(null);
    try {
      reply(local.followups(m.sessionId, m.body, m.by));
    } catch (e) {
      reply({ error: { code: 'storage', message: `follow-up failed on the session's node: ${(e as Error).message}` } });
    }
  });
  nsp.on('cluster:replay-control', (m: { replayId: string; body: unknown }, reply: (r: Ack<unknown> | null) => void) => {
    if (!local.store.get(m?.replayId)?.replay || !local.replayControl) return reply(null);
    reply(local.replayControl(m.body));
  });
  nsp.on('cluster:handover', (m: { sessionId: string; rig: string }, reply: (r: Ack<unknown> | null) => void) => {
    if (!local.store.get(m?.sessionId) || !local.handover) return reply(null);
    local.handover(m.sessionId, String(m.rig)).then(reply, (e: Error) => reply({ error: { code: 'storage', message: `handing the session over failed: ${e.message}` } }));
  });
  return {
    snapshot: (sessionId) => ask<SessionSnapshot>(nsp, 'cluster:snapshot', sessionId),
    handover: (sessionId, rig) => ask<Ack<unknown>>(nsp, 'cluster:handover', { sessionId, rig }),
    replayControl: (replayId, body) => ask<Ack<unknown>>(nsp, 'cluster:replay-control', { replayId, body }),
    followup: (sessionId, body, by) => ask<Ack<unknown>>(nsp, 'cluster:followup', { sessionId, body, ...(by ? { by } : {}) }),
  };
}

/**
 * A rig resuming here a session another node holds (live handover): the hold is taken when free; otherwise
 * the holder is asked to let go (it does when the session's rig left it) and the hold is taken then. Resolves
 * to null when taken, or to why not. `forget` drops this node's cached copy of the session's meta.json.
 */
export async function claimOrHandOver(node: ClusterNode, remote: () => RemoteSessions | undefined, sessionId: string, rig: string, forget: () => void): Promise<string | null> {
  forget();
  const refused = await node.claim(sessionId);
  if (!refused) return null;
  const other = remote();
  if (!other) return refused;
  const handed = await other.handover(sessionId, rig);
  if (!handed) return `${refused}; no node answered the request to hand it over within ${REMOTE_TIMEOUT_MS / 1000} s (the holder is busy, or gone and its hold not yet expired): retry`;
  if ('error' in handed) return `${refused}; that node did not hand it over: ${handed.error.message}`;
  forget();
  return node.claim(sessionId);
}

/** The holder's side of a handover: the session closed here (`handOver`, the rig gateway's), then its hold given up. */
export async function handOverAndRelease(node: ClusterNode, handOver: (sessionId: string, rig: string) => string | null, sessionId: string, rig: string): Promise<Ack<unknown>> {
  const why = handOver(sessionId, rig);
  if (why) return { error: { code: 'not-owner', message: why } };
  await node.release(sessionId);
  return { data: { handedOver: sessionId } };
}

/** Before sign-in: a request forwarded by another node of the cluster carries its person (the key proves the node). */
export function trustForwarded(node: ClusterNode) {
  return (req: Request, res: Response, next: NextFunction) => {
    if (keyMatches(node, req.headers[KEY_HEADER])) {
      try {
        const person = JSON.parse(String(req.headers[PERSON_HEADER])) as Person;
        if (typeof person?.name === 'string' && (person.role === 'viewer' || person.role === 'operator')) res.locals.person = { name: person.name, role: person.role };
      } catch {
        // no person: the request goes on unsigned and sign-in refuses it
      }
    }
    next();
  };
}

/**
 * For `/api/sessions/:id/...` (mounted after sign-in): a session this node does not run but another one does
 * is forwarded to that node, with the signed-in person; its answer is passed back as it is. A node that
 * cannot be reached gives 502 with its name.
 */
export function forwardToRunningNode(node: ClusterNode, store: SessionStore, log: (msg: string, fields: Record<string, unknown>) => void) {
  return (req: Request, res: Response, next: NextFunction) => {
    const id = req.params.id;
    if (typeof id !== 'string' || store.get(id)) return next();
    const target = node.nodeRunning(id);
    if (!target?.url) return next();
    const url = new URL(req.originalUrl, target.url);
    const body = req.body !== undefined && req.method !== 'GET' && req.method !== 'HEAD' ? JSON.stringify(req.body) : null;
    const headers: Record<string, string> = { [KEY_HEADER]: node.key, [PERSON_HEADER]: JSON.stringify(res.locals.person ?? null), accept: String(req.headers.accept ?? '*/*') };
    if (body !== null) Object.assign(headers, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
    const out = (url.protocol === 'https:' ? https : http).request(url, { method: req.method, headers, timeout: 30_000 }, (answer) => {
      res.status(answer.statusCode ?? 502);
      for (const h of ['content-type', 'content-length', 'content-disposition', 'cache-control', 'etag']) if (answer.headers[h]) res.setHeader(h, answer.headers[h]!);
      res.setHeader('x-sharedlens-node', target.nodeId);
      answer.pipe(res);
    });
    out.on('timeout', () => out.destroy(new Error('no answer within 30 s')));
    out.on('error', (e) => {
      log('could not forward a request to the node running the session', { sessionId: id, node: target.nodeId, error: e.message });
      if (!res.headersSent) apiError(res, 502, 'node-unreachable', `session ${id} runs on node "${target.nodeId}" (${target.url}), which did not answer: ${e.message}`);
      else res.destroy();
    });
    out.end(body ?? undefined);
  };
}

/** How long health waits for the queue's figures (BullMQ's connections wait for Redis without end). */
const HEALTH_TIMEOUT_MS = 2000;

/** The `cluster` object of /api/health and /api/status: nodes, and the map, feature and refit queues with their workers. */
export async function clusterHealth(node: ClusterNode, maps: MapQueue | null, features: FeatureQueue | null = null, refits: RefitQueue | null = null): Promise<Record<string, unknown>> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from Redis within ${HEALTH_TIMEOUT_MS} ms`)), HEALTH_TIMEOUT_MS);
  });
  const [mapJobs, featureJobs, refitJobs] = await Promise.all([
    maps ? Promise.race([maps.status(), late]).catch((e: Error) => ({ error: `map queue: ${e.message}` })) : 'computed on this node (cluster.mapsOnWorkers false, or maps off)',
    features ? Promise.race([features.status(), late]).then((s) => ({ ...s, partsComputedHere: features.localParts })).catch((e: Error) => ({ error: `feature queue: ${e.message}` })) : 'computed on this node (cluster.featuresOnWorkers false, or features off)',
    refits ? Promise.race([refits.status(), late]).then((s) => ({ ...s, refitsComputedHere: refits.localFits, cacheHits: refits.cacheHits, lastBy: refits.lastBy })).catch((e: Error) => ({ error: `refit queue: ${e.message}` })) : 'computed on this node (cluster.refitsOnWorkers false, or features off)',
  ]);
  clearTimeout(timer);
  return { nodeId: node.nodeId, nodes: node.nodes(), lastHeartbeatAgeMs: node.lastHeartbeatAt ? Date.now() - node.lastHeartbeatAt : null, mapJobs, featureJobs, refitJobs };
}
