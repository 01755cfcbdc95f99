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
