/**
 * The live rig source: the socket.io `/rig` namespace. Each event carries one msgpack payload and an
 * acknowledgement callback. An event is decoded, checked against its schema and its session, recorded,
 * acknowledged and only then fed to the session's pipeline; anything else becomes a rejection record
 * (acknowledged with every field error, counted and logged by the rejection sink).
 */
import { Subject, filter } from 'rxjs';
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
import type { Note } from '../storage/frame-record.ts';
import type { Runtime, SessionStore } from '../sinks/session-store.ts';
import type { StimulusSet } from '../stimulus-sets.ts';
import { applyFrame, checkEvent, createGuard, restoreGuard, saveGuard, sessionMemoryBytes } from './ingest-guard.ts';
import { precheck, precheckBytes } from './cheap-checks.ts';
import { DamagedLogError } from '../sinks/recorder.ts';
import { StorageError } from '../storage/session-log.ts';
import { logFrames$ } from './replay.ts';
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
  limits: { maxPayloadBytes: number; eventsPerSec: number; burstEvents: number; maxSeqJump: number; sessionMemoryBytes: number; maxSessions: number; maxSessionsPerRig: number; idleSessionCloseS: number; maxRebuildQueue: number };
  now?: () => number;
  /** Follow-up suggestions for a session (followup-service.ts). */
  followups?: (rt: Runtime, ask: Record<string, unknown>) => { suggestions: Suggestion[]; notes: string[] } | { error: AckError };
  /**
   * Clustered (cluster/cluster-node.ts): takes a session this process does not hold before resuming it for
   * `rig`; resolves to null when taken, or to why not (another live node writes its log).
   */
  claim?: (sessionId: string, rig: string) => Promise<string | null>;
  /**
   * Clustered: takes the hold on a session just started here, before its start is acknowledged (until the
   * next heartbeat took it, another node could take a session its rig had just started here).
   */
  hold?: (sessionId: string) => Promise<string | null>;
  /**
   * Clustered: why this process must not write a session's log now (its hold in Redis is not current, so
   * another node may have taken the session over), or null. Checked before every record; the event is then
   * refused as `storage` (not recorded, not acknowledged: the rig resends it, here or on the other node).
   */
  holdLapsed?: (sessionId: string) => string | null;
  /** Log line for things that are not rejections (gaps, resumes, torn tails). */
  log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

type AckFn = (ack: Ack<unknown>) => void;

