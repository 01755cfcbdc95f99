/**
 * `npm run verify -- [SESSION_ID]`: checks every session log (or one) record by record: readable records,
 * a torn tail (cut on the next resume), damaged ranges with the sequence numbers they hide (never cut;
 * the session is marked `damaged`). Exits 1 when any log is damaged, 0 otherwise. Reads only; safe while
 * a server runs (its latest appends may show as a torn tail until they complete).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from './config.ts';
import { parseCli } from './terminal/cli-help.ts';
import { Recorder, describeDamage } from './sinks/recorder.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const config = loadConfig(root);
const recorder = new Recorder({ dataDir: config.dataDir, fsync: 'never', fsyncIntervalMs: 1000 });
const usage = `
npm run verify -- [SESSION_ID ...]

Checks every session log in ${config.dataDir} (or the ones named) record by record: readable records, a torn
tail, damaged ranges with the sequence numbers they hide. Exits 1 when any log is damaged, 0 otherwise.
Reads only; safe while a server runs.

Options:
  -h, --help   this text
`;
const wanted = parseCli('verify', usage, {}, process.argv.slice(2), true).positionals;
const ids = wanted.length ? wanted : recorder.list().map((m) => m.sessionId);
if (!ids.length) console.log(`no recorded sessions in ${recorder.root}`);
let damaged = 0;
for (const id of ids) {
  if (!Recorder.isSessionId(id) || !recorder.meta(id)) {
    console.error(`verify: no recorded session "${id}" in ${recorder.root}`);
    process.exitCode = 2;
    continue;
  }
  const h = recorder.health(id);
  const status = h.damage.length ? 'DAMAGED' : h.tornBytes ? 'torn tail' : 'ok';
  console.log(`${id}  ${status.padEnd(9)} ${h.records} records, ${h.fileBytes} bytes, state ${h.state}${h.tornBytes ? `, torn tail of ${h.tornBytes} bytes (cut on resume)` : ''}${h.invalid ? `, ${h.invalid} records fail validation` : ''}`);
  if (h.damage.length) {
    damaged++;
    console.log(`  unreadable: ${describeDamage(h.damage)}`);
    if (h.state !== 'damaged') recorder.markDamaged(id, h.damage);
  }
}
if (damaged) process.exitCode = 1;
