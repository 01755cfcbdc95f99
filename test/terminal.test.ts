/** Terminal output: readable log lines, the progress bar, --help on every CLI, the demo rig ends with the server. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { prettyLine } from '../server/src/terminal/pretty-log.ts';
import { progressBar } from '../server/src/terminal/progress-bar.ts';
import { root, tmpDir } from './helpers.ts';

test('a pino JSON line reads as time, level, message and key=value; progress gets a bar; non-JSON passes through', () => {
  const t = Date.UTC(2026, 0, 1, 12, 0, 1);
  const line = prettyLine(JSON.stringify({ level: 40, time: t, pid: 1, hostname: 'h', msg: 'rig disconnected', sessionId: 's1', n: 3 }), false);
  assert.match(line, /^\d\d:\d\d:\d\d WARN  rig disconnected sessionId=s1 n=3$/);
  assert.ok(!line.includes('hostname') && !line.includes('pid'));
  assert.match(prettyLine(JSON.stringify({ level: 30, time: t, msg: 'stimulus features', done: 36, total: 72 }), false), /INFO  stimulus features \[#{10} {10}\] done=36 total=72/);
  assert.equal(prettyLine('not json\n', false), 'not json');
  assert.match(prettyLine(JSON.stringify({ level: 50, time: t, msg: 'x' }), true), /\x1b\[31mERROR/);
});

test('piped, the progress bar writes one line per tenth; on a terminal it rewrites one line', () => {
  const piped = new PassThrough() as unknown as NodeJS.WriteStream;
  let text = '';
  (piped as unknown as PassThrough).on('data', (d) => (text += d));
  const bar = progressBar('features demo', piped);
  for (let i = 1; i <= 72; i++) bar.update(i, 72);
  bar.done('done');
  const lines = text.trim().split('\n');
  assert.equal(lines.length, 12);
  assert.match(lines[10], /^features demo \[#{30}\] 72\/72 \(100%\)$/);
  assert.equal(lines[11], 'done');
  const tty = Object.assign(new PassThrough(), { isTTY: true }) as unknown as NodeJS.WriteStream;
  let out = '';
  (tty as unknown as PassThrough).on('data', (d) => (out += d));
  const b2 = progressBar('x', tty);
  b2.update(1, 2);
  b2.update(2, 2);
  b2.done();
  assert.equal(out.split('\n').length, 2);
  assert.equal(out.split('\r').length, 3);
});

const cli = (file: string, args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(root, file), ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, DATA_DIR: tmpDir() }, timeout: 60_000 });

test('every command-line tool answers --help with what it does, and a wrong option without a stack trace', () => {
  for (const [file, what] of [['server/src/sim/cli.ts', /npm run sim -- \[options\][\s\S]*--channels N/], ['server/src/replay-cli.ts', /npm run replay -- \[SESSION_ID\][\s\S]*--speed/], ['server/src/features-cli.ts', /npm run features -- \[--set ID\]/], ['server/src/verify-cli.ts', /npm run verify -- \[SESSION_ID/], ['server/src/nwb/export-cli.ts', /npm run export -- SESSION_ID \[--out FILE.nwb\]/], ['server/src/nwb/import-cli.ts', /npm run import -- FILE.nwb[\s\S]*--bin-ms N/]] as const) {
    const help = cli(file, ['--help']);
    assert.equal(help.status, 0, `${file}: ${help.stderr}`);
    assert.match(help.stdout, what);
    const bad = cli(file, ['--no-such-option']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /Unknown option '--no-such-option'[\s\S]*--help lists the options/);
    assert.ok(!/\n\s+at /.test(bad.stderr), `${file} printed a stack trace: ${bad.stderr}`);
  }
});

test('the demo rig says when it drops its connection on purpose, and ends with the server (SIGTERM)', async () => {
  const dataDir = tmpDir();
  const server = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'server/src/main.ts')], { cwd: root, env: { ...process.env, DATA_DIR: dataDir, DEMO: '1', PORT: '0', FEATURES: '0', LOG_FORMAT: 'json' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  server.stdout.on('data', (d) => (out += d));
  server.stderr.on('data', (d) => (out += d));
  const rigPid = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no demo rig started:\n${out}`)), 60_000);
    const look = () => {
      const m = /"pid":(\d+),"msg":"demo: simulated rig started/.exec(out);
      // the planned drop comes after sim.reconnectAfterTrials (50: about 20 s at the rig's pace)
      if (m && /sim: reconnected and resumed session/.test(out)) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      } else setTimeout(look, 100);
    };
    look();
  });
  assert.match(out, /What next: open the dashboard above/);
  assert.match(out, /sim: dropping the connection on purpose after 50 trials to show that a rig resumes its session/);
  server.kill('SIGTERM');
  await new Promise((resolve) => server.once('exit', resolve));
  const alive = () => {
    try {
      process.kill(rigPid, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (let i = 0; i < 50 && alive(); i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(alive(), false, 'the demo rig outlived the server');
  assert.match(out, /sim: stopping \(SIGTERM\)/);
});
