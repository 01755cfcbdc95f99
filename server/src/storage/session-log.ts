/**
 * The append-only session log: records of `[u32 length][u32 crc32][msgpack payload]`, little-endian.
 * Writes are synchronous (fs.writeSync), so an event is in the operating system's page cache before the
 * rig's acknowledgement is sent: a killed server process loses no acknowledged event. Durability against
 * power loss follows the fsync policy: `always` acknowledges an event only after an fdatasync that covers
 * it (group commit: the events written while one sync runs are acknowledged together after the next),
 * `interval` (default) every `fsyncIntervalMs`, `never` leaves it to the OS. The syncs of `always` and
 * `interval` run on the libuv threadpool (fs.fdatasync with a callback), never on the event loop.
 *
 * A failed or short append never leaves half a record behind: the file is cut back to its last whole
 * record and the caller gets a StorageError (the event is refused, not acknowledged). Where even the cut
 * fails, the writer remembers it and cuts before its next append. A free-space reserve refuses events
 * before the disk is full; an fsync that fails in `interval` mode is remembered and refuses events until
 * a sync succeeds again (an event acknowledged after a failed fsync might not be on disk: issue 11).
 */
import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { encodePayload } from '@sharedlens/shared';

export type FsyncPolicy = 'always' | 'interval' | 'never';
export const HEADER_BYTES = 8;

/**
 * The file calls the writer makes, injectable so tests can make them fail as a full or broken disk
 * would (ENOSPC, EIO, short writes) on real files.
 */
export interface FileOps {
  writeSync(fd: number, buf: Uint8Array, offset: number, length: number): number;
  fdatasyncSync(fd: number): void;
  /** The sync off the event loop; absent: fs.fdatasync for the real fdatasyncSync, else the given fdatasyncSync (test fakes). */
  fdatasync?(fd: number, done: (err: unknown) => void): void;
  ftruncateSync(fd: number, length: number): void;
  /** Free bytes available to this process on the file system holding `dir`. */
  freeBytes(dir: string): number;
}

export const realFileOps: FileOps = {
  writeSync: (fd, buf, offset, length) => fs.writeSync(fd, buf, offset, length),
  fdatasyncSync: (fd) => fs.fdatasyncSync(fd),
  ftruncateSync: (fd, length) => fs.ftruncateSync(fd, length),
  freeBytes: (dir) => {
    const s = fs.statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize);
  },
};

/** An append, sync or reserve failure; the event is refused with code `storage`. */
export class StorageError extends Error {
  constructor(
    message: string,
    /** errno code of the underlying failure (ENOSPC, EIO, ...), or `RESERVE` / `SHORT`. */
    readonly code: string,
  ) {
    super(message);
  }
}

/** fdatasync off the event loop (libuv threadpool) with `ops`' calls: theirs, fs.fdatasync, or their synchronous one (fakes). */
export function fdatasyncWith(ops: FileOps, fd: number, done: (err: unknown) => void): void {
  if (ops.fdatasync) return ops.fdatasync(fd, done);
  if (ops.fdatasyncSync === realFileOps.fdatasyncSync) return fs.fdatasync(fd, (e) => done(e));
  let err: unknown = null;
  try {
    ops.fdatasyncSync(fd);
  } catch (e) {
    err = e;
  }
  setImmediate(() => done(err));
}

const errCode = (e: unknown): string => (e as NodeJS.ErrnoException)?.code ?? 'EUNKNOWN';
const errText = (e: unknown): string => (e as Error)?.message ?? String(e);

/** Encodes one record with its header. */
export function encodeRecord(value: unknown): Buffer {
  const payload = encodePayload(value);
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.byteLength);
  out.writeUInt32LE(payload.byteLength, 0);
  out.writeUInt32LE(crc32(payload), 4);
  out.set(payload, HEADER_BYTES);
  return out;
}

