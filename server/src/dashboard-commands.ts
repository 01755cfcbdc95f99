/**
 * Commands from dashboards on `/dashboard` (and the same operations for the HTTP API): watch a
 * session, start a replay, control it. Payloads are validated; answers are `{ data } | { error }`.
 */
import type { Namespace, Socket } from 'socket.io';
import { z } from 'zod';
import {
  dashboardEvents,
  fieldErrors,
  replayControlSchema,
  sessionReplaySchema,
  sessionWatchSchema,
  strategySchema,
  type Ack,
  type ReplayControl,
  type ReplayProgress,
  type SessionSummary,
  type Suggestion,
} from '@sharedlens/shared';
import type { RemoteSessions } from './cluster/attach-cluster.ts';
import { replayProgress, watchRoom } from './sinks/dashboard-broadcast.ts';
import { Recorder } from './sinks/recorder.ts';
import type { Runtime, SessionStore } from './sinks/session-store.ts';

/** A follow-up request from the dashboard: the rig request without seq. */
const followupAskSchema = z.object({ sessionId: z.string().min(1).max(128), count: z.number().int().min(1).max(200), strategy: strategySchema.optional(), mix: z.partialRecord(strategySchema, z.number().min(0)).optional(), neurons: z.array(z.string()).max(8192).optional(), poolSetIds: z.array(z.string()).max(32).optional() });

export interface CommandDeps {
  store: SessionStore;
  recorder: Recorder;
  /** Computes, records and delivers follow-up suggestions asked for from the dashboard. */
  followups?: (rt: Runtime, body: Record<string, unknown>, by?: string) => Result<{ suggestions: Suggestion[]; notes: string[]; sentToRig: number }>;
  log: (msg: string, fields: Record<string, unknown>) => void;
  /** Replays running at once (limits.maxReplays, default 4); finished ones beyond it are freed, oldest first. */
  maxReplays?: number;
  /** Clustered: every node's sessions for the list, and the sessions other nodes run (cluster/attach-cluster.ts). */
  cluster?: { sessions: () => SessionSummary[]; remote: RemoteSessions };
}

type Result<T> = Ack<T>;
const fail = (code: 'invalid' | 'unknown-session' | 'storage', message: string, details?: string[]): Result<never> => ({ error: { code, message, ...(details ? { details } : {}) } });

/** Starts a replay of a recorded session; returns its replay id. */
export function startReplay(deps: CommandDeps, body: unknown): Result<{ replayId: string; records: number }> {
  const p = sessionReplaySchema.safeParse(body);
  if (!p.success) return fail('invalid', 'session:replay needs { sessionId, speed }', fieldErrors(p.error));
  const { sessionId, speed } = p.data;
  if (!Recorder.isSessionId(sessionId) || !deps.recorder.meta(sessionId)) return fail('unknown-session', `no recorded session "${sessionId}"`);
  const max = deps.maxReplays ?? 4;
  const replays = deps.store.all().filter((r) => r.replay);
  const running = replays.filter((r) => !r.replay!.done);
  if (running.length >= max) return fail('invalid', `${running.length} replays are running, the limit (limits.maxReplays ${max}); stop one first`);
  // finished replays keep their final statistics until the cap needs the room (oldest first)
  for (const r of replays.filter((r) => r.replay!.done).slice(0, Math.max(0, replays.length - max + 1))) deps.store.remove(r);
  const source = deps.recorder.source(sessionId);
  if (source.damaged.length) deps.log('session log is damaged; the replay skips the unreadable bytes', { sessionId, damaged: source.damaged });
  if (source.tornBytes) deps.log('session log ends in a torn record; it is skipped', { sessionId, tornBytes: source.tornBytes });
  if (!source.total) return fail('storage', `session "${sessionId}" has no readable records`);
  const rt = deps.store.startReplay(sessionId, source, speed === 'max' ? Infinity : speed);
  return { data: { replayId: rt.id, records: source.total } };
}

