/**
 * Reading session logs of any length: fixed-size chunked reads (memory bounded by the chunk and the
 * largest record, whatever the file's size), every record checked by its length and CRC-32.
 *
 * A bad record is either a torn tail (the last record incomplete at the end of the file: a crash
 * mid-write, safe to cut) or damage (a valid record follows, or a whole-length record fails its checksum:
 * never cut). After bad bytes the scanner resynchronises:
 * it first tries where the bad record's own length says the next one starts (a flipped payload bit), then
 * scans byte by byte for a header whose payload starts like the log's first record and whose checksum
 * matches (the prefix makes a false match of random bytes practically impossible and keeps the scan cheap).
 */
import fs from 'node:fs';
import { crc32 } from 'node:zlib';
import { HEADER_BYTES } from './session-log.ts';

/** Largest record accepted on read; larger lengths mean damage (the rig's payload limit is 64 MiB at most). */
export const MAX_RECORD_BYTES = 128 * 1024 * 1024;
/** Bytes read per chunk. */
const CHUNK_BYTES = 1 << 20;
/** Bytes of the first record's payload every candidate record must start with when resynchronising. */
const PREFIX_BYTES = 6;

export interface ScannedRecord {
  kind: 'record';
  /** Index among the readable records of the log. */
  index: number;
  offset: number;
  /** Byte offset just after the record. */
  end: number;
  crc: number;
  payload: Buffer;
}
export interface DamagedBytes {
  kind: 'damage';
  fromByte: number;
  toByte: number;
}
export interface ScanSummary {
  /** Readable records. */
  records: number;
  /** End of the last readable record. */
  validBytes: number;
  /** Bytes after the last readable record that hold no readable record (a torn write). */
  tornBytes: number;
  /** Unreadable byte ranges followed by readable records. */
  damaged: { fromByte: number; toByte: number }[];
  fileBytes: number;
}

export interface ScanOptions {
  /** Start here instead of at 0 (a checkpoint: a record boundary known to be whole). */
  fromByte?: number;
  fromIndex?: number;
  /** Payload prefix of the log's records; read from the first record when absent. */
  prefix?: Buffer;
  /** Stop here (the file's length when the scan began: records appended later are not read). */
  toByte?: number;
  /** Check checksums only (no payload copies): for verify and resync passes. */
  checksumOnly?: boolean;
}

/** Reads a file in fixed-size chunks; a view stays valid until the next call. */
class ChunkReader {
  private buf = Buffer.alloc(0);
  private start = 0;
  constructor(
    private readonly fd: number,
    readonly size: number,
  ) {}

  get(pos: number, n: number): Buffer | null {
    if (pos < 0 || pos + n > this.size) return null;
    if (pos >= this.start && pos + n <= this.start + this.buf.length) return this.buf.subarray(pos - this.start, pos - this.start + n);
    const len = Math.min(Math.max(n, CHUNK_BYTES), this.size - pos);
    const b = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const r = fs.readSync(this.fd, b, got, len - got, pos + got);
      if (r <= 0) break;
      got += r;
    }
    if (got < n) return null;
    this.buf = b.subarray(0, got);
    this.start = pos;
    return this.buf.subarray(0, n);
  }
}