export interface LogWriterOptions {
  ops?: FileOps;
  /** Refuse appends that would leave less than this many bytes free (0: no reserve). */
  minFreeBytes?: number;
  /** Called (never throws) when a background fsync fails. */
  onSyncError?: (message: string) => void;
}

/** Appends records to one session's log according to the fsync policy. */
export class LogWriter {
  private fd: number;
  private dirty = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly ops: FileOps;
  /** Set when a cut back after a failed append failed too: the tail must be cut before the next append. */
  private needsCut: string | null = null;
  /** Set when a background fsync failed: appends are refused until a sync succeeds. */
  private syncFailed: string | null = null;
  /** A sync runs on the threadpool; `covered`: waiting for it (their records were written before it began). */
  private syncing = false;
  private covered: ((err: string | null) => void)[] = [];
  /** Waiting for the next sync (their records were written while one ran). */
  private waiting: ((err: string | null) => void)[] = [];
  private syncSoon = false;
  /** close() was called while a sync ran: the descriptor is closed when it ends. */
  private closeWhenSynced = false;
  /** Bytes of whole records in the file. */
  bytes: number;
  /** Byte offset where the last whole record starts, and its checksum (checkpoints name it). */
  lastRecord: { offset: number; crc: number } | null = null;

  /** Opens for append; `truncateTo` cuts a torn tail found by the scanner first. */
  constructor(
    readonly path: string,
    private readonly policy: FsyncPolicy,
    fsyncIntervalMs: number,
    truncateTo?: number,
    private readonly options: LogWriterOptions = {},
  ) {
    this.ops = options.ops ?? realFileOps;
    if (truncateTo !== undefined) fs.truncateSync(path, truncateTo);
    this.fd = fs.openSync(path, 'a');
    this.bytes = fs.fstatSync(this.fd).size;
    if (policy === 'interval') {
      this.timer = setInterval(() => this.syncInBackground(), fsyncIntervalMs);
      this.timer.unref();
    }
  }

  /** Why appends are refused right now, or null when they are accepted. */
  get fault(): string | null {
    return this.needsCut ?? this.syncFailed;
  }

  /**
   * Writes one record, or throws a StorageError and leaves the file at its last whole record (the
   * caller refuses the event instead of acknowledging it; a resend after the fault clears appends).
   */
  append(value: unknown): void {
    if (this.fd < 0 || this.closeWhenSynced) throw new StorageError(`session log ${this.path} is closed`, 'ECLOSED');
    this.recover();
    const rec = encodeRecord(value);
    const reserve = this.options.minFreeBytes ?? 0;
    if (reserve > 0) {
      let free: number;
      try {
        free = this.ops.freeBytes(path.dirname(this.path));
      } catch (e) {
        throw new StorageError(`cannot read the free space of the data folder: ${errText(e)}`, errCode(e));
      }
      if (free - rec.length < reserve) {
        throw new StorageError(`disk nearly full: ${free} bytes free, recording keeps a reserve of ${reserve} bytes (recording.minFreeBytes); free space, then resend`, 'RESERVE');
      }
    }
    let off = 0;
    try {
      while (off < rec.length) {
        const n = this.ops.writeSync(this.fd, rec, off, rec.length - off);
        if (n <= 0) throw new StorageError(`short write: ${off} of ${rec.length} bytes written`, 'SHORT');
        off += n;
      }
    } catch (e) {
      this.cutBack();
      throw new StorageError(`could not append to the session log (${errCode(e)}): ${errText(e)}; the log is back at its last whole record`, errCode(e));
    }
    this.lastRecord = { offset: this.bytes, crc: rec.readUInt32LE(4) };
    this.bytes += rec.length;
    this.dirty = true;
    if (this.policy === 'always' && !this.syncSoon) {
      // every record of `always` is synced soon even when no one waits for it (notes); one sync per tick at most
      this.syncSoon = true;
      setImmediate(() => {
        this.syncSoon = false;
        this.syncInBackground();
      });
    }
  }

