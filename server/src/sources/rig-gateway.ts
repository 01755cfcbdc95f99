/**
 * The live rig source: the socket.io `/rig` namespace. Each event carries one msgpack payload and an
 * acknowledgement callback. An event is decoded, checked against its schema and its session, recorded,
 * acknowledged and only then fed to the session's pipeline; anything else becomes a rejection record
 * (acknowledged with every field error, counted and logged by the rejection sink).
 */
import { Subject } from 'rxjs';
import type { Namespace, Socket } from 'socket.io';
import {
  decodePayload,
  fieldErrors,
  rigEventNames,
  rigEventSchemas,
  type Ack,
  type AckError,
  type Frame,
  type RigEventName,
  type Suggestion,
} from '@sharedlens/shared';
import type { Recorder } from '../sinks/recorder.ts';
import type { Runtime, SessionStore } from '../sinks/session-store.ts';
import type { StimulusSet } from '../stimulus-sets.ts';
import { applyFrame, checkEvent, createGuard } from './ingest-guard.ts';
import { TokenBucket } from './token-bucket.ts';

export interface Rejection {
  atMs: number;
  socketId: string;
  event: string;
  sessionId?: string;
  error: AckError;
}

export interface RigGatewayDeps {
  store: SessionStore;
  recorder: Recorder;
  stimulusSets: Map<string, StimulusSet>;
  limits: { maxPayloadBytes: number; eventsPerSec: number; burstEvents: number };
  now?: () => number;
  /** Follow-up suggestions for a session (followup-service.ts). */
  followups?: (rt: Runtime, ask: Record<string, unknown>) => { suggestions: Suggestion[]; notes: string[] } | { error: AckError };
  /** Log line for things that are not rejections (gaps, resumes, torn tails). */
  log: (level: 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => void;
}

type AckFn = (ack: Ack<unknown>) => void;

/** Attaches the rig protocol to a namespace; returns the stream of rejections. */
export function attachRigGateway(nsp: Namespace, deps: RigGatewayDeps): { rejections$: Subject<Rejection>; pushToRig: (sessionId: string, event: string, payload: unknown) => number } {
  const rejections$ = new Subject<Rejection>();
  const now = deps.now ?? Date.now;
  const owned = new Map<string, Set<string>>(); // socket id -> session ids it drives

  nsp.on('connection', (socket: Socket) => {
    const bucket = new TokenBucket(deps.limits.burstEvents, deps.limits.eventsPerSec, now);
    owned.set(socket.id, new Set());
    for (const name of rigEventNames) socket.on(name, (payload: unknown, ack: unknown) => handle(socket, bucket, name, payload, ack));
    socket.onAny((event: string, ...args: unknown[]) => {
      if ((rigEventNames as string[]).includes(event)) return;
      const ack = args[args.length - 1];
      reject(socket, event, typeof ack === 'function' ? (ack as AckFn) : null, undefined, { code: 'invalid', message: `unknown event "${event}"; known: ${rigEventNames.join(', ')}` });
    });
    socket.on('disconnect', (reason) => {
      for (const id of owned.get(socket.id) ?? []) {
        const rt = deps.store.get(id);
        if (rt && rt.state === 'live') {
          deps.store.setState(rt, 'disconnected');
          deps.log('warn', 'rig disconnected; session waits for session:resume', { sessionId: id, reason });
        }
      }
      owned.delete(socket.id);
    });
  });

  function reject(socket: Socket, event: string, ack: AckFn | null, sessionId: string | undefined, error: AckError): void {
    rejections$.next({ atMs: now(), socketId: socket.id, event, ...(sessionId ? { sessionId } : {}), error });
    if (ack) ack({ error });
    else socket.emit('rig:error', { event, error });
  }

  function handle(socket: Socket, bucket: TokenBucket, event: RigEventName, payload: unknown, rawAck: unknown): void {
    const ack = typeof rawAck === 'function' ? (rawAck as AckFn) : null;
    if (!bucket.take()) return reject(socket, event, ack, undefined, { code: 'rate-limited', message: `more than ${deps.limits.eventsPerSec} events/s (burst ${deps.limits.burstEvents}); slow down or batch bins` });
    if (!ack) return reject(socket, event, null, undefined, { code: 'invalid', message: `${event} needs an acknowledgement callback` });
    // msgpack bytes are the protocol; JSON text is accepted too, for clients without msgpack (docs/protocol.md)
    const isText = typeof payload === 'string';
    if (!(payload instanceof Uint8Array) && !isText) return reject(socket, event, ack, undefined, { code: 'malformed', message: 'payload must be one msgpack-encoded binary argument (or one JSON text argument)' });
    const size = isText ? Buffer.byteLength(payload) : payload.byteLength;
    if (size > deps.limits.maxPayloadBytes) return reject(socket, event, ack, undefined, { code: 'too-large', message: `payload of ${size} bytes exceeds maxPayloadBytes ${deps.limits.maxPayloadBytes}` });
    let decoded: unknown;
    try {
      decoded = isText ? JSON.parse(payload) : decodePayload(payload);
    } catch (e) {
      return reject(socket, event, ack, undefined, { code: 'malformed', message: `payload is not valid ${isText ? 'JSON' : 'msgpack'}: ${(e as Error).message}` });
    }
    const parsed = rigEventSchemas[event].safeParse(decoded);
    if (!parsed.success) {
      const sid = (decoded as { sessionId?: unknown } | null)?.sessionId;
      return reject(socket, event, ack, typeof sid === 'string' ? sid : undefined, { code: 'invalid', message: `${event} payload does not match the protocol`, details: fieldErrors(parsed.error) });
    }
    const p = parsed.data as Record<string, unknown>;
    try {
      if (event === 'session:start') return startSession(socket, ack, p);
      if (event === 'session:resume') return resumeSession(socket, ack, p.sessionId as string);
      sessionEvent(socket, ack, event, p as Record<string, unknown> & { sessionId: string; seq: number });
    } catch (e) {
      reject(socket, event, ack, p.sessionId as string | undefined, { code: 'storage', message: `could not record the event: ${(e as Error).message}` });
    }
  }

  function startSession(socket: Socket, ack: AckFn, p: Record<string, unknown>): void {
    const start = rigEventSchemas['session:start'].parse(p);
    const set = deps.stimulusSets.get(start.stimulusSetId);
    if (!set) return reject(socket, 'session:start', ack, undefined, { code: 'unknown-stimulus', message: `unknown stimulus set "${start.stimulusSetId}"; known: ${[...deps.stimulusSets.keys()].join(', ')}` });
    const stimuli = set.manifest.stimuli;
    if (start.preferredCategory && !stimuli.some((s) => s.category === start.preferredCategory)) {
      return reject(socket, 'session:start', ack, undefined, { code: 'invalid', message: `preferredCategory "${start.preferredCategory}" is not a category of set ${set.manifest.id}` });
    }
    const startedAt = new Date(now()).toISOString();
    const sessionId = `${startedAt.replace(/[-:]/g, '').replace('T', '-').slice(0, 15)}-${start.rigId.replace(/[^A-Za-z0-9]/g, '').slice(0, 24)}-${Math.random().toString(36).slice(2, 8)}`;
    const frame: Extract<Frame, { type: 'session:start' }> = { type: 'session:start', sessionId, startedAt, start, stimuli };
    deps.recorder.create(frame, now());
    deps.store.startLive(frame, createGuard(sessionId, start, stimuli));
    owned.get(socket.id)?.add(sessionId);
    deps.log('info', 'session started', { sessionId, rigId: start.rigId, channels: start.channels.length });
    ack({ data: { sessionId, lastSeq: 0 } });
  }

  function resumeSession(socket: Socket, ack: AckFn, sessionId: string): void {
    let rt = deps.store.get(sessionId);
    if (!rt && deps.recorder.meta(sessionId)) rt = reload(sessionId) ?? undefined;
    if (!rt || rt.kind !== 'live' || !rt.guard) return reject(socket, 'session:resume', ack, sessionId, { code: 'unknown-session', message: `no live or resumable session "${sessionId}"` });
    if (rt.guard.ended) return reject(socket, 'session:resume', ack, sessionId, { code: 'session-ended', message: `session ${sessionId} has ended` });
    owned.get(socket.id)?.add(sessionId);
    if (rt.state !== 'live') deps.store.setState(rt, 'live');
    deps.log('info', 'session resumed', { sessionId, lastSeq: rt.guard.lastAcceptedSeq });
    ack({ data: { sessionId, lastSeq: rt.guard.lastAcceptedSeq } });
  }

  /** Reopens a session recorded by an earlier server process and rebuilds its state from the log. */
  function reload(sessionId: string): Runtime | null {
    const meta = deps.recorder.meta(sessionId);
    if (!meta || meta.state === 'ended') return null;
    const { records, tornBytes, invalid } = deps.recorder.reopen(sessionId);
    if (tornBytes > 0) deps.log('warn', 'dropped a torn last record of the session log', { sessionId, tornBytes });
    if (invalid) deps.log('warn', 'session log holds an invalid record; replay stops there', { sessionId, invalid });
    const first = records[0]?.frame;
    if (!first || first.type !== 'session:start') return null;
    const guard = createGuard(sessionId, first.start, first.stimuli);
    const backlog = records.slice(1).map((r) => r.frame);
    for (const f of backlog) applyFrame(guard, f);
    deps.log('info', 'session reloaded from its log', { sessionId, records: records.length });
    return deps.store.startLive(first, guard, backlog);
  }

  /** Sends an event to every rig connection driving the session; returns how many got it. */
  function pushToRig(sessionId: string, event: string, payload: unknown): number {
    let n = 0;
    for (const [socketId, ids] of owned) {
      if (!ids.has(sessionId)) continue;
      nsp.sockets.get(socketId)?.emit(event, payload);
      n++;
    }
    return n;
  }

  /** followup:request: suggestions are computed, recorded as a followup:suggested frame, and acknowledged. */
  function followupRequest(socket: Socket, ack: AckFn, rt: Runtime, p: Record<string, unknown> & { sessionId: string; seq: number }): void {
    const g = rt.guard!;
    const result = deps.followups ? deps.followups(rt, p) : { error: { code: 'invalid' as const, message: 'follow-ups are not available on this server' } };
    if ('error' in result) {
      g.lastSeq = p.seq;
      return reject(socket, 'followup:request', ack, g.sessionId, result.error);
    }
    const frame: Frame = { type: 'followup:suggested', sessionId: g.sessionId, seq: p.seq, origin: 'rig', atMs: now(), suggestions: result.suggestions };
    deps.recorder.append({ atMs: now(), frame });
    applyFrame(g, frame);
    ack({ data: { seq: p.seq, duplicate: false, suggestions: result.suggestions, ...(result.notes.length ? { notes: result.notes } : {}) } });
    deps.store.feed(rt, frame);
  }

  function sessionEvent(socket: Socket, ack: AckFn, event: Exclude<RigEventName, 'session:start' | 'session:resume'>, p: Record<string, unknown> & { sessionId: string; seq: number }): void {
    const rt = deps.store.get(p.sessionId);
    if (!rt || !rt.guard) return reject(socket, event, ack, p.sessionId, { code: 'unknown-session', message: `unknown session "${p.sessionId}"; start one or resume it first` });
    const g = rt.guard;
    if (p.seq <= g.lastSeq) return ack({ data: { seq: p.seq, duplicate: true } });
    const gap = p.seq > g.lastSeq + 1 ? { from: g.lastSeq + 1, to: p.seq - 1 } : undefined;
    if (gap) {
      g.seqGaps++;
      deps.log('warn', 'sequence gap: events missing from the rig', { sessionId: g.sessionId, ...gap });
    }
    if (g.ended) {
      g.lastSeq = p.seq;
      return reject(socket, event, ack, g.sessionId, { code: 'session-ended', message: `session ${g.sessionId} has ended; start a new session` });
    }
    if (event === 'followup:request') return followupRequest(socket, ack, rt, p);
    const checked = checkEvent(g, event, p);
    if ('error' in checked) {
      g.lastSeq = p.seq; // a rejected event consumes its number (docs/protocol.md)
      return reject(socket, event, ack, g.sessionId, checked.error);
    }
    // throws on I/O failure before any state changed: the rig may resend the same seq
    deps.recorder.append({ atMs: now(), frame: checked.frame });
    applyFrame(g, checked.frame);
    ack({ data: { seq: p.seq, duplicate: false, ...(gap ? { gap } : {}) } });
    deps.store.feed(rt, checked.frame);
    if (checked.frame.type === 'session:end') {
      deps.recorder.finish(g.sessionId, 'ended', rt.latest?.trialsCompleted);
      deps.store.setState(rt, 'ended');
      deps.log('info', 'session ended', { sessionId: g.sessionId, trials: rt.latest?.trialsCompleted });
    }
  }

  return { rejections$, pushToRig };
}
