/**
 * The append-only session log: records of `[u32 length][u32 crc32][msgpack payload]`, little-endian.
 * Writes are synchronous (fs.writeSync), so an event is in the operating system's page cache before the
 * rig's acknowledgement is sent: a killed server process loses no acknowledged event. Durability against
 * power loss follows the fsync policy: `always` fdatasyncs before every acknowledgement, `interval`
 * (default) every `fsyncIntervalMs`, `never` leaves it to the OS. A torn last record (crash mid-write) is
 * detected by its length or checksum and cut off when the log is reopened.
 */
import fs from 'node:fs';
import { crc32 } from 'node:zlib';
import { decodePayload, encodePayload } from '@sharedlens/shared';

export type FsyncPolicy = 'always' | 'interval' | 'never';
const HEADER_BYTES = 8;
/** Largest record accepted on read; larger lengths mean a torn or foreign file. */
const MAX_RECORD_BYTES = 256 * 1024 * 1024;

/** Encodes one record with its header. */
export function encodeRecord(value: unknown): Buffer {
  const payload = encodePayload(value);
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.byteLength);
  out.writeUInt32LE(payload.byteLength, 0);
  out.writeUInt32LE(crc32(payload), 4);
  out.set(payload, HEADER_BYTES);
  return out;
}

export interface LogContents {
  /** Decoded payloads, unvalidated (`unknown` until the record schema accepts them). */
  records: unknown[];
  /** Bytes of whole, checksummed records. */
  validBytes: number;
  /** Bytes after the last whole record (a torn write), 0 for a clean log. */
  tornBytes: number;
}

/** Reads every whole record of a log; stops at the first torn or corrupt one. */
export function readLog(path: string): LogContents {
  const buf = fs.readFileSync(path);
  const records: unknown[] = [];
  let off = 0;
  while (off + HEADER_BYTES <= buf.length) {
    const len = buf.readUInt32LE(off);
    const sum = buf.readUInt32LE(off + 4);
    if (len > MAX_RECORD_BYTES || off + HEADER_BYTES + len > buf.length) break;
    const payload = buf.subarray(off + HEADER_BYTES, off + HEADER_BYTES + len);
    if (crc32(payload) !== sum) break;
    try {
      records.push(decodePayload(payload));
    } catch {
      break;
    }
    off += HEADER_BYTES + len;
  }
  return { records, validBytes: off, tornBytes: buf.length - off };
}

/** Appends records to one session's log according to the fsync policy. */
export class LogWriter {
  private fd: number;
  private dirty = false;
  private timer: NodeJS.Timeout | null = null;
  bytes: number;

  /** Opens for append; `truncateTo` cuts a torn tail found by readLog first. */
  constructor(
    readonly path: string,
    private readonly policy: FsyncPolicy,
    fsyncIntervalMs: number,
    truncateTo?: number,
  ) {
    if (truncateTo !== undefined) fs.truncateSync(path, truncateTo);
    this.fd = fs.openSync(path, 'a');
    this.bytes = fs.fstatSync(this.fd).size;
    if (policy === 'interval') {
      this.timer = setInterval(() => this.sync(), fsyncIntervalMs);
      this.timer.unref();
    }
  }

  /** Writes one record; throws on I/O errors (the caller rejects the event instead of acknowledging it). */
  append(value: unknown): void {
    const rec = encodeRecord(value);
    let off = 0;
    while (off < rec.length) off += fs.writeSync(this.fd, rec, off, rec.length - off);
    this.bytes += rec.length;
    if (this.policy === 'always') fs.fdatasyncSync(this.fd);
    else this.dirty = true;
  }

  sync(): void {
    if (!this.dirty || this.fd < 0) return;
    this.dirty = false;
    fs.fdatasyncSync(this.fd);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.fd < 0) return;
    this.sync();
    fs.closeSync(this.fd);
    this.fd = -1;
  }
}
