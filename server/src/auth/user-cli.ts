/**
 * Named accounts: `npm run user -- add NAME --role operator|viewer` (asks for the password twice, or reads
 * one line from stdin with --password-stdin), `npm run user -- remove NAME`, `npm run user -- list`.
 * Writes the users file (auth.usersFile, default <dataDir>/users.json, mode 600) that the server reads at
 * each sign-in: no restart needed.
 */
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline/promises';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config.ts';
import { hashPassword } from './secrets.ts';
import { readUsersFile, roles, type Account, type Role } from './sign-in.ts';

const USAGE = `usage: npm run user -- add NAME --role operator|viewer [--password-stdin]
       npm run user -- remove NAME
       npm run user -- list`;
export const MIN_PASSWORD = 10;

/** Reads a password: one line of stdin when piped, otherwise asked twice on the terminal without echo. */
async function readPassword(fromStdin: boolean): Promise<string> {
  if (fromStdin || !process.stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
  }
  let mute = false;
  const out = new Writable({ write: (chunk, _enc, cb) => (mute || process.stdout.write(chunk), cb()) });
  const rl = readline.createInterface({ input: process.stdin, output: out, terminal: true });
  const ask = async (q: string) => {
    process.stdout.write(q);
    mute = true;
    const a = await rl.question('');
    mute = false;
    process.stdout.write('\n');
    return a;
  };
  try {
    const a = await ask('password: ');
    if ((await ask('again: ')) !== a) throw new Error('the passwords differ');
    return a;
  } finally {
    rl.close();
  }
}

/** Writes the accounts next to the file, then renames over it (never a half-written users file). */
function writeUsers(file: string, users: Record<string, Account>): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ users }, null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/** Runs the CLI with these arguments; returns the exit code. */
export async function userCli(args: string[], root: string): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { role: { type: 'string' }, 'password-stdin': { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' } } });
  const [cmd, name] = positionals;
  if (values.help || !cmd) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  const file = loadConfig(root).auth.usersFile;
  const users = readUsersFile(file);
  if (cmd === 'list') {
    for (const [n, a] of Object.entries(users)) console.log(`${n}\t${a.role}`);
    console.error(`(${Object.keys(users).length} accounts in ${file}; accounts in config auth.users are not listed)`);
    return 0;
  }
  if (!name || !/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
    console.error(`sharedlens user: a NAME of 1-64 characters A-Z a-z 0-9 . _ - is needed\n${USAGE}`);
    return 2;
  }
  if (cmd === 'remove') {
    if (!users[name]) return console.error(`sharedlens user: no account "${name}" in ${file}`), 1;
    delete users[name];
    writeUsers(file, users);
    console.log(`removed ${name} (sessions already open end when they expire or the server restarts)`);
    return 0;
  }
  if (cmd !== 'add') return console.error(`sharedlens user: unknown command "${cmd}"\n${USAGE}`), 2;
  if (!roles.includes(values.role as Role)) return console.error(`sharedlens user: --role must be one of ${roles.join(', ')}\n${USAGE}`), 2;
  const password = await readPassword(values['password-stdin']!);
  if (password.length < MIN_PASSWORD) return console.error(`sharedlens user: the password needs at least ${MIN_PASSWORD} characters`), 2;
  users[name] = { hash: await hashPassword(password), role: values.role as Role };
  writeUsers(file, users);
  console.log(`${name} (${values.role}) saved in ${file}`);
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
  userCli(process.argv.slice(2), root).then(
    (code) => process.exit(code),
    (e) => {
      console.error(`sharedlens user: ${e instanceof ConfigError ? e.message : (e as Error).message}`);
      process.exit(2);
    },
  );
}
