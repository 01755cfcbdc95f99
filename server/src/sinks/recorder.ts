/**
 * The recorder: one folder per session under `<dataDir>/sessions/` with `log.bin` (session-log.ts),
 * `meta.json` (the session index entry), `checkpoint.json` (where resume may start reading) and `start.json`
 * (a copy of the session:start record, so a log whose first record is damaged stays replayable).
 * meta.json is written to a temporary file, fsynced, renamed and its folder fsynced, so it is never torn;
 * when it is missing or unreadable it is rebuilt from the log's own session:start record. Session ids are
 * checked against a strict pattern before any path is built from them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { decodePayload, type Frame, type SessionState, type SessionSummary } from '@sharedlens/shared';
import { fromStored, toStored, type LogRecord, type StoredItem } from '../storage/frame-record.ts';
import { checkLog, scanLog, type ScanSummary } from '../storage/log-scan.ts';
import { fdatasyncWith, LogWriter, realFileOps, type FileOps, type FsyncPolicy } from '../storage/session-log.ts';
import { checkSavedGuard } from '../sources/ingest-guard.ts';
import type { RecordSource } from '../sources/replay.ts';

const SESSION_ID = /^[A-Za-z0-9_-]{1,100}$/;
/** msgpack of `{ atMs: ...`: how every record's payload starts (msgpackr's map16 of 2, fixstr "atMs"); resync looks for it. */
const RECORD_PREFIX = Buffer.from([0xde, 0x00, 0x02, 0xa4, 0x61, 0x74, 0x4d, 0x73]);
/** A checkpoint of the ingest state is written after this many bytes of log (resume reads only past it). */
const CHECKPOINT_EVERY_BYTES = 32 * 1024 * 1024;
/** Replays keep the offset of every INDEX_EVERY-th record, so a seek reads at most that many records. */
const INDEX_EVERY = 1024;

export interface RecorderOptions {
  dataDir: string;
  fsync: FsyncPolicy;
  fsyncIntervalMs: number;
  /** Free-space reserve: events are refused before the disk holds less (0: none). */
  minFreeBytes?: number;
  /** File calls of the log writers (tests inject failures). */
  ops?: FileOps;
  /** Bytes of log between checkpoints of the ingest state (default 32 MiB). */
  checkpointEveryBytes?: number;
  log?: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

/** A summary of a recorded session with what the durability checks add. */
export type SessionMeta = SessionSummary & {
  /** Name of the rig that started the session (only it may write, resume or end it). */
  owner?: string;
  /** Unreadable byte ranges of a damaged log, with the sequence numbers around them. */
  damaged?: DamageReport[];
};

export interface DamageReport {
  fromByte: number;
  toByte: number;
  /** Last readable seq before and first after the damage: the events in between are unreadable. */
  afterSeq: number | null;
  beforeSeq: number | null;
}

export interface LoadedLog {
  records: LogRecord[];
  tornBytes: number;
  /** First record that failed validation (it is skipped). */
  invalid: string | null;
  damaged: DamageReport[];
}

export interface Checkpoint {
  /** Byte offset of a record boundary; records before it are summarised by `state`. */
  offset: number;
  /** Readable records before `offset`. */
  records: number;
  lastRecordOffset: number;
  lastRecordCrc: number;
  /** Serialised ingest state (ingest-guard.ts). */
  state: unknown;
}

export interface LogHealth extends ScanSummary {
  sessionId: string;
  state: SessionState | 'unknown';
  damage: DamageReport[];
  invalid: number;
}

/** The unreadable part of a log could not be resumed: raised by reopen. */
export class DamagedLogError extends Error {
  constructor(
    readonly sessionId: string,
    readonly damage: DamageReport[],
  ) {
    super(`session ${sessionId} has a damaged log (unreadable: ${describeDamage(damage)}); it is kept untouched and cannot be resumed: start a new session (replay shows what is readable; npm run verify -- ${sessionId})`);
  }
}

/** `seq 41..57 (bytes 1200-5300)` per damaged range. */
export function describeDamage(damage: DamageReport[]): string {
  return damage.map((d) => `seq ${d.afterSeq === null ? 'start' : d.afterSeq + 1}..${d.beforeSeq === null ? 'end' : d.beforeSeq - 1} (bytes ${d.fromByte}-${d.toByte})`).join(', ');
}

const seqOf = (item: StoredItem): number => ('frame' in item ? ('seq' in item.frame ? (item.frame.seq ?? 0) : 0) : (item.note.seq ?? 0));

export class Recorder {
  readonly root: string;
  private readonly writers = new Map<string, LogWriter>();
  private readonly metas = new Map<string, SessionMeta>();
  private readonly checkpointAt = new Map<string, number>();
  /** File calls of every log writer, looked up at each call (tests swap in failing ones: ENOSPC, EIO). */
  fileOps: FileOps;

