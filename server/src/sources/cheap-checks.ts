/**
 * Checks that cost next to nothing, run on a decoded payload before its schema: a junk frame of any shape
 * within the size limit (millions of one-character strings where counts belong, deep nesting, huge key
 * sets) is refused in milliseconds instead of being walked by zod, which lists an error per element
 * (issue 11: a 3.8 MiB frame of 2 million strings took 7-8 s to reject while other rigs waited).
 */

/** Numeric arrays of the protocol: elements must be numbers (or the whole value packed bytes). */
const NUMERIC_FIELDS = new Set(['counts', 'responseCounts', 'baselineCounts']);
/** Most values other than numbers one payload may hold (session:start with 8192 channels: about 33 000). */
const MAX_NODES = 100_000;
const MAX_DEPTH = 8;
/** Longest string anywhere in a rig payload (ids, labels, reasons). */
const MAX_STRING = 4096;

/**
 * Returns why a decoded payload cannot be a rig event, or null when the schema should look at it.
 *
 * @example precheck({ sessionId: 's', seq: 1, counts: ['a', 'b'] }) // 'counts[0] is a string, not a number'
 */
export function precheck(decoded: unknown): string | null {
  if (decoded === null || typeof decoded !== 'object' || Array.isArray(decoded) || ArrayBuffer.isView(decoded)) {
    return `payload must be an object (a map of fields), got ${decoded === null ? 'null' : Array.isArray(decoded) ? 'an array' : typeof decoded}`;
  }
  const obj = decoded as Record<string, unknown>;
  for (const field of NUMERIC_FIELDS) {
    const v = obj[field];
    if (!Array.isArray(v)) continue;
    for (let i = 0; i < v.length; i++) if (typeof v[i] !== 'number') return `${field}[${i}] is ${v[i] === null ? 'null' : `a ${typeof v[i]}`}, not a number`;
  }
  let nodes = 0;
  const stack: { v: unknown; depth: number; path: string }[] = [{ v: decoded, depth: 0, path: '' }];
  while (stack.length) {
    const { v, depth, path } = stack.pop()!;
    if (typeof v === 'string') {
      if (v.length > MAX_STRING) return `${path || 'payload'}: a string of ${v.length} characters (at most ${MAX_STRING})`;
      if (++nodes > MAX_NODES) return `payload holds more than ${MAX_NODES} values other than numbers`;
      continue;
    }
    if (v === null || typeof v !== 'object' || ArrayBuffer.isView(v)) continue;
    if (depth >= MAX_DEPTH) return `${path}: nested deeper than ${MAX_DEPTH} levels`;
    if (Array.isArray(v)) {
      if (NUMERIC_FIELDS.has(path)) continue; // checked above
      if (nodes + v.length > MAX_NODES) return `${path}: ${v.length} items (a payload holds at most ${MAX_NODES} values other than numbers)`;
      nodes++;
      for (let i = 0; i < v.length; i++) stack.push({ v: v[i], depth: depth + 1, path: `${path}[${i}]` });
      continue;
    }
    const keys = Object.keys(v);
    if (nodes + keys.length > MAX_NODES) return `${path || 'payload'}: ${keys.length} fields`;
    nodes++;
    for (const k of keys) stack.push({ v: (v as Record<string, unknown>)[k], depth: depth + 1, path: path ? `${path}.${k}` : k });
  }
  return null;
}

/**
 * The same limits on the msgpack bytes themselves, before anything is decoded: a walk over the item
 * headers that allocates nothing (decoding 2 million strings alone takes hundreds of milliseconds).
 * Returns why the bytes cannot be a rig event, or null (also for bytes the decoder should judge as malformed).
 */
export function precheckBytes(b: Uint8Array): string | null {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let pos = 0;
  let nodes = 0;
  // items still to read at each open level
  const stack: number[] = [1];
  const len = (at: number, n: 1 | 2 | 4): number => (n === 1 ? b[at] : n === 2 ? dv.getUint16(at) : dv.getUint32(at));
  while (stack.length) {
    if (stack[stack.length - 1] === 0) {
      stack.pop();
      continue;
    }
    stack[stack.length - 1]--;
    if (pos >= b.length) return null;
    const t = b[pos];
    let children = 0;
    let skip = 0;
    let counted = true;
    if (t <= 0x7f || t >= 0xe0) {
      pos += 1;
      counted = false;
    } else if (t <= 0x8f) {
      children = 2 * (t & 0x0f);
      pos += 1;
    } else if (t <= 0x9f) {
      children = t & 0x0f;
      pos += 1;
    } else if (t <= 0xbf) {
      skip = t & 0x1f;
      pos += 1;
    } else {
      switch (t) {
        case 0xc0: case 0xc2: case 0xc3: pos += 1; counted = false; break;
        case 0xcc: case 0xd0: pos += 2; counted = false; break;
        case 0xcd: case 0xd1: pos += 3; counted = false; break;
        case 0xca: case 0xce: case 0xd2: pos += 5; counted = false; break;
        case 0xcb: case 0xcf: case 0xd3: pos += 9; counted = false; break;
        case 0xc4: case 0xd9: if (pos + 2 > b.length) return null; skip = len(pos + 1, 1); pos += 2; break;
        case 0xc5: case 0xda: if (pos + 3 > b.length) return null; skip = len(pos + 1, 2); pos += 3; break;
        case 0xc6: case 0xdb: if (pos + 5 > b.length) return null; skip = len(pos + 1, 4); pos += 5; break;
        case 0xd4: pos += 3; break;
        case 0xd5: pos += 4; break;
        case 0xd6: pos += 6; break;
        case 0xd7: pos += 10; break;
        case 0xd8: pos += 18; break;
        case 0xc7: if (pos + 3 > b.length) return null; skip = len(pos + 1, 1); pos += 3; break;
        case 0xc8: if (pos + 4 > b.length) return null; skip = len(pos + 1, 2); pos += 4; break;
        case 0xc9: if (pos + 6 > b.length) return null; skip = len(pos + 1, 4); pos += 6; break;
        case 0xdc: if (pos + 3 > b.length) return null; children = len(pos + 1, 2); pos += 3; break;
        case 0xdd: if (pos + 5 > b.length) return null; children = len(pos + 1, 4); pos += 5; break;
        case 0xde: if (pos + 3 > b.length) return null; children = 2 * len(pos + 1, 2); pos += 3; break;
        case 0xdf: if (pos + 5 > b.length) return null; children = 2 * len(pos + 1, 4); pos += 5; break;
        default: return null; // 0xc1 (never used): the decoder reports it
      }
    }
    const isString = (t >= 0xa0 && t <= 0xbf) || t === 0xd9 || t === 0xda || t === 0xdb;
    if (isString && skip > MAX_STRING * 4) return `a string of ${skip} bytes (at most ${MAX_STRING} characters)`;
    pos += skip;
    if (counted && ++nodes > MAX_NODES) return `payload holds more than ${MAX_NODES} values other than numbers`;
    if (children > 0) {
      if (stack.length >= MAX_DEPTH + 1) return `nested deeper than ${MAX_DEPTH} levels`;
      // a container claiming more items than bytes left is malformed: the decoder says so
      if (children > b.length - pos) return null;
      stack.push(children);
    }
  }
  return null;
}
