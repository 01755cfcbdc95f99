/**
 * The recorder: one folder per session under `<dataDir>/sessions/` with `log.bin` (session-log.ts) and
 * `meta.json`, the session index entry (written to a temporary file and renamed, so it is never torn).
 * Session ids are checked against a strict pattern before any path is built from them.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Frame, SessionState, SessionSummary } from '@sharedlens/shared';
import { fromStored, toStored, type LogRecord } from '../storage/frame-record.ts';
import { LogWriter, readLog, type FsyncPolicy } from '../storage/session-log.ts';

const SESSION_ID = /^[A-Za-z0-9_-]{1,100}$/;

export interface RecorderOptions {
  dataDir: string;
  fsync: FsyncPolicy;
  fsyncIntervalMs: number;
}

export interface LoadedLog {
  records: LogRecord[];
  tornBytes: number;
  /** Records that failed validation (the log is cut at the first). */
  invalid: string | null;
}

export class Recorder {
  readonly root: string;
  private readonly writers = new Map<string, LogWriter>();
  private readonly metas = new Map<string, SessionSummary>();

  constructor(private readonly opts: RecorderOptions) {
    this.root = path.resolve(opts.dataDir, 'sessions');
    fs.mkdirSync(this.root, { recursive: true });
  }

  /** True when `id` is a well-formed session id (never a path). */
  static isSessionId(id: unknown): id is string {
    return typeof id === 'string' && SESSION_ID.test(id);
  }

  private dir(id: string): string {
    if (!Recorder.isSessionId(id)) throw new Error(`invalid session id ${JSON.stringify(id)}`);
    return path.join(this.root, id);
  }

  /** Creates the session folder, its index entry, and records the session:start frame. */
  create(frame: Extract<Frame, { type: 'session:start' }>, atMs: number): void {
    const dir = this.dir(frame.sessionId);
    fs.mkdirSync(dir);
    const meta: SessionSummary = {
      sessionId: frame.sessionId,
      rigId: frame.start.rigId,
      subject: frame.start.subject,
      stimulusSetId: frame.start.stimulusSetId,
      startedAt: frame.startedAt,
      state: 'live',
      channels: frame.start.channels.length,
      records: 0,
    };
    this.writeMeta(meta);
    fs.writeFileSync(path.join(dir, 'log.bin'), '');
    this.writers.set(frame.sessionId, new LogWriter(path.join(dir, 'log.bin'), this.opts.fsync, this.opts.fsyncIntervalMs));
    this.append({ atMs, frame });
  }

  /** Appends one accepted record; throws on I/O errors (the event is then rejected, not acknowledged). */
  append(rec: LogRecord): void {
    const w = this.writers.get(rec.frame.sessionId);
    if (!w) throw new Error(`session ${rec.frame.sessionId} is not open for recording`);
    w.append(toStored(rec));
    const meta = this.metas.get(rec.frame.sessionId);
    if (meta) meta.records++;
  }

  /** Reads and validates a recorded session. */
  load(id: string): LoadedLog {
    const { records, tornBytes } = readLog(path.join(this.dir(id), 'log.bin'));
    const out: LogRecord[] = [];
    for (const r of records) {
      const rec = fromStored(r);
      if (typeof rec === 'string') return { records: out, tornBytes, invalid: rec };
      out.push(rec);
    }
    return { records: out, tornBytes, invalid: null };
  }

  /** Reopens an unfinished session for appending, cutting a torn tail; returns its records. */
  reopen(id: string): LoadedLog {
    const file = path.join(this.dir(id), 'log.bin');
    const { validBytes } = readLog(file);
    const loaded = this.load(id);
    this.writers.get(id)?.close();
    this.writers.set(id, new LogWriter(file, this.opts.fsync, this.opts.fsyncIntervalMs, validBytes));
    const meta = this.meta(id);
    if (meta) this.writeMeta({ ...meta, state: 'live', records: loaded.records.length });
    return loaded;
  }

  /** Marks a session ended (or interrupted) in the index and closes its log. */
  finish(id: string, state: SessionState, trialsCompleted?: number): void {
    this.writers.get(id)?.close();
    this.writers.delete(id);
    const meta = this.meta(id);
    if (meta) this.writeMeta({ ...meta, state, endedAt: new Date().toISOString(), ...(trialsCompleted !== undefined ? { trialsCompleted } : {}) });
  }

  /** Index entry of one session, or null. */
  meta(id: string): SessionSummary | null {
    if (!Recorder.isSessionId(id)) return null;
    const cached = this.metas.get(id);
    if (cached) return cached;
    try {
      const m = JSON.parse(fs.readFileSync(path.join(this.dir(id), 'meta.json'), 'utf8')) as SessionSummary;
      this.metas.set(id, m);
      return m;
    } catch {
      return null;
    }
  }

  /** Every recorded session, newest first. */
  list(): SessionSummary[] {
    const ids = fs.readdirSync(this.root).filter((d) => Recorder.isSessionId(d));
    return ids
      .map((id) => this.meta(id))
      .filter((m): m is SessionSummary => m !== null)
      .sort((a, b) => b.startedAt.localeCompare(a.startedAt));
  }

  /** Marks sessions left `live` by a previous process as interrupted (they can still be resumed). */
  markInterrupted(): string[] {
    const ids: string[] = [];
    for (const m of this.list()) {
      if (m.state === 'live' && !this.writers.has(m.sessionId)) {
        this.writeMeta({ ...m, state: 'interrupted' });
        ids.push(m.sessionId);
      }
    }
    return ids;
  }

  isOpen(id: string): boolean {
    return this.writers.has(id);
  }

  close(): void {
    for (const w of this.writers.values()) w.close();
    this.writers.clear();
  }

  private writeMeta(meta: SessionSummary): void {
    const dir = this.dir(meta.sessionId);
    const tmp = path.join(dir, 'meta.json.tmp');
    fs.writeFileSync(tmp, JSON.stringify(meta, null, 2));
    fs.renameSync(tmp, path.join(dir, 'meta.json'));
    this.metas.set(meta.sessionId, meta);
  }
}