/** Attaches the rig protocol to a namespace; returns the stream of rejections. */
export function attachRigGateway(nsp: Namespace, deps: RigGatewayDeps): { rejections$: Subject<Rejection>; pushToRig: (sessionId: string, event: string, payload: unknown) => number; handOver: (sessionId: string, rig: string) => string | null; dropLost: (sessionId: string, why: string) => void } {
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
          scheduleIdleClose(id);
        }
      }
      owned.delete(socket.id);
    });
  });

  /** The rig's name from its token (socket.data.rigName, set by the rig sign-in middleware). */
  const rigOf = (socket: Socket): string => (socket.data as { rigName?: string }).rigName ?? 'rig';
  const idleTimers = new Map<string, NodeJS.Timeout>();

  /** A disconnected session left idle closes its log and leaves memory; session:resume reloads it from disk. */
  function scheduleIdleClose(id: string): void {
    clearTimeout(idleTimers.get(id));
    const t = setTimeout(() => closeIdle(id), deps.limits.idleSessionCloseS * 1000);
    t.unref();
    idleTimers.set(id, t);
  }

  /**
   * Clustered: `rig` resumes on another node a session this one runs and whose rig left it: it is closed here
   * now, as after the idle time, so that node can take it over (null), or left alone with why not.
   */
  function handOver(id: string, rig: string): string | null {
    const rt = deps.store.get(id);
    if (!rt || rt.kind !== 'live') return `session ${id} is not live on this node`;
    if (rt.owner !== undefined && rt.owner !== rig) return `session ${id} belongs to rig "${rt.owner}"; only it may resume it`;
    if (rt.state !== 'disconnected') return `session ${id} is still connected to its rig here (a rig that lost its connection is noticed within socket.io's ping timeout); retry then`;
    closeIdle(id);
    deps.log('info', 'session handed over: its rig resumes it on another node', { sessionId: id });
    return null;
  }

  /**
   * Clustered: this node lost its hold on a session (cluster-node.ts lost$). The session leaves memory and its
   * log is closed here, without touching its index entry (the node that holds it now owns that); its rig is
   * told why and disconnected, so that it resumes the session from the log, on the node that holds it or,
   * when nobody does, here.
   */
  function dropLost(id: string, why: string): void {
    clearTimeout(idleTimers.get(id));
    idleTimers.delete(id);
    const rt = deps.store.get(id);
    if (!rt || rt.kind !== 'live') return;
    deps.store.remove(rt);
    deps.recorder.close1(id);
    deps.recorder.forgetMeta(id);
    deps.log('error', `session closed here: ${why}`, { sessionId: id });
    for (const [socketId, ids] of owned) {
      if (!ids.delete(id)) continue;
      const socket = nsp.sockets.get(socketId);
      socket?.emit('rig:error', { event: 'session', error: { code: 'storage', message: `session ${id} was closed on this node (${why}); resume it: events not acknowledged here were not recorded` } });
      // the transport closed, not the socket: socket.io clients reconnect (and RigClient resumes) only then
      socket?.conn.close();
    }
  }

  /** Closes a disconnected session's log and takes it out of memory (resumable from disk). */
  function closeIdle(id: string): void {
    clearTimeout(idleTimers.get(id));
    idleTimers.delete(id);
    const rt = deps.store.get(id);
    if (!rt || rt.state !== 'disconnected') return;
    deps.store.remove(rt);
    // clustered, with the hold lapsed: another node may hold the session and own its index entry now
    const lapsed = deps.holdLapsed?.(id);
    if (lapsed) {
      deps.recorder.close1(id);
      deps.recorder.forgetMeta(id);
      return deps.log('warn', `idle session closed here without updating its index entry: ${lapsed}`, { sessionId: id });
    }
    try {
      deps.recorder.finish(id, 'interrupted', rt.latest?.trialsCompleted);
      deps.log('info', 'idle disconnected session closed; resumable from disk', { sessionId: id });
    } catch (e) {
      // a timer has no one to answer: a failure here (disk full writing meta.json) is logged, never an exit;
      // the log is closed and whole, and the session stays resumable from it
      deps.log('error', `idle session closed, but its index entry could not be updated: ${(e as Error).message}`, { sessionId: id });
    }
  }

  function reject(socket: Socket, event: string, ack: AckFn | null, sessionId: string | undefined, error: AckError): void {
    rejections$.next({ atMs: now(), socketId: socket.id, event, ...(sessionId ? { sessionId } : {}), error });
    if (ack) ack({ error });
    else socket.emit('rig:error', { event, error });
  }

  /** Records what the live session counts besides frames (rejections, gaps), so replays count them too. */
  function note(n: Note): void {
    if (!deps.recorder.isOpen(n.sessionId)) return;
    try {
      deps.recorder.append({ atMs: now(), note: n });
    } catch (e) {
      deps.log('warn', `could not record a ${n.kind} note: ${(e as Error).message}`, { sessionId: n.sessionId });
    }
  }

  /** Every event ends in an acknowledgement: a thrown error becomes an error answer, never an exit. */
  function handle(socket: Socket, bucket: TokenBucket, event: RigEventName, payload: unknown, rawAck: unknown): void {
    const ack = typeof rawAck === 'function' ? (rawAck as AckFn) : null;
    try {
      handleEvent(socket, bucket, event, payload, ack);
    } catch (e) {
      const storage = e instanceof StorageError;
      deps.log('error', storage ? 'event refused: the session log could not record it' : 'rig event handler failed', { event, error: (e as Error).message });
      reject(socket, event, ack, undefined, storage ? { code: 'storage', message: `not recorded, not acknowledged: ${(e as Error).message}` } : { code: 'invalid', message: `the server failed on this event (${(e as Error).message}); nothing was recorded` });
    }
  }

  function handleEvent(socket: Socket, bucket: TokenBucket, event: RigEventName, payload: unknown, ack: AckFn | null): void {
    if (!bucket.take()) return reject(socket, event, ack, undefined, { code: 'rate-limited', message: `more than ${deps.limits.eventsPerSec} events/s (burst ${deps.limits.burstEvents}); slow down or batch bins` });
    if (!ack) return reject(socket, event, null, undefined, { code: 'invalid', message: `${event} needs an acknowledgement callback` });
    // msgpack bytes are the protocol; JSON text is accepted too, for clients without msgpack (docs/protocol.md)
    const isText = typeof payload === 'string';
    if (!(payload instanceof Uint8Array) && !isText) return reject(socket, event, ack, undefined, { code: 'malformed', message: 'payload must be one msgpack-encoded binary argument (or one JSON text argument)' });
    const size = isText ? Buffer.byteLength(payload) : payload.byteLength;
    if (size > deps.limits.maxPayloadBytes) return reject(socket, event, ack, undefined, { code: 'too-large', message: `payload of ${size} bytes exceeds maxPayloadBytes ${deps.limits.maxPayloadBytes}` });
    // cheap checks first: item counts on the raw bytes, before the decoder builds millions of values
    const shape = isText ? null : precheckBytes(payload);
    if (shape) return reject(socket, event, ack, undefined, { code: 'invalid', message: `${event} payload does not match the protocol: ${shape}` });
    let decoded: unknown;
    try {
      decoded = isText ? JSON.parse(payload) : decodePayload(payload);
    } catch (e) {
      return reject(socket, event, ack, undefined, { code: 'malformed', message: `payload is not valid ${isText ? 'JSON' : 'msgpack'}: ${(e as Error).message}` });
    }
    const junk = precheck(decoded);
    if (junk) return reject(socket, event, ack, undefined, { code: 'invalid', message: `${event} payload does not match the protocol: ${junk}` });
    const parsed = rigEventSchemas[event].safeParse(decoded);
    if (!parsed.success) {
      const sid = (decoded as { sessionId?: unknown } | null)?.sessionId;
      return reject(socket, event, ack, typeof sid === 'string' ? sid : undefined, { code: 'invalid', message: `${event} payload does not match the protocol`, details: fieldErrors(parsed.error) });
    }
    const p = parsed.data as Record<string, unknown>;
    if (event === 'session:start') return startSession(socket, ack, p);
    if (event === 'session:resume') return deps.claim && !deps.store.get(p.sessionId as string) ? claimThenResume(socket, ack, p.sessionId as string, deps.claim) : resumeSession(socket, ack, p.sessionId as string);
    sessionEvent(socket, ack, event, p as Record<string, unknown> & { sessionId: string; seq: number });
  }

  function startSession(socket: Socket, ack: AckFn, p: Record<string, unknown>): void {
    const start = rigEventSchemas['session:start'].parse(p);
    const set = deps.stimulusSets.get(start.stimulusSetId);
    if (!set) return reject(socket, 'session:start', ack, undefined, { code: 'unknown-stimulus', message: `unknown stimulus set "${start.stimulusSetId}"; known: ${[...deps.stimulusSets.keys()].join(', ')}` });
    const stimuli = set.manifest.stimuli;
    const needBytes = sessionMemoryBytes(start, stimuli.length, deps.store.psthBinMs);
    if (needBytes > deps.limits.sessionMemoryBytes) {
      return reject(socket, 'session:start', ack, undefined, { code: 'too-large', message: `the session's statistics would need ${needBytes} bytes (${start.channels.length} channels x ${stimuli.length} stimuli x PSTH bins), more than limits.sessionMemoryBytes ${deps.limits.sessionMemoryBytes}; fewer channels, a shorter window or a coarser PSTH bin` });
    }
    const rig = rigOf(socket);
    const live = deps.store.all().filter((r) => r.kind === 'live' && r.state !== 'ended');
    if (live.length >= deps.limits.maxSessions) return reject(socket, 'session:start', ack, undefined, { code: 'too-large', message: `${live.length} sessions are open, the server's limit (limits.maxSessions); end one first` });
    const mine = live.filter((r) => r.owner === rig).length;
    if (mine >= deps.limits.maxSessionsPerRig) return reject(socket, 'session:start', ack, undefined, { code: 'too-large', message: `rig "${rig}" has ${mine} sessions open, its limit (limits.maxSessionsPerRig); end one first` });
    if (start.preferredCategory && !stimuli.some((s) => s.category === start.preferredCategory)) {
      return reject(socket, 'session:start', ack, undefined, { code: 'invalid', message: `preferredCategory "${start.preferredCategory}" is not a category of set ${set.manifest.id}` });
    }
    const startedAt = new Date(now()).toISOString();
    const sessionId = `${startedAt.replace(/[-:]/g, '').replace('T', '-').slice(0, 15)}-${start.rigId.replace(/[^A-Za-z0-9]/g, '').slice(0, 24)}-${Math.random().toString(36).slice(2, 8)}`;
    const frame: Extract<Frame, { type: 'session:start' }> = { type: 'session:start', sessionId, startedAt, start, stimuli };
    deps.recorder.create(frame, now(), rig);
    deps.store.startLive(frame, createGuard(sessionId, start, stimuli), [], rig);
    owned.get(socket.id)?.add(sessionId);
    deps.log('info', 'session started', { sessionId, rigId: start.rigId, channels: start.channels.length });
    const started = () => ack({ data: { sessionId, lastSeq: 0 } });
    if (!deps.hold) return started();
    // the session is recorded whatever Redis answers; its hold is otherwise taken at the next heartbeat
    deps.hold(sessionId)
      .then(
        (refused) => refused && deps.log('error', `a new session's hold was refused: ${refused}`, { sessionId }),
        (e: Error) => deps.log('warn', `the cluster's Redis did not take a new session's hold (the next heartbeat takes it): ${e.message}`, { sessionId }),
      )
      .finally(started);
  }

  /** Clustered: a session another node may hold is taken (or refused with its owner) before it is resumed here. */
  function claimThenResume(socket: Socket, ack: AckFn, sessionId: string, claim: (id: string, rig: string) => Promise<string | null>): void {
    claim(sessionId, rigOf(socket)).then(
      (refused) => {
        if (refused) return reject(socket, 'session:resume', ack, sessionId, { code: 'not-owner', message: refused });
        try {
          resumeSession(socket, ack, sessionId);
        } catch (e) {
          deps.log('error', 'rig event handler failed', { event: 'session:resume', error: (e as Error).message });
          reject(socket, 'session:resume', ack, sessionId, { code: 'storage', message: `the server failed on this event (${(e as Error).message}); nothing was recorded` });
        }
      },
      (e: Error) => reject(socket, 'session:resume', ack, sessionId, { code: 'storage', message: `the cluster's Redis did not answer, so the session cannot be taken over safely; retry: ${e.message}` }),
    );
  }

  function resumeSession(socket: Socket, ack: AckFn, sessionId: string): void {
    const meta = deps.recorder.meta(sessionId);
    let rt = deps.store.get(sessionId);
    const owner = rt?.owner ?? meta?.owner;
    if ((rt || meta) && owner !== undefined && owner !== rigOf(socket)) return reject(socket, 'session:resume', ack, sessionId, { code: 'not-owner', message: `session ${sessionId} belongs to rig "${owner}"; only it may resume it` });
    if (!rt && meta?.state === 'damaged') return reject(socket, 'session:resume', ack, sessionId, { code: 'storage', message: new DamagedLogError(sessionId, meta.damaged ?? []).message });
    if (!rt && meta) {
      try {
        rt = reload(sessionId) ?? undefined;
      } catch (e) {
        if (e instanceof DamagedLogError) return reject(socket, 'session:resume', ack, sessionId, { code: 'storage', message: e.message });
        throw e;
      }
    }
    if (!rt || rt.kind !== 'live' || !rt.guard) return reject(socket, 'session:resume', ack, sessionId, { code: 'unknown-session', message: `no live or resumable session "${sessionId}"` });
    if (rt.guard.ended) return reject(socket, 'session:resume', ack, sessionId, { code: 'session-ended', message: `session ${sessionId} has ended` });
    clearTimeout(idleTimers.get(sessionId));
    owned.get(socket.id)?.add(sessionId);
    if (rt.state !== 'live') deps.store.setState(rt, 'live');
    deps.log('info', 'session resumed', { sessionId, lastSeq: rt.guard.lastAcceptedSeq });
    ack({ data: { sessionId, lastSeq: rt.guard.lastAcceptedSeq } });
  }

  /**
   * Reopens a session recorded by an earlier server process (or closed while idle). The ingest state comes
   * from the latest checkpoint plus the records after it (resume reads only those); the statistics are
   * rebuilt by streaming the whole log through the pipeline in the background, ahead of new frames.
   */
  function reload(sessionId: string): Runtime | null {
    const meta = deps.recorder.meta(sessionId);
    if (!meta || meta.state === 'ended') return null;
    const { checkpoint, scan } = deps.recorder.reopen(sessionId);
    if (scan.tornBytes > 0) deps.log('warn', 'dropped a torn last record of the session log', { sessionId, tornBytes: scan.tornBytes });
    let first: Extract<Frame, { type: 'session:start' }> | null = null;
    for (const v of deps.recorder.items(sessionId, null)) {
      if ('item' in v && 'frame' in v.item && v.item.frame.type === 'session:start') first = v.item.frame;
      break;
    }
    if (!first) {
      deps.recorder.close1(sessionId);
      return null;
    }
    const guard = checkpoint ? restoreGuard(first, checkpoint.state) : createGuard(sessionId, first.start, first.stimuli);
    const upTo = scan.validBytes;
    let invalid = 0;
    for (const v of deps.recorder.items(sessionId, checkpoint, upTo)) {
      if ('invalid' in v) invalid++;
      if (!('item' in v)) continue;
      if ('frame' in v.item) {
        if (v.item.frame.type !== 'session:start') applyFrame(guard, v.item.frame);
      } else if (v.item.note.kind === 'gap') guard.seqGaps++;
      else guard.lastSeq = Math.max(guard.lastSeq, v.item.note.seq ?? 0);
    }
    if (invalid) deps.log('warn', 'session log holds records that fail validation; they are skipped', { sessionId, invalid });
    const backlog$ = logFrames$(() => deps.recorder.items(sessionId, null, upTo), (range) => deps.log('error', 'damage found while rebuilding statistics', { sessionId, ...range })).pipe(filter((f) => f.type !== 'session:start'));
    deps.log('info', 'session reloaded from its log', { sessionId, fromCheckpoint: checkpoint?.offset ?? 0, records: (checkpoint?.records ?? 0) + scan.records });
    return deps.store.startLive(first, guard, backlog$, first.owner ?? meta.owner);
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
      note({ kind: 'rejected', sessionId: g.sessionId, seq: p.seq, event: 'followup:request', code: result.error.code });
      return reject(socket, 'followup:request', ack, g.sessionId, result.error);
    }
    const frame: Frame = { type: 'followup:suggested', sessionId: g.sessionId, seq: p.seq, origin: 'rig', atMs: now(), suggestions: result.suggestions };
    deps.recorder.append({ atMs: now(), frame });
    applyFrame(g, frame);
    durable(socket, 'followup:request', ack, g.sessionId, { data: { seq: p.seq, duplicate: false, suggestions: result.suggestions, ...(result.notes.length ? { notes: result.notes } : {}) } });
    deps.store.feed(rt, frame);
  }

  function sessionEvent(socket: Socket, ack: AckFn, event: Exclude<RigEventName, 'session:start' | 'session:resume'>, p: Record<string, unknown> & { sessionId: string; seq: number }): void {
    const rt = deps.store.get(p.sessionId);
    if (!rt || !rt.guard) return reject(socket, event, ack, p.sessionId, { code: 'unknown-session', message: `unknown session "${p.sessionId}"; start one or resume it first` });
    if (rt.owner !== undefined && rt.owner !== rigOf(socket)) return reject(socket, event, ack, p.sessionId, { code: 'not-owner', message: `session ${p.sessionId} belongs to rig "${rt.owner}"; only it may write to or end it` });
    const g = rt.guard;
    // a duplicate is acknowledged once the log is durable (fsync `always`: a resend after a failed sync retries it)
    if (p.seq <= g.lastSeq) return durable(socket, event, ack, g.sessionId, { data: { seq: p.seq, duplicate: true } });
    if (p.seq - g.lastSeq > deps.limits.maxSeqJump) {
      // refused without consuming numbers: one absurd seq must not turn every later event into a duplicate
      return reject(socket, event, ack, g.sessionId, { code: 'bad-sequence', message: `seq ${p.seq} jumps ${p.seq - g.lastSeq} past the last seq ${g.lastSeq} (limits.maxSeqJump ${deps.limits.maxSeqJump}); resend from ${g.lastSeq + 1}` });
    }
    if (rt.pending && rt.pending.length >= deps.limits.maxRebuildQueue) {
      // the statistics are still being rebuilt from the log: events wait in memory, so their number is bounded;
      // refused before anything is recorded or consumed, so the rig resends the same seq later
      return reject(socket, event, ack, g.sessionId, { code: 'rate-limited', message: `session ${g.sessionId} is still rebuilding its statistics from the log and ${rt.pending.length} events already wait (limits.maxRebuildQueue ${deps.limits.maxRebuildQueue}); not recorded, not acknowledged: resend from seq ${g.lastSeq + 1} shortly` });
    }
    const gap = p.seq > g.lastSeq + 1 ? { from: g.lastSeq + 1, to: p.seq - 1 } : undefined;
    if (g.ended) {
      g.lastSeq = p.seq;
      return reject(socket, event, ack, g.sessionId, { code: 'session-ended', message: `session ${g.sessionId} has ended; start a new session` });
    }
    // clustered: a node whose hold lapsed writes nothing more, so two nodes never write one log (the fence)
    const lapsed = deps.holdLapsed?.(g.sessionId);
    if (lapsed) return reject(socket, event, ack, g.sessionId, { code: 'storage', message: `not recorded, not acknowledged: ${lapsed}` });
    if (event === 'followup:request') {
      if (gap) noteGap(g, gap, p.seq);
      return followupRequest(socket, ack, rt, p);
    }
    const checked = checkEvent(g, event, p);
    if ('error' in checked) {
      if (gap) noteGap(g, gap, p.seq);
      g.lastSeq = p.seq; // a rejected event consumes its number (docs/protocol.md)
      note({ kind: 'rejected', sessionId: g.sessionId, seq: p.seq, event, code: checked.error.code });
      return reject(socket, event, ack, g.sessionId, checked.error);
    }
    // throws a StorageError on I/O failure before any state changed (the log is back at its last whole
    // record): no acknowledgement, the rig may resend the same seq
    deps.recorder.append({ atMs: now(), frame: checked.frame });
    if (gap) noteGap(g, gap, p.seq);
    applyFrame(g, checked.frame);
    durable(socket, event, ack, g.sessionId, { data: { seq: p.seq, duplicate: false, ...(gap ? { gap } : {}) } });
    deps.store.feed(rt, checked.frame);
    deps.recorder.maybeCheckpoint(g.sessionId, deps.recorder.meta(g.sessionId)?.records ?? 0, () => saveGuard(g));
    if (checked.frame.type === 'session:end') {
      deps.recorder.finish(g.sessionId, 'ended', rt.latest?.trialsCompleted);
      deps.store.setState(rt, 'ended');
      deps.log('info', 'session ended', { sessionId: g.sessionId, trials: rt.latest?.trialsCompleted });
    }
  }

  /**
   * Acknowledges once what was recorded is durable per the fsync policy: at once, or (`always`) after the
   * group fdatasync on the threadpool that covers it; the event loop never waits for a sync. A failed sync
   * answers `storage` (recorded, maybe not on disk): the rig resends, and the duplicate is acknowledged
   * after a sync that succeeds.
   */
  function durable(socket: Socket, event: string, ack: AckFn, sessionId: string, answer: Ack<unknown>): void {
    deps.recorder.afterSync(sessionId, (err) => (err ? reject(socket, event, ack, sessionId, { code: 'storage', message: `recorded, but the log's fsync failed (${err}); not acknowledged: resend it` }) : ack(answer)));
  }

  function noteGap(g: { sessionId: string; seqGaps: number }, gap: { from: number; to: number }, seq: number): void {
    g.seqGaps++;
    deps.log('warn', 'sequence gap: events missing from the rig', { sessionId: g.sessionId, ...gap });
    note({ kind: 'gap', sessionId: g.sessionId, seq, ...gap });
  }

  return { rejections$, pushToRig, handOver, dropLost };
}