  constructor(private readonly opts: RecorderOptions) {
    this.fileOps = opts.ops ?? realFileOps;
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

  logFile(id: string): string {
    return path.join(this.dir(id), 'log.bin');
  }

  private writer(file: string, truncateTo?: number): LogWriter {
    return new LogWriter(file, this.opts.fsync, this.opts.fsyncIntervalMs, truncateTo, {
      ops: {
        writeSync: (fd, buf, off, len) => this.fileOps.writeSync(fd, buf, off, len),
        fdatasyncSync: (fd) => this.fileOps.fdatasyncSync(fd),
        fdatasync: (fd, done) => fdatasyncWith(this.fileOps, fd, done),
        ftruncateSync: (fd, len) => this.fileOps.ftruncateSync(fd, len),
        freeBytes: (dir) => this.fileOps.freeBytes(dir),
      },
      minFreeBytes: this.opts.minFreeBytes ?? 0,
      onSyncError: (message) => this.opts.log?.('error', message, { file }),
    });
  }

  /** Creates the session folder, its index entry, and records the session:start frame (with its owner). */
  create(frame: Extract<Frame, { type: 'session:start' }>, atMs: number, owner?: string): void {
    const dir = this.dir(frame.sessionId);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'log.bin'), '');
    const w = this.writer(path.join(dir, 'log.bin'));
    try {
      const first = toStored({ atMs, frame: owner ? { ...frame, owner } : frame });
      w.append(first);
      if (this.opts.fsync === 'always') w.sync(); // the session:start answer is acknowledged at once
      // a copy of the session:start record: a log whose first record is damaged stays replayable
      writeFileAtomic(path.join(dir, 'start.json'), JSON.stringify(first), true);
    } catch (e) {
      w.close();
      fs.rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    this.writers.set(frame.sessionId, w);
    this.writeMeta({ ...summaryOf(frame, 'live', 1), ...(owner ? { owner } : {}) });
  }

  /** Appends one accepted record; throws a StorageError on I/O errors (the event is refused, the log stays whole). */
  append(rec: LogRecord | StoredItem): void {
    const id = 'frame' in rec ? rec.frame.sessionId : rec.note.sessionId;
    const w = this.writers.get(id);
    if (!w) throw new Error(`session ${id} is not open for recording`);
    w.append('frame' in rec ? toStored(rec) : rec);
    const meta = this.metas.get(id);
    if (meta) meta.records++;
  }

  /**
   * Calls `done(null)` when the records appended to session `id` so far are durable per the fsync policy
   * (at once unless `always`; there after one group fdatasync on the threadpool), `done(message)` when that
   * sync failed. The rig's acknowledgements wait for it (docs/protocol.md).
   */
  afterSync(id: string, done: (err: string | null) => void): void {
    const w = this.writers.get(id);
    if (!w) return done(null);
    w.afterSync(done);
  }

  /** Why a session's log refuses appends right now (disk fault), or null. */
  fault(id: string): string | null {
    return this.writers.get(id)?.fault ?? null;
  }

