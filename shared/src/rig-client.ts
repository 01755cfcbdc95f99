/**
 * RigClient: the typed JavaScript client of the rig protocol (docs/protocol.md). It numbers events,
 * keeps every unacknowledged event in an outbox, and after a reconnect resumes the session and resends
 * what the server has not acknowledged, so no trial is lost across a dropped connection.
 *
 * @example
 * const rig = new RigClient({ url: 'http://127.0.0.1:8450', token });
 * await rig.connect();
 * await rig.startSession({ rigId: 'rig1', subject: 'M1', channels, stimulusSetId: 'demo', timing });
 * await rig.onset(0, 'face-01', 1000); await rig.binned(1000, 1, counts); await rig.offset(0, 'face-01', 1200);
 */
import { io, type Socket, type ManagerOptions, type SocketOptions } from 'socket.io-client';
import { encodePayload } from './protocol/codec.ts';
import type { Ack, AckError, RigAckData, SessionStartInput, Suggestion } from './protocol/events.ts';

export interface RigClientOptions {
  url: string;
  token: string;
  ackTimeoutMs?: number;
  socket?: Partial<ManagerOptions & SocketOptions>;
}

export class RigError extends Error {
  constructor(readonly ack: AckError) {
    super(`${ack.code}: ${ack.message}${ack.details?.length ? ` (${ack.details.join('; ')})` : ''}`);
  }
}

interface Pending {
  seq: number;
  event: string;
  bytes: Uint8Array;
  resolve: (v: RigAckData['event']) => void;
  reject: (e: Error) => void;
}

export class RigClient {
  readonly socket: Socket;
  sessionId: string | null = null;
  private nextSeq = 1;
  private readonly outbox = new Map<number, Pending>();
  private ready = false;
  private readonly ackTimeoutMs: number;
  /** Gaps and duplicates the server reported, for the rig's own log. */
  readonly reports: { duplicates: number; gaps: { from: number; to: number }[]; resumes: number } = {
    duplicates: 0,
    gaps: [],
    resumes: 0,
  };

  constructor(private readonly opts: RigClientOptions) {
    this.ackTimeoutMs = opts.ackTimeoutMs ?? 10_000;
    this.socket = io(`${opts.url}/rig`, {
      auth: { token: opts.token },
      autoConnect: false,
      transports: ['websocket'],
      reconnectionDelay: 200,
      reconnectionDelayMax: 2_000,
      ...opts.socket,
    });
    this.socket.on('connect', () => {
      if (this.sessionId !== null) void this.resumeAndFlush();
    });
    this.socket.on('disconnect', () => {
      this.ready = false;
    });
  }

