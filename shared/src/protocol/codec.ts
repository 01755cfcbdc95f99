/**
 * msgpackr codec of rig payloads. Typed arrays are packed as raw bytes (msgpack bin), which is also what
 * a Python rig sends with `numpy.ndarray.astype('<u2').tobytes()`.
 */
import { Packr } from 'msgpackr';

// mapsAsObjects: payloads are plain records; useRecords off keeps the format readable by any msgpack peer.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** Encodes one payload to msgpack bytes. */
export function encodePayload(value: unknown): Uint8Array {
  return packr.pack(value);
}

/** Decodes msgpack bytes; throws on malformed input (callers turn that into a rejection). */
export function decodePayload(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}

/**
 * Normalises a wire count vector (packed little-endian uint16 bytes, Uint16Array or number[]) to a
 * Uint16Array. Returns an error string instead of throwing.
 */
export function toUint16(counts: Uint8Array | Uint16Array | number[]): Uint16Array | string {
  if (counts instanceof Uint16Array) return counts;
  if (counts instanceof Uint8Array) {
    if (counts.byteLength % 2 !== 0) return `packed uint16 counts need an even byte length, got ${counts.byteLength}`;
    const out = new Uint16Array(counts.byteLength / 2);
    new Uint8Array(out.buffer).set(counts);
    if (isBigEndianHost) return 'big-endian hosts are not supported';
    return out;
  }
  const out = new Uint16Array(counts.length);
  for (let i = 0; i < counts.length; i++) {
    const v = counts[i];
    if (!Number.isInteger(v) || v < 0 || v > 65_535) return `counts[${i}] = ${v} is not an integer in 0..65535`;
    out[i] = v;
  }
  return out;
}

/** Normalises a per-trial count vector to Float64Array (values already validated as finite, >= 0). */
export function toFloat64(counts: Uint8Array | Uint16Array | number[]): Float64Array | string {
  if (Array.isArray(counts)) return Float64Array.from(counts);
  const u = toUint16(counts);
  return typeof u === 'string' ? u : Float64Array.from(u);
}

const isBigEndianHost = new Uint8Array(new Uint16Array([1]).buffer)[0] === 0;