  /**
   * Streams a recorded session's validated records from `fromByte` (a checkpoint) or the start; damaged
   * ranges come as items of their own. Memory is independent of the log's length.
   */
  *items(id: string, from: { offset: number; records: number } | null = null, toByte?: number): Generator<{ item: StoredItem; offset: number; end: number; index: number } | { damage: { fromByte: number; toByte: number } } | { invalid: string; index: number }, ScanSummary> {
    const it = scanLog(this.logFile(id), { prefix: RECORD_PREFIX, ...(from ? { fromByte: from.offset, fromIndex: from.records } : {}), ...(toByte !== undefined ? { toByte } : {}) });
    for (;;) {
      const step = it.next();
      if (step.done) return step.value;
      const s = step.value;
      if (s.kind === 'damage') {
        yield { damage: { fromByte: s.fromByte, toByte: s.toByte } };
        continue;
      }
      let value: unknown;
      try {
        value = decodePayload(s.payload);
      } catch (e) {
        yield { invalid: `record ${s.index}: ${(e as Error).message}`, index: s.index };
        continue;
      }
      const item = fromStored(value);
      if (typeof item === 'string') yield { invalid: `record ${s.index}: ${item}`, index: s.index };
      else yield { item, offset: s.offset, end: s.end, index: s.index };
    }
  }

  /**
   * A recorded session as a source for replays: one checksum pass counts its records and keeps a sparse
   * index (every INDEX_EVERY-th record's offset), then items are read on demand from the nearest mark.
   * Records appended after this call are not part of it.
   */
  source(id: string): RecordSource & { damaged: { fromByte: number; toByte: number }[]; tornBytes: number } {
    const file = this.logFile(id);
    const toByte = fs.statSync(file).size;
    const marks: { offset: number; records: number }[] = [{ offset: 0, records: 0 }];
    const it = scanLog(file, { prefix: RECORD_PREFIX, checksumOnly: true, toByte });
    let summary: ScanSummary;
    for (;;) {
      const step = it.next();
      if (step.done) {
        summary = step.value;
        break;
      }
      if (step.value.kind === 'record' && step.value.index > 0 && step.value.index % INDEX_EVERY === 0) marks.push({ offset: step.value.offset, records: step.value.index });
    }
    const self = this;
    // damage in the first record: the copy of the session:start record (start.json) heads the replay
    const head = this.items(id, null, toByte);
    const firstStep = head.next();
    head.return(undefined as unknown as ScanSummary);
    const firstIsStart = !firstStep.done && 'item' in firstStep.value && 'frame' in firstStep.value.item && firstStep.value.item.frame.type === 'session:start';
    const saved = firstIsStart ? null : this.savedStart(id);
    const shift = saved ? 1 : 0;
    return {
      total: summary.records + shift,
      damaged: summary.damaged,
      tornBytes: summary.tornBytes,
      open: function* (fromIndex: number) {
        if (saved && fromIndex === 0) yield saved;
        const from = Math.max(0, fromIndex - shift);
        const mark = marks.findLast((m) => m.records <= from) ?? marks[0];
        for (const v of self.items(id, mark.offset > 0 ? mark : null, toByte)) if ('item' in v && v.index >= from) yield v.item;
      },
    };
  }

  /** The copy of a session's session:start record written beside its log (start.json), or null. */
  private savedStart(id: string): LogRecord | null {
    try {
      const item = fromStored(JSON.parse(fs.readFileSync(path.join(this.dir(id), 'start.json'), 'utf8')));
      return typeof item !== 'string' && 'frame' in item && item.frame.type === 'session:start' ? item : null;
    } catch {
      return null;
    }
  }