/** First bytes of the payload of the log's first whole record, or null for an empty or unreadable start. */
export function logPrefix(file: string): Buffer | null {
  const fd = fs.openSync(file, 'r');
  try {
    const r = new ChunkReader(fd, fs.fstatSync(fd).size);
    const h = r.get(0, HEADER_BYTES);
    if (!h) return null;
    const len = h.readUInt32LE(0);
    if (len < PREFIX_BYTES || len > MAX_RECORD_BYTES) return null;
    const p = r.get(HEADER_BYTES, len);
    if (!p || crc32(p) !== h.readUInt32LE(4)) return null;
    return Buffer.from(p.subarray(0, PREFIX_BYTES));
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Walks a log: yields every readable record (its payload is a copy unless `checksumOnly`, where it is a
 * view valid until the next step) and every damaged range; returns the summary.
 *
 * @example for (const item of scanLog(file)) if (item.kind === 'record') decodePayload(item.payload)
 */
export function* scanLog(file: string, opts: ScanOptions = {}): Generator<ScannedRecord | DamagedBytes, ScanSummary> {
  const prefix = opts.prefix ?? logPrefix(file);
  const fd = fs.openSync(file, 'r');
  try {
    const size = Math.min(fs.fstatSync(fd).size, opts.toByte ?? Infinity);
    const r = new ChunkReader(fd, size);
    /** A whole record with a matching checksum at `pos` (and the log's prefix when `strict`), or null. */
    const recordAt = (pos: number, strict: boolean): { len: number; crc: number; payload: Buffer } | null => {
      const h = r.get(pos, HEADER_BYTES);
      if (!h) return null;
      const len = h.readUInt32LE(0);
      const crc = h.readUInt32LE(4);
      if (len < 1 || len > MAX_RECORD_BYTES || pos + HEADER_BYTES + len > size) return null;
      if (strict) {
        if (!prefix || len < prefix.length) return null;
        const head = r.get(pos + HEADER_BYTES, prefix.length);
        if (!head || !head.equals(prefix)) return null;
      }
      const payload = r.get(pos + HEADER_BYTES, len);
      if (!payload || crc32(payload) !== crc) return null;
      return { len, crc, payload };
    };
    const damaged: { fromByte: number; toByte: number }[] = [];
    let pos = opts.fromByte ?? 0;
    let index = opts.fromIndex ?? 0;
    let validBytes = pos;
    while (pos < size) {
      let rec = recordAt(pos, false);
      if (!rec) {
        // resynchronise: where the bad record's own length points, then byte by byte
        const bad = pos;
        const h = r.get(bad, HEADER_BYTES);
        const claimed = h ? bad + HEADER_BYTES + h.readUInt32LE(0) : -1;
        let next = -1;
        if (claimed > bad + HEADER_BYTES && claimed < size && recordAt(claimed, true)) next = claimed;
        for (let p = bad + 1; next < 0 && p + HEADER_BYTES < size; p++) if (recordAt(p, true)) next = p;
        if (next < 0) {
          // nothing readable after it: a torn tail when the record is incomplete at the end of the file;
          // a record that claims to be whole but fails its checksum is damage, kept to the end
          const whole = h !== null && h.readUInt32LE(0) >= 1 && h.readUInt32LE(0) <= MAX_RECORD_BYTES && claimed <= size;
          if (whole) {
            damaged.push({ fromByte: bad, toByte: size });
            yield { kind: 'damage', fromByte: bad, toByte: size };
          }
          break;
        }
        damaged.push({ fromByte: bad, toByte: next });
        yield { kind: 'damage', fromByte: bad, toByte: next };
        pos = next;
        rec = recordAt(pos, true)!;
      }
      const end = pos + HEADER_BYTES + rec.len;
      yield { kind: 'record', index: index++, offset: pos, end, crc: rec.crc, payload: opts.checksumOnly ? rec.payload : Buffer.from(rec.payload) };
      pos = end;
      validBytes = end;
    }
    const damagedToEnd = damaged.at(-1)?.toByte === size && damaged.at(-1)!.fromByte >= validBytes;
    return { records: index - (opts.fromIndex ?? 0), validBytes, tornBytes: damagedToEnd ? 0 : size - validBytes, damaged, fileBytes: size };
  } finally {
    fs.closeSync(fd);
  }
}

/** Runs a scan to its end and returns the summary (checksums only; nothing kept). */
export function checkLog(file: string, opts: ScanOptions = {}): ScanSummary {
  const it = scanLog(file, { ...opts, checksumOnly: true });
  for (;;) {
    const step = it.next();
    if (step.done) return step.value;
  }
}
