/**
 * Who may watch and who may steer, over real sockets and HTTP: sign-in (start token, named accounts),
 * roles, Host and Origin, JSON-only steering, rig tokens (names, failed attempts), stimulus symlinks,
 * security headers, and the refusal to start on the network with the documented secrets.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { pino } from 'pino';
import path from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { RigClient } from '@sharedlens/shared';
import { exposureProblems } from '../server/src/auth/exposure.ts';
import { hostName } from '../server/src/auth/hosts.ts';
import { hashPassword, matchSecret, digest, verifyPassword } from '../server/src/auth/secrets.ts';
import { createApp } from '../server/src/app.ts';
import { knownFeatures } from '../server/src/compute/encoding.ts';
import { loadConfig } from '../server/src/config.ts';
import { dashboardSocket, demoStimuli, rawRig, root, send, sessionStart, SIGN_IN_TOKEN, signIn, startApp, testConfig, tmpDir, TOKEN, until, type TestApp } from './helpers.ts';

let t: TestApp;
let usersFile: string;
const sockets: Socket[] = [];

before(async () => {
  const dir = tmpDir();
  usersFile = path.join(dir, 'users.json');
  // otto through the CLI (as a lab would add him), vera in config
  const cli = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'server/src/auth/user-cli.ts'), 'add', 'otto', '--role', 'operator', '--password-stdin'], { cwd: root, input: 'otto-password-1\n', encoding: 'utf8', env: { ...process.env, DATA_DIR: dir }, timeout: 60_000 });
  assert.equal(cli.status, 0, cli.stderr);
  assert.equal(fs.statSync(usersFile).mode & 0o777, 0o600);
  const base = testConfig();
  t = await startApp({ auth: { ...base.auth, usersFile, users: { vera: { hash: await hashPassword('vera-password-1'), role: 'viewer' } } } });
});
after(async () => {
  for (const s of sockets) s.close();
  await t.close();
});

/** One raw HTTP request (fetch cannot set Host). */
function raw(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers ?? {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

const connectError = (s: Socket) => new Promise<Error>((resolve, reject) => {
  s.once('connect', () => reject(new Error('connected, but should have been refused')));
  s.once('connect_error', resolve);
});

test('without sign-in: the API and the dashboard namespace refuse with a clear error; health stays open', async () => {
  const status = await fetch(`${t.url}/api/status`);
  assert.equal(status.status, 401);
  assert.match((await status.json()).error.message, /sign in first/);
  assert.equal((await fetch(`${t.url}/api/sessions`)).status, 401);
  assert.equal((await fetch(`${t.url}/api/health`)).status, 200);
  const page = await fetch(`${t.url}/#/sessions`, { redirect: 'manual' });
  assert.equal(page.status, 303);
  assert.match(page.headers.get('location')!, /^\/login\?next=/);
  const dash = io(`${t.url}/dashboard`, { transports: ['websocket'], reconnection: false, forceNew: true });
  sockets.push(dash);
  assert.match((await connectError(dash)).message, /unauthorized: sign in first/);
  // a forged cookie is no better
  const forged = io(`${t.url}/dashboard`, { transports: ['websocket'], reconnection: false, forceNew: true, extraHeaders: { cookie: 'sharedlens_session=forged' } });
  sockets.push(forged);
  assert.match((await connectError(forged)).message, /unauthorized/);
  assert.ok(t.app.refusedCounts.byCode.unauthorized! >= 4);
});

test('the token URL signs in with an httpOnly SameSite=Strict cookie and drops the token from the address', async () => {
  const res = await fetch(`${t.url}/?token=${SIGN_IN_TOKEN}#/sessions`, { redirect: 'manual' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.get('location'), '/');
  const setCookie = res.headers.get('set-cookie')!;
  assert.match(setCookie, /^sharedlens_session=[A-Za-z0-9_-]{40,};/);
  assert.match(setCookie, /HttpOnly/);
  assert.match(setCookie, /SameSite=Strict/);
  const cookie = setCookie.split(';')[0]!;
  assert.equal((await fetch(`${t.url}/api/status`, { headers: { cookie } })).status, 200);
  assert.deepEqual(await (await fetch(`${t.url}/api/auth/me`, { headers: { cookie } })).json(), { name: 'token', role: 'operator' });
  const wrong = await fetch(`${t.url}/?token=nope`, { redirect: 'manual' });
  assert.match(wrong.headers.get('location')!, /^\/login\?error=wrong%20sign-in%20token/);
  // signing out ends the session on the server
  await fetch(`${t.url}/api/auth/logout`, { method: 'POST', headers: { cookie } });
  assert.equal((await fetch(`${t.url}/api/status`, { headers: { cookie } })).status, 401);
  // the login page itself is open
  const login = await fetch(`${t.url}/login`);
  assert.equal(login.status, 200);
  assert.match(await login.text(), /Sign in/);
});

test('named accounts: scrypt passwords, a viewer reads but every steering action is refused by the server', async () => {
  await assert.rejects(signIn(t.url, { user: 'vera', password: 'wrong-password' }), /401.*wrong user name or password/);
  await assert.rejects(signIn(t.url, { user: 'nobody', password: 'vera-password-1' }), /401/);
  const vera = await signIn(t.url, { user: 'vera', password: 'vera-password-1' });
  assert.equal((await fetch(`${t.url}/api/status`, { headers: { cookie: vera } })).status, 200);
  const post = (p: string, cookie: string) => fetch(`${t.url}${p}`, { method: 'POST', headers: { cookie, 'content-type': 'application/json' }, body: '{}' });
  const rescan = await post('/api/stimuli/rescan', vera);
  assert.equal(rescan.status, 403);
  assert.match((await rescan.json()).error.message, /needs the operator role \(signed in as vera, viewer\)/);
  assert.equal((await post('/api/sessions/x/replay', vera)).status, 403);
  // the dashboard: watching works, steering is answered with forbidden
  const dash = dashboardSocket(t, vera);
  sockets.push(dash);
  const sessions = await new Promise((resolve) => dash.once('sessions:updated', resolve));
  assert.ok(Array.isArray(sessions));
  for (const [event, body] of [
    ['followup:request', { sessionId: 'x', count: 3 }],
    ['session:replay', { sessionId: 'x', speed: 1 }],
    ['replay:control', { replayId: 'x', action: 'stop' }],
  ] as const) {
    const ack = await dash.timeout(5000).emitWithAck(event, body);
    assert.equal(ack.error?.code, 'forbidden', `${event}: ${JSON.stringify(ack)}`);
  }
  // signing out ends what the open socket may do, too
  await fetch(`${t.url}/api/auth/logout`, { method: 'POST', headers: { cookie: vera, 'content-type': 'application/json' }, body: '{}' });
  const after = await dash.timeout(5000).emitWithAck('session:watch', { sessionId: 'x' });
  assert.equal(after.error?.code, 'unauthorized');
  await until(() => !dash.connected, 'the signed-out socket closed');
  // otto, added by the CLI, may steer; the action is logged with his name
  const otto = await signIn(t.url, { user: 'otto', password: 'otto-password-1' });
  const ok = await post('/api/stimuli/rescan', otto);
  assert.equal(ok.status, 200);
  assert.ok(t.logs.some((l) => l.msg === 'steering action' && l.by === 'otto' && l.path === '/api/stimuli/rescan'));
  assert.ok(t.logs.some((l) => l.code === 'forbidden' && l.by === 'vera'));
});

test('scrypt hashes verify with an independent implementation (Python hashlib.scrypt)', async () => {
  const hash = await hashPassword('p\u00e4ssw\u00f6rd-1');
  assert.equal(await verifyPassword('p\u00e4ssw\u00f6rd-1', hash), true);
  assert.equal(await verifyPassword('p\u00e4ssw\u00f6rd-2', hash), false);
  assert.equal(await verifyPassword('x', 'not-a-hash'), false);
  const py = spawnSync('/usr/bin/python3', ['-c', `
import sys, hashlib, base64, hmac
kind, n, r, p, salt, key = sys.argv[1].split('$')
b = lambda s: base64.urlsafe_b64decode(s + '=' * (-len(s) % 4))
got = hashlib.scrypt(sys.argv[2].encode(), salt=b(salt), n=int(n), r=int(r), p=int(p), maxmem=256 * 1024 * 1024, dklen=len(b(key)))
print(hmac.compare_digest(got, b(key)))
`, hash, 'p\u00e4ssw\u00f6rd-1'], { encoding: 'utf8' });
  assert.equal(py.stdout.trim(), 'True', py.stderr);
  // every configured secret is compared, the index of the match comes back
  const known = ['aaaaaaaa', 'bbbbbbbb', 'cccccccc'].map(digest);
  assert.equal(matchSecret(known, 'bbbbbbbb'), 1);
  assert.equal(matchSecret(known, 'bbbbbbb'), -1);
});

test('state-changing requests take JSON only, from an operator', async () => {
  for (const [type, body] of [['text/plain', '{"speed":1}'], ['application/x-www-form-urlencoded', 'speed=1'], ['multipart/form-data; boundary=x', '--x--']]) {
    const r = await fetch(`${t.url}/api/sessions/x/replay`, { method: 'POST', headers: { cookie: t.cookie, 'content-type': type }, body });
    assert.equal(r.status, 415, type);
    assert.match((await r.json()).error.message, /JSON body/);
  }
  const noCookie = await fetch(`${t.url}/api/stimuli/rescan`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(noCookie.status, 401);
  // sign-in itself is JSON only too
  assert.equal((await fetch(`${t.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: `{"token":"${SIGN_IN_TOKEN}"}` })).status, 415);
});

test('Host and Origin: DNS-rebinding names and other origins are refused, over HTTP and socket.io', async () => {
  const port = new URL(t.url).port;
  const rebound = await raw(`${t.url}/api/health`, { headers: { host: `attacker.example:${port}` } });
  assert.equal(rebound.status, 403);
  assert.match(rebound.body, /host-not-allowed/);
  assert.equal((await raw(`${t.url}/api/health`, { headers: { host: `localhost:${port}` } })).status, 200);
  assert.equal((await raw(`${t.url}/api/health`, { headers: { host: `[::1]:${port}` } })).status, 200);
  const foreign = await raw(`${t.url}/api/status`, { headers: { origin: 'http://attacker.example', cookie: t.cookie } });
  assert.equal(foreign.status, 403);
  assert.match(foreign.body, /origin-not-allowed/);
  assert.equal((await raw(`${t.url}/api/status`, { headers: { origin: t.url, cookie: t.cookie } })).status, 200);
  // socket.io's own requests (the handshake of every namespace)
  const poll = await raw(`${t.url}/socket.io/?EIO=4&transport=polling`, { headers: { origin: 'http://attacker.example', cookie: t.cookie } });
  assert.equal(poll.status, 403);
  const pollHost = await raw(`${t.url}/socket.io/?EIO=4&transport=polling`, { headers: { host: `attacker.example:${port}` } });
  assert.equal(pollHost.status, 403);
  const dash = io(`${t.url}/dashboard`, { transports: ['websocket'], reconnection: false, forceNew: true, extraHeaders: { cookie: t.cookie, origin: 'http://attacker.example' } });
  sockets.push(dash);
  await connectError(dash);
  assert.ok(t.app.refusedCounts.byCode['origin-not-allowed']! >= 3);
  assert.equal(hostName('[::1]:8450'), '[::1]');
  assert.equal(hostName('Example.ORG:80'), 'example.org');
});

test('security headers: a CSP without inline scripts, nosniff, no framing by others', async () => {
  const res = await fetch(`${t.url}/api/health`);
  const csp = res.headers.get('content-security-policy')!;
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.match(csp, /frame-ancestors 'self'/);
  assert.match(csp, /object-src 'none'/);
  assert.doesNotMatch(csp, /upgrade-insecure-requests/, 'plain http on loopback must not upgrade');
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(res.headers.get('x-frame-options'), 'SAMEORIGIN');
  assert.equal(res.headers.get('strict-transport-security'), null);
});

test('rig tokens: each names its rig, wrong tokens are refused and then limited per address', async () => {
  const base = testConfig();
  const t2 = await startApp({ rigTokens: { 'left-rig-token-1': 'left', 'right-rig-token-1': 'right' }, auth: { ...base.auth, maxFailedAttempts: 3, failedWindowS: 60 } });
  try {
    const left = await rawRig(t2.url, 'left-rig-token-1');
    sockets.push(left);
    const server = [...t2.app.io.of('/rig').sockets.values()];
    assert.deepEqual(server.map((s) => s.data.rigName), ['left']);
    for (let i = 0; i < 3; i++) await assert.rejects(rawRig(t2.url, `wrong-token-${i}`), /unauthorized: the rig token is missing or not one of the configured rigTokens/);
    // the address is now limited: even the right token waits for the window to end
    await assert.rejects(rawRig(t2.url, 'right-rig-token-1'), /rate-limited: too many wrong rig tokens from .*; try again in \d+ s/);
    const status = await (await fetch(`${t2.url}/api/status`, { headers: { cookie: t2.cookie } })).json();
    assert.equal(status.rejected.byCode.invalid, 3);
    assert.equal(status.rejected.byCode['rate-limited'], 1);
    // sign-in attempts are limited the same way
    for (let i = 0; i < 3; i++) await assert.rejects(signIn(t2.url, { token: `wrong-${i}` }), /401/);
    await assert.rejects(signIn(t2.url, { token: SIGN_IN_TOKEN }), /429.*too many failed sign-ins/);
  } finally {
    await t2.close();
  }
});

test("another rig's token cannot write to, end or resume a session that is not its own", async () => {
  const t2 = await startApp({ rigTokens: { 'left-rig-token-1': 'left', 'right-rig-token-1': 'right' } });
  try {
    const left = new RigClient({ url: t2.url, token: 'left-rig-token-1' });
    await left.connect();
    const sessionId = await left.startSession(sessionStart(2));
    assert.equal(t2.app.store.get(sessionId)?.owner, 'left');
    const right = await rawRig(t2.url, 'right-rig-token-1');
    sockets.push(right);
    const onset = await send(right, 'stim:onset', { sessionId, seq: 1, trial: 0, stimulusId: demoStimuli[0]!.id, tMs: 100 });
    assert.equal(onset.error?.code, 'not-owner', JSON.stringify(onset));
    assert.match(onset.error.message, /belongs to rig "left"/);
    const end = await send(right, 'session:end', { sessionId, seq: 1 });
    assert.equal(end.error?.code, 'not-owner', JSON.stringify(end));
    left.close();
    await until(() => t2.app.store.get(sessionId)?.state === 'disconnected', 'left rig gone');
    const resume = await send(right, 'session:resume', { sessionId });
    assert.equal(resume.error?.code, 'not-owner', JSON.stringify(resume));
  } finally {
    await t2.close();
  }
});

test('optional TLS: https with the configured certificate, a Secure cookie and HSTS', async () => {
  const dir = tmpDir();
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const ssl = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { encoding: 'utf8' });
  assert.equal(ssl.status, 0, ssl.stderr);
  const config = testConfig({ tls: { cert, key } });
  const app = createApp({ config, logger: pino({ level: 'silent' }) });
  const port = await app.listen(0, '127.0.0.1');
  try {
    const res = await new Promise<{ status: number; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
      const body = JSON.stringify({ token: SIGN_IN_TOKEN });
      const req = https.request({ host: '127.0.0.1', port, path: '/api/auth/login', method: 'POST', ca: fs.readFileSync(cert), servername: 'localhost', headers: { host: `localhost:${port}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (r) => {
        r.resume();
        r.on('end', () => resolve({ status: r.statusCode!, headers: r.headers }));
      });
      req.on('error', reject);
      req.end(body);
    });
    assert.equal(res.status, 200);
    assert.match(res.headers['set-cookie']![0]!, /; Secure/);
    assert.match(String(res.headers['strict-transport-security']), /max-age=\d+/);
    assert.match(String(res.headers['content-security-policy']), /upgrade-insecure-requests/);
    // plain http on the TLS port gets nothing
    await assert.rejects(fetch(`http://127.0.0.1:${port}/api/health`));
  } finally {
    await app.close();
  }
});

test('a rig reads its stimulus sets over HTTP with its own token, and nothing else', async () => {
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const manifest = await fetch(`${t.url}/api/stimuli/demo`, { headers: bearer(TOKEN) });
  assert.equal(manifest.status, 200);
  assert.equal((await manifest.json()).stimuli.length, demoStimuli.length);
  assert.equal((await fetch(`${t.url}/api/stimuli/demo/${demoStimuli[0]!.id}/image`, { headers: bearer(TOKEN) })).status, 200);
  const wrong = await fetch(`${t.url}/api/stimuli/demo`, { headers: bearer('not-a-rig-token') });
  assert.equal(wrong.status, 401);
  assert.match((await wrong.json()).error.message, /not one of the configured rigTokens/);
  // only the stimuli, only reading
  assert.equal((await fetch(`${t.url}/api/status`, { headers: bearer(TOKEN) })).status, 401);
  assert.equal((await fetch(`${t.url}/api/stimuli/rescan`, { method: 'POST', headers: { ...bearer(TOKEN), 'content-type': 'application/json' }, body: '{}' })).status, 401);
});

test('a stimulus file that is a symlink out of its set is not served (404); one inside the set is', async () => {
  const dir = tmpDir();
  fs.cpSync(path.join(root, 'stimuli', 'demo'), path.join(dir, 'demo'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'evil'));
  fs.symlinkSync('/etc/passwd', path.join(dir, 'evil', 'passwd.png'));
  fs.copyFileSync(path.join(root, 'stimuli/demo/images/monkey.png'), path.join(dir, 'evil', 'real.png'));
  fs.symlinkSync('real.png', path.join(dir, 'evil', 'alias.png'));
  fs.symlinkSync(path.join(dir, 'demo'), path.join(dir, 'evil', 'up'));
  fs.writeFileSync(
    path.join(dir, 'evil', 'manifest.json'),
    JSON.stringify({ id: 'evil', stimuli: [{ id: 'passwd', file: 'passwd.png', category: 'x' }, { id: 'alias', file: 'alias.png', category: 'x' }, { id: 'sideways', file: 'up/images/monkey.png', category: 'x' }] }),
  );
  const t2 = await startApp({ stimulusDir: dir });
  try {
    const get = (id: string) => fetch(`${t2.url}/api/stimuli/evil/${id}/image`, { headers: { cookie: t2.cookie } });
    const passwd = await get('passwd');
    assert.equal(passwd.status, 404);
    assert.doesNotMatch(await passwd.text(), /root:/);
    assert.equal((await get('sideways')).status, 404);
    const alias = await get('alias');
    assert.equal(alias.status, 200);
    assert.equal(alias.headers.get('content-type'), 'image/png');
    assert.equal(t2.app.refusedCounts.byCode['outside-set'], 2);
  } finally {
    await t2.close();
  }
});

test('a follow-up pushed from the dashboard is recorded with who asked for it', async () => {
  const base = testConfig();
  const t2 = await startApp({ compute: { ...base.compute, features: true, maps: { ...base.compute.maps, enabled: false } } });
  // closed in finally: a rig left connecting to a closed server keeps the test file's process alive
  const rig = new RigClient({ url: t2.url, token: TOKEN });
  try {
    await rig.connect();
    const sessionId = await rig.startSession(sessionStart(4));
    // follow-ups need the whole set's features (models start on a part of them)
    await until(() => {
      const enc = t2.app.store.get(sessionId)?.encoding;
      if (!enc) return false;
      const [known, total] = knownFeatures(enc);
      return known === total;
    }, 'features', 2400);
    const pushed = new Promise<unknown[]>((resolve) => rig.onFollowups(resolve));
    const dash = dashboardSocket(t2);
    sockets.push(dash);
    const ack = await dash.timeout(10_000).emitWithAck('followup:request', { sessionId, count: 2, strategy: 'improve' });
    assert.equal(ack.data?.sentToRig, 1, JSON.stringify(ack));
    assert.equal((await pushed).length, 2);
    const given = t2.app.recorder.load(sessionId).records.filter((r) => r.frame.type === 'followup:suggested');
    assert.deepEqual(given.map((r) => (r.frame as { by?: string }).by), ['token']);
    assert.ok(t2.logs.some((l) => l.msg === 'steering action' && l.event === 'followup:request' && l.by === 'token'));
  } finally {
    rig.close();
    await t2.close();
  }
});

test('bound to the network, the server refuses the demo rig token and a guessable sign-in token, naming the key', () => {
  const cfg = loadConfig(root, { HOST: '0.0.0.0' });
  assert.match(exposureProblems(cfg).join('\n'), /^rigTokens: the demo rig token "demo-rig-token"/);
  assert.deepEqual(exposureProblems({ ...cfg, host: '127.0.0.1' }), []);
  assert.deepEqual(exposureProblems({ ...cfg, rigTokens: { 'a-long-lab-token-1': 'left' } }), []);
  assert.match(exposureProblems({ ...cfg, rigTokens: { 'a-long-lab-token-1': 'left' }, auth: { ...cfg.auth, token: 'short' } }).join('\n'), /^auth.token: a fixed sign-in token of 5 characters is guessable/);
  const run = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'server/src/main.ts')], { cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, HOST: '0.0.0.0', PORT: '0', DEMO: '0', DATA_DIR: tmpDir(), LOG_LEVEL: 'error' } });
  assert.equal(run.status, 2, run.stderr);
  assert.match(run.stderr, /refusing to start on 0\.0\.0\.0:\n {2}rigTokens: the demo rig token/);
  assert.ok(demoStimuli.length > 0);
});

test('the raw rig helpers still work with the test token (rig named rig1 from the old list form)', async () => {
  const s = await rawRig(t.url);
  sockets.push(s);
  const ack = await send(s, 'session:start', sessionStart(2));
  assert.ok(ack.data?.sessionId, JSON.stringify(ack));
  assert.equal([...t.app.io.of('/rig').sockets.values()].find((x) => x.id === s.id)?.data.rigName, 'rig1');
});
