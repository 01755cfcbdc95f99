/**
 * Log lines a person can read on a terminal (pino-pretty style: time, level, message, then key=value), and
 * pino's JSON lines when the output is piped or LOG_FORMAT=json. A log line with `done` and `total` (a long
 * step's progress) shows a bar. Written by hand (40 lines) rather than adding pino-pretty and its
 * dependencies to the server.
 */
import type { DestinationStream } from 'pino';

const LEVELS: Record<number, [string, string]> = { 10: ['TRACE', '90'], 20: ['DEBUG', '36'], 30: ['INFO ', '32'], 40: ['WARN ', '33'], 50: ['ERROR', '31'], 60: ['FATAL', '35'] };
const OMIT = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

/** One pino JSON line as a readable line, e.g. `12:00:01 INFO  sharedlens listening url=http://127.0.0.1:8450`. */
export function prettyLine(json: string, colour: boolean): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json);
  } catch {
    return json.trimEnd();
  }
  const [name, code] = LEVELS[o.level as number] ?? ['LOG  ', '0'];
  const paint = (s: string, c: string) => (colour ? `\x1b[${c}m${s}\x1b[0m` : s);
  const time = new Date(typeof o.time === 'number' ? o.time : Date.now()).toTimeString().slice(0, 8);
  const bar = typeof o.done === 'number' && typeof o.total === 'number' && o.total > 0 ? ` [${'#'.repeat(Math.round((20 * o.done) / o.total)).padEnd(20)}]` : '';
  const rest = Object.entries(o)
    .filter(([k]) => !OMIT.has(k))
    .map(([k, v]) => {
      if (k === 'err' && v && typeof v === 'object') return `\n    ${String((v as { stack?: string; message?: string }).stack ?? (v as { message?: string }).message).replace(/\n/g, '\n    ')}`;
      return `${paint(k, '90')}=${typeof v === 'string' ? v : JSON.stringify(v)}`;
    })
    .join(' ');
  return `${paint(time, '90')} ${paint(name, code)} ${o.msg ?? ''}${bar}${rest ? ` ${rest}` : ''}`;
}

/** Where the logger writes: readable lines on a TTY unless `format` is 'json'; JSON lines otherwise. */
export function logDestination(format: 'auto' | 'json' | 'pretty', out: NodeJS.WriteStream = process.stdout): DestinationStream | undefined {
  const pretty = format === 'pretty' || (format === 'auto' && !!out.isTTY);
  if (!pretty) return undefined;
  const colour = !!out.isTTY && !process.env.NO_COLOR;
  return { write: (line: string) => void out.write(`${prettyLine(line, colour)}\n`) };
}