  /**
   * Calls `done(null)` once the records appended so far are durable per the policy: at once for `interval`
   * and `never` (written is what they promise), after an fdatasync that began after them for `always` (group
   * commit: one sync for all the records written while the previous one ran). `done(message)` when that
   * sync failed: those records are in the file but may not be on disk (appends are refused until a sync
   * succeeds; a later call retries it).
   */
  afterSync(done: (err: string | null) => void): void {
    if (this.policy !== 'always' || this.fd < 0 || (!this.dirty && !this.syncing && !this.syncFailed)) return done(null);
    if (!this.dirty && this.syncing && !this.syncFailed) {
      this.covered.push(done);
      return;
    }
    this.waiting.push(done);
    if (!this.syncing) this.startSync();
  }

  /** The interval timer's (and `always`' scheduled) sync, on the threadpool: a failure is remembered, never thrown. */
  private syncInBackground(): void {
    if (this.fd < 0 || this.syncing || this.closeWhenSynced) return;
    if (this.dirty || this.waiting.length) this.startSync();
  }

  private startSync(): void {
    this.syncing = true;
    this.dirty = false;
    this.covered = this.waiting;
    this.waiting = [];
    fdatasyncWith(this.ops, this.fd, (e) => {
      this.syncing = false;
      const batch = this.covered;
      this.covered = [];
      if (e) {
        this.dirty = true;
        this.syncFailed = `fsync of the session log failed (${errCode(e)}): ${errText(e)}`;
        this.options.onSyncError?.(this.syncFailed);
      } else this.syncFailed = null;
      for (const f of batch) f(this.syncFailed);
      if (this.closeWhenSynced) {
        this.closeWhenSynced = false;
        this.finishClose();
      } else if (this.waiting.length && !this.syncFailed) this.startSync();
    });
  }

  /** Flushes to disk; a failure is remembered (appends refused until a sync succeeds), never thrown. */
  sync(): void {
    if (!this.dirty || this.fd < 0) return;
    try {
      this.ops.fdatasyncSync(this.fd);
      this.dirty = false;
      this.syncFailed = null;
    } catch (e) {
      this.syncFailed = `fsync of the session log failed (${errCode(e)}): ${errText(e)}`;
      this.options.onSyncError?.(this.syncFailed);
    }
    if (this.syncFailed) return;
    // everyone waiting is covered now
    const waiting = this.waiting;
    this.waiting = [];
    for (const f of waiting) f(null);
  }

  /** Syncs what is written and closes the file (after a sync running on the threadpool ends, if one does). */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.fd < 0 || this.closeWhenSynced) return;
    this.dirty ||= this.waiting.length > 0;
    this.sync();
    for (const f of this.waiting.splice(0)) f(this.syncFailed);
    if (this.syncing) this.closeWhenSynced = true;
    else this.finishClose();
  }

  private finishClose(): void {
    fs.closeSync(this.fd);
    this.fd = -1;
  }

  /** Cuts a half-written tail left by a failed cut, and retries a failed fsync, before a new append. */
  private recover(): void {
    if (this.needsCut) {
      try {
        this.ops.ftruncateSync(this.fd, this.bytes);
        this.needsCut = null;
      } catch (e) {
        throw new StorageError(`the session log still holds a partial record that cannot be cut (${errCode(e)}): ${errText(e)}`, errCode(e));
      }
    }
    if (this.syncFailed) {
      this.sync();
      if (this.syncFailed) throw new StorageError(`${this.syncFailed}; events are refused until the disk accepts a sync`, 'EIO');
    }
  }

  private cutBack(): void {
    try {
      this.ops.ftruncateSync(this.fd, this.bytes);
    } catch (e) {
      this.needsCut = `cut back to ${this.bytes} bytes failed: ${errText(e)}`;
    }
  }
}