  /** Reads and validates a whole recorded session into memory (small logs; replays stream instead). */
  load(id: string): LoadedLog {
    const records: LogRecord[] = [];
    let invalid: string | null = null;
    const it = this.items(id);
    const damage: { fromByte: number; toByte: number; afterSeq: number | null }[] = [];
    let lastSeq: number | null = null;
    for (;;) {
      const step = it.next();
      if (step.done) return { records, tornBytes: step.value.tornBytes, invalid, damaged: damage.map((d) => ({ ...d, beforeSeq: null })) };
      const v = step.value;
      if ('damage' in v) damage.push({ ...v.damage, afterSeq: lastSeq });
      else if ('invalid' in v) invalid ??= v.invalid;
      else {
        if ('frame' in v.item) records.push(v.item);
        lastSeq = seqOf(v.item);
        const open = damage.at(-1) as (DamageReport & { closed?: boolean }) | undefined;
        if (open && !open.closed) {
          open.beforeSeq = lastSeq;
          open.closed = true;
        }
      }
    }
  }

  /** Health of one log: readable records, torn tail, damaged ranges with their seq numbers (checksums only). */
  health(id: string): LogHealth {
    const it = this.items(id);
    const damage: DamageReport[] = [];
    let lastSeq: number | null = null;
    let invalid = 0;
    let pending: DamageReport | null = null;
    for (;;) {
      const step = it.next();
      if (step.done) {
        const meta = this.meta(id);
        return { ...step.value, sessionId: id, state: meta?.state ?? 'unknown', damage, invalid };
      }
      const v = step.value;
      if ('damage' in v) {
        pending = { ...v.damage, afterSeq: lastSeq, beforeSeq: null };
        damage.push(pending);
      } else if ('invalid' in v) invalid++;
      else {
        lastSeq = seqOf(v.item);
        if (pending) pending.beforeSeq = lastSeq;
        pending = null;
      }
    }
  }

  /**
   * The latest checkpoint of a session when it still matches its log, else null (resume then reads the whole
   * log). It matches when it ends at a whole record with its checksum and its saved state is well-formed and
   * names that record's seq; a damaged or lying checkpoint is ignored with a log line.
   */
  checkpoint(id: string): Checkpoint | null {
    const file = path.join(this.dir(id), 'checkpoint.json');
    if (!fs.existsSync(file)) return null;
    let why: string;
    try {
      const cp = JSON.parse(fs.readFileSync(file, 'utf8')) as Checkpoint;
      if (!cp || typeof cp !== 'object' || ![cp.offset, cp.records, cp.lastRecordOffset, cp.lastRecordCrc].every((n) => Number.isSafeInteger(n) && n >= 0)) throw new Error('offsets are not whole numbers');
      const fd = fs.openSync(this.logFile(id), 'r');
      try {
        const h = Buffer.alloc(8);
        const len = fs.readSync(fd, h, 0, 8, cp.lastRecordOffset) === 8 ? h.readUInt32LE(0) : -1;
        if (len < 0 || cp.lastRecordOffset + 8 + len !== cp.offset || h.readUInt32LE(4) !== cp.lastRecordCrc) throw new Error('it does not end at the record it names (the log changed)');
        const payload = Buffer.alloc(len);
        if (fs.readSync(fd, payload, 0, len, cp.lastRecordOffset + 8) !== len) throw new Error('its last record is cut short');
        const item = fromStored(decodePayload(payload));
        if (typeof item === 'string') throw new Error(`its last record is invalid: ${item}`);
        const bad = checkSavedGuard(cp.state, seqOf(item));
        if (bad) throw new Error(bad);
        return cp;
      } finally {
        fs.closeSync(fd);
      }
    } catch (e) {
      why = (e as Error).message;
    }
    this.opts.log?.('warn', `checkpoint ignored, resume reads the whole log: ${why}`, { sessionId: id });
    return null;
  }