/** Pauses, resumes, seeks, changes the speed of or stops a replay. */
export function controlReplay(deps: CommandDeps, body: unknown): Result<ReplayProgress | { stopped: true }> {
  const p = replayControlSchema.safeParse(body);
  if (!p.success) return fail('invalid', 'replay:control needs { replayId, action }', fieldErrors(p.error));
  const c: ReplayControl = p.data;
  const rt = deps.store.get(c.replayId);
  if (!rt?.replay) return fail('unknown-session', `no replay "${c.replayId}"`);
  const r = rt.replay;
  switch (c.action) {
    case 'pause':
      r.controls.paused$.next(true);
      break;
    case 'resume':
      r.controls.paused$.next(false);
      break;
    case 'speed':
      if (c.speed === undefined) return fail('invalid', 'action "speed" needs speed');
      r.controls.speed$.next(c.speed === 'max' ? Infinity : c.speed);
      break;
    case 'seek':
      if (c.toRecord === undefined || c.toRecord > r.total) return fail('invalid', `action "seek" needs toRecord in 0..${r.total}`);
      r.seek$.next(c.toRecord);
      break;
    case 'stop':
      deps.store.remove(rt);
      return { data: { stopped: true } };
  }
  deps.store.changed$.next(rt);
  return { data: replayProgress(rt)! };
}

/** Wires the dashboard commands onto the namespace. */
export function attachDashboardCommands(nsp: Namespace, deps: CommandDeps): void {
  nsp.on('connection', (socket: Socket) => {
    socket.emit(dashboardEvents.sessionsUpdated, deps.cluster ? deps.cluster.sessions() : deps.store.all().map((rt) => deps.store.summary(rt)));
    const on = (event: string, fn: (body: unknown) => Result<unknown> | Promise<Result<unknown>>) =>
      socket.on(event, async (body: unknown, ack: unknown) => {
        let res: Result<unknown>;
        try {
          res = await fn(body);
        } catch (e) {
          // a fault (disk, a log too damaged to open) is answered as an error; the process keeps running
          res = fail('storage', `${event} failed: ${(e as Error).message}`);
        }
        if ('error' in res) deps.log(`dashboard command rejected: ${res.error.message}`, { event, code: res.error.code });
        if (typeof ack === 'function') ack(res);
      });
    on(dashboardEvents.sessionWatch, (body) => {
      const p = sessionWatchSchema.safeParse(body);
      if (!p.success) return fail('invalid', 'session:watch needs { sessionId }', fieldErrors(p.error));
      const rt = deps.store.get(p.data.sessionId);
      if (!rt && deps.cluster) return watchRemote(p.data.sessionId);
      if (!rt) return fail('unknown-session', `no live session or replay "${p.data.sessionId}"`);
      for (const room of socket.rooms) if (room.startsWith('watch:')) void socket.leave(room);
      void socket.join(watchRoom(rt.id));
      return { data: deps.store.snapshot(rt, true) };
    });
    on(dashboardEvents.sessionReplay, (body) => startReplay(deps, body));
    on(dashboardEvents.followupRequest, (body) => {
      const p = followupAskSchema.safeParse(body);
      if (!p.success) return fail('invalid', 'followup:request needs { sessionId, count, strategy | mix, neurons? }', fieldErrors(p.error));
      const rt = deps.store.get(p.data.sessionId);
      const by = (socket.data.person as { name?: string } | undefined)?.name;
      // clustered: the node that runs the session computes, records and pushes to its rig
      if (!rt && deps.cluster) return deps.cluster.remote.followup(p.data.sessionId, p.data, by).then((r) => r ?? fail('unknown-session', `no live session or replay "${p.data.sessionId}" on any node`));
      if (!rt) return fail('unknown-session', `no live session or replay "${p.data.sessionId}"`);
      if (!deps.followups) return fail('invalid', 'follow-ups are not available on this server');
      return deps.followups(rt, p.data, by);
    });
    /** A session another node runs: its rooms reach this socket through the Redis adapter; the snapshot is asked for. */
    async function watchRemote(sessionId: string): Promise<Result<unknown>> {
      const snap = await deps.cluster!.remote.snapshot(sessionId);
      if (!snap) return fail('unknown-session', `no live session or replay "${sessionId}" on any node`);
      for (const room of socket.rooms) if (room.startsWith('watch:')) void socket.leave(room);
      void socket.join(watchRoom(sessionId));
      return { data: snap };
    }
    on(dashboardEvents.replayControl, (body) => {
      const id = (body as { replayId?: unknown } | null)?.replayId;
      // clustered: a replay another node runs is controlled there (its progress comes back through the adapter)
      if (deps.cluster && typeof id === 'string' && !deps.store.get(id)) return deps.cluster.remote.replayControl(id, body).then((r) => r ?? fail('unknown-session', `no replay "${id}" on any node`));
      return controlReplay(deps, body);
    });
  });
}