  /** Connects; rejects with the server's reason when the token is refused. */
  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => {
        this.socket.off('connect', onConnect);
        reject(err);
      };
      const onConnect = () => {
        this.socket.off('connect_error', onError);
        resolve();
      };
      this.socket.once('connect', onConnect);
      this.socket.once('connect_error', onError);
      this.socket.connect();
    });
  }

  /** Starts a session; later events are numbered from 1. */
  async startSession(start: SessionStartInput): Promise<string> {
    const data = await this.request<RigAckData['session:start']>('session:start', start);
    this.sessionId = data.sessionId;
    this.nextSeq = data.lastSeq + 1;
    this.ready = true;
    return data.sessionId;
  }

  /** Attaches to an existing session (after a rig software restart); returns the last accepted seq. */
  async resume(sessionId: string): Promise<number> {
    const data = await this.request<RigAckData['session:resume']>('session:resume', { sessionId });
    this.sessionId = sessionId;
    this.nextSeq = Math.max(this.nextSeq, data.lastSeq + 1);
    this.ready = true;
    return data.lastSeq;
  }

  onset(trial: number, stimulusId: string, tMs: number) {
    return this.send('stim:onset', { trial, stimulusId, tMs });
  }
  offset(trial: number, stimulusId: string, tMs: number) {
    return this.send('stim:offset', { trial, stimulusId, tMs });
  }
  /** Binned counts, bins x channels row-major. */
  binned(startMs: number, binWidthMs: number, counts: Uint16Array) {
    return this.send('counts:binned', { startMs, binWidthMs, counts });
  }
  trialCounts(trial: number, responseCounts: number[], baselineCounts?: number[]) {
    return this.send('counts:trial', { trial, responseCounts, ...(baselineCounts ? { baselineCounts } : {}) });
  }
  abort(trial: number, reason?: string) {
    return this.send('trial:abort', { trial, ...(reason ? { reason } : {}) });
  }
  end() {
    return this.send('session:end', {});
  }
  /** Asks for follow-up stimuli; resolves with the ranked suggestions (each with its reason). */
  async followups(count: number, opts: { strategy?: 'probe' | 'improve' | 'confirm'; mix?: Partial<Record<'probe' | 'improve' | 'confirm', number>>; neurons?: string[]; poolSetIds?: string[] } = {}): Promise<Suggestion[]> {
    const ack = (await this.send('followup:request', { count, ...opts })) as RigAckData['followup:request'];
    return ack.suggestions ?? [];
  }
  /** Suggestions the experimenter sends from the dashboard. */
  onFollowups(handler: (suggestions: Suggestion[]) => void): void {
    this.socket.on('followup:suggested', (msg: { suggestions: Suggestion[] }) => handler(msg.suggestions));
  }

  /** Unacknowledged events. */
  get inFlight(): number {
    return this.outbox.size;
  }

  close(): void {
    this.socket.disconnect();
    for (const p of this.outbox.values()) p.reject(new Error('client closed'));
    this.outbox.clear();
  }

  /** Numbers an event, keeps it until acknowledged and sends it when connected. */
  send(event: string, body: Record<string, unknown>): Promise<RigAckData['event']> {
    if (this.sessionId === null) return Promise.reject(new Error('no session: call startSession first'));
    const seq = this.nextSeq++;
    const bytes = encodePayload({ ...body, sessionId: this.sessionId, seq });
    return new Promise((resolve, reject) => {
      const p: Pending = { seq, event, bytes, resolve, reject };
      this.outbox.set(seq, p);
      if (this.ready && this.socket.connected) this.transmit(p);
    });
  }

  private transmit(p: Pending): void {
    this.socket
      .timeout(this.ackTimeoutMs)
      .emit(p.event, p.bytes, (err: Error | null, ack: Ack<RigAckData['event']>) => {
        if (err) return; // no answer: the event stays in the outbox and is resent after the reconnect
        if (!this.outbox.has(p.seq)) return;
        this.outbox.delete(p.seq);
        if ('error' in ack) return p.reject(new RigError(ack.error));
        if (ack.data.duplicate) this.reports.duplicates++;
        if (ack.data.gap) this.reports.gaps.push(ack.data.gap);
        p.resolve(ack.data);
      });
  }

  private async resumeAndFlush(): Promise<void> {
    try {
      const lastSeq = await this.request<RigAckData['session:resume']>('session:resume', { sessionId: this.sessionId });
      this.reports.resumes++;
      this.ready = true;
      for (const p of [...this.outbox.values()].sort((a, b) => a.seq - b.seq)) {
        if (p.seq <= lastSeq.lastSeq) {
          // accepted before the connection dropped; only the acknowledgement was lost
          this.outbox.delete(p.seq);
          p.resolve({ seq: p.seq, duplicate: true });
        } else this.transmit(p);
      }
    } catch {
      // the next reconnect tries again
    }
  }

  private async request<T>(event: string, body: unknown): Promise<T> {
    const ack: Ack<T> = await this.socket.timeout(this.ackTimeoutMs).emitWithAck(event, encodePayload(body));
    if ('error' in ack) throw new RigError(ack.error);
    return ack.data;
  }
}