  /** Saves the ingest state as a checkpoint when enough log was written since the last one. */
  maybeCheckpoint(id: string, records: number, state: () => unknown): void {
    const w = this.writers.get(id);
    if (!w?.lastRecord || w.bytes - (this.checkpointAt.get(id) ?? 0) < (this.opts.checkpointEveryBytes ?? CHECKPOINT_EVERY_BYTES)) return;
    const cp: Checkpoint = { offset: w.bytes, records, lastRecordOffset: w.lastRecord.offset, lastRecordCrc: w.lastRecord.crc, state: state() };
    try {
      writeFileAtomic(path.join(this.dir(id), 'checkpoint.json'), JSON.stringify(cp), false);
      this.checkpointAt.set(id, w.bytes);
    } catch (e) {
      // a checkpoint only speeds up resume; without it resume reads the whole log
      this.opts.log?.('warn', `could not write a checkpoint: ${(e as Error).message}`, { sessionId: id });
    }
  }

  /**
   * Reopens an unfinished session for appending. A torn tail (crash mid-write) is cut; damage inside the
   * log marks the session `damaged` and throws DamagedLogError, leaving the file untouched. Returns the
   * checkpoint to start rebuilding from (or null: from the start) and the scan of the rest.
   */
  reopen(id: string): { checkpoint: Checkpoint | null; scan: ScanSummary } {
    const file = this.logFile(id);
    const cp = this.checkpoint(id);
    const scan = checkLog(file, { prefix: RECORD_PREFIX, ...(cp ? { fromByte: cp.offset, fromIndex: cp.records } : {}) });
    if (scan.damaged.length) {
      const { damage } = this.health(id);
      this.markDamaged(id, damage);
      throw new DamagedLogError(id, damage);
    }
    this.writers.get(id)?.close();
    this.writers.set(id, this.writer(file, scan.tornBytes > 0 ? scan.validBytes : undefined));
    this.checkpointAt.set(id, cp?.offset ?? 0);
    const meta = this.meta(id);
    if (meta) this.writeMeta({ ...meta, state: 'live', records: (cp?.records ?? 0) + scan.records });
    return { checkpoint: cp, scan };
  }

  /** Records that a log holds unreadable ranges (the file itself is never changed). */
  markDamaged(id: string, damage: DamageReport[]): void {
    const meta = this.meta(id);
    if (meta && meta.state !== 'damaged') this.writeMeta({ ...meta, state: 'damaged', damaged: damage });
    this.opts.log?.('error', `session log is damaged: ${describeDamage(damage)}`, { sessionId: id });
  }

  /** Marks a session ended (or interrupted) in the index and closes its log. */
  finish(id: string, state: SessionState, trialsCompleted?: number): void {
    this.close1(id);
    const meta = this.meta(id);
    if (meta) this.writeMeta({ ...meta, state, endedAt: new Date().toISOString(), ...(trialsCompleted !== undefined ? { trialsCompleted } : {}) });
  }

  /** Closes a session's log file (an idle session leaves memory; resume reopens it). */
  close1(id: string): void {
    this.writers.get(id)?.close();
    this.writers.delete(id);
  }

  /** Index entry of one session, rebuilt from its log when meta.json is missing or unreadable; or null. */
  meta(id: string): SessionMeta | null {
    if (!Recorder.isSessionId(id)) return null;
    const cached = this.metas.get(id);
    if (cached) return cached;
    const file = path.join(this.dir(id), 'meta.json');
    let why: string;
    try {
      const m = JSON.parse(fs.readFileSync(file, 'utf8')) as SessionMeta;
      if (m && typeof m === 'object' && m.sessionId === id && typeof m.startedAt === 'string') {
        this.metas.set(id, m);
        return m;
      }
      why = 'meta.json does not describe this session';
    } catch (e) {
      why = (e as Error).message;
    }
    if (!fs.existsSync(this.logFile(id))) return null;
    return this.rebuildMeta(id, why);
  }

  private rebuildMeta(id: string, why: string): SessionMeta | null {
    let start: Extract<Frame, { type: 'session:start' }> | null = null;
    let ended = false;
    let records = 0;
    let damaged = false;
    try {
      for (const v of this.items(id)) {
        if ('damage' in v) damaged = true;
        if (!('item' in v)) continue;
        records++;
        if ('frame' in v.item && v.item.frame.type === 'session:start' && !start) start = v.item.frame;
        if ('frame' in v.item && v.item.frame.type === 'session:end') ended = true;
      }
    } catch (e) {
      this.opts.log?.('error', `cannot rebuild meta.json from the log: ${(e as Error).message}`, { sessionId: id });
      return null;
    }
    if (!start) {
      const saved = this.savedStart(id)?.frame;
      if (saved?.type === 'session:start') start = saved;
    }
    if (!start) {
      this.opts.log?.('error', 'meta.json is unreadable and the log has no readable session:start record (nor start.json); session skipped', { sessionId: id, why });
      return null;
    }
    const owner = (start as { owner?: string }).owner;
    const meta: SessionMeta = { ...summaryOf(start, damaged ? 'damaged' : ended ? 'ended' : 'interrupted', records), ...(owner ? { owner } : {}) };
    if (damaged) {
      this.metas.set(id, meta); // health() looks the meta up: without it, it would rebuild it again, without end
      meta.damaged = this.health(id).damage;
    }
    this.opts.log?.('warn', 'meta.json was missing or unreadable; rebuilt from the log', { sessionId: id, why, state: meta.state, records });
    try {
      this.writeMeta(meta);
    } catch (e) {
      this.metas.set(id, meta);
      this.opts.log?.('error', `could not rewrite meta.json: ${(e as Error).message}`, { sessionId: id });
    }
    return meta;
  }

  /** Every recorded session, newest first. */
  list(): SessionMeta[] {
    const ids = fs.readdirSync(this.root).filter((d) => Recorder.isSessionId(d));
    return ids
      .map((id) => this.meta(id))
      .filter((m): m is SessionMeta => m !== null)
      .sort((a, b) => b.startedAt.localeCompare(a.startedAt));
  }

  /**
   * Marks sessions left `live` by a previous process as interrupted (they can still be resumed); clustered,
   * `heldElsewhere` names the sessions another live node still writes, which are left alone.
   */
  markInterrupted(heldElsewhere: (sessionId: string) => boolean = () => false): string[] {
    const ids: string[] = [];
    for (const m of this.list()) {
      if ((m.state === 'live' || m.state === 'disconnected') && !this.writers.has(m.sessionId) && !heldElsewhere(m.sessionId)) {
        this.writeMeta({ ...m, state: 'interrupted' });
        ids.push(m.sessionId);
      }
    }
    return ids;
  }

  /**
   * Drops the cached index entries of sessions this process does not write (all, or one), so the next read
   * takes meta.json from disk: clustered nodes share a data folder, and another node may have changed it.
   */
  forgetMeta(id?: string): void {
    for (const k of id === undefined ? [...this.metas.keys()] : [id]) if (!this.writers.has(k)) this.metas.delete(k);
  }

  isOpen(id: string): boolean {
    return this.writers.has(id);
  }

  /** Log files open for writing. */
  openCount(): number {
    return this.writers.size;
  }

  close(): void {
    for (const w of this.writers.values()) w.close();
    this.writers.clear();
  }

  private writeMeta(meta: SessionMeta): void {
    writeFileAtomic(path.join(this.dir(meta.sessionId), 'meta.json'), JSON.stringify(meta, null, 2), true);
    this.metas.set(meta.sessionId, meta);
  }
}

function summaryOf(frame: Extract<Frame, { type: 'session:start' }>, state: SessionState, records: number): SessionSummary {
  return {
    sessionId: frame.sessionId,
    rigId: frame.start.rigId,
    subject: frame.start.subject,
    stimulusSetId: frame.start.stimulusSetId,
    startedAt: frame.startedAt,
    state,
    channels: frame.start.channels.length,
    records,
  };
}

/** Temporary file, fsync, rename, folder fsync: after a crash the file is the old or the new one, whole. */
function writeFileAtomic(file: string, text: string, durable: boolean): void {
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeFileSync(fd, text);
    if (durable) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  if (!durable) return;
  const dirFd = fs.openSync(path.dirname(file), 'r');
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
}
