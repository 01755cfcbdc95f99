/** Shared test support: an app on port 0 with a temporary data folder, captured log lines, raw rig sockets. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { io, type Socket } from 'socket.io-client';
import { encodePayload, sessionStartSchema, type SessionStart, type SessionStartInput, type Stimulus } from '@sharedlens/shared';
import { createApp, type App } from '../server/src/app.ts';
import { loadConfig, type Config } from '../server/src/config.ts';
import { loadStimulusSets } from '../server/src/stimulus-sets.ts';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const TOKEN = 'test-rig-token';
/** The fixed sign-in token of test apps (auth.token); it signs in as an operator. */
export const SIGN_IN_TOKEN = 'test-sign-in-token';
/** Session cookie of the operator that startApp signs in, by origin; getJson sends it. */
const cookies = new Map<string, string>();

export function tmpDir(prefix = 'sharedlens-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function testConfig(over: Partial<Config> = {}): Config {
  const base = loadConfig(root, { RIG_TOKENS: TOKEN, AUTH_TOKEN: SIGN_IN_TOKEN, LOG_LEVEL: 'warn', DEMO: '0' });
  // encoding models are off unless a test asks for them (the CNN features take seconds to compute)
  return { ...base, dataDir: tmpDir(), compute: { ...base.compute, features: false, cacheDir: path.join(os.tmpdir(), 'sharedlens-test-features') }, ...over };
}

export interface TestApp {
  app: App;
  url: string;
  config: Config;
  logs: Record<string, unknown>[];
  /** Cookie header of a signed-in operator. */
  cookie: string;
  close(): Promise<void>;
}

/** createApp on 127.0.0.1 port 0 with log lines captured as objects. */
export async function startApp(over: Partial<Config> = {}, port = 0): Promise<TestApp> {
  const config = testConfig(over);
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  const app = createApp({ config, logger, clientDir: path.join(root, 'client', 'dist') });
  // The server runs in the test's own process: a test that blocks it (a synchronous child process, a CLI
  // under tsx taking seconds on a loaded CI machine) would let Node's 5 s keep-alive timer close an idle
  // socket just as fetch reuses it ('fetch failed: other side closed'). Idle sockets are kept longer here.
  app.httpServer.keepAliveTimeout = 120_000;
  port = await app.listen(port, '127.0.0.1');
  const url = `http://127.0.0.1:${port}`;
  const cookie = await signIn(url, { token: config.auth.token });
  cookies.set(url, cookie);
  return { app, url, config, logs, cookie, close: () => closeApp(app) };
}

/**
 * app.close(), with the keep-alive sockets of requests in flight at that moment closed once their response is
 * out: Node's server.close() closes only the sockets idle at the call, and a socket whose request was still
 * being answered (a browser's poll) then kept close() waiting for the 120 s keep-alive above (the dashboard
 * test's server restart took 123 s under load).
 */
async function closeApp(app: App): Promise<void> {
  const closing = app.close();
  const idle = setInterval(() => app.httpServer.closeIdleConnections(), 50);
  try {
    await closing;
  } finally {
    clearInterval(idle);
  }
}

/**
 * The URL a spawned server (`server/src/main.ts`) prints in its start banner, waited for up to 30 s (a server
 * under tsx on a loaded 2-core machine can take longer than until's default 10 s); throws with the server's
 * output when it exits first.
 */
export async function spawnedServerUrl(child: ChildProcess, output: () => string, what: string): Promise<string> {
  const url = await until(() => /(http:\/\/[\d.]+:\d+)\/\?token=/.exec(output())?.[1] ?? (child.exitCode !== null ? 'exited' : null), `${what} start`, 1200);
  if (url === 'exited') throw new Error(`${what} exited: ${output()}`);
  return url;
}

/** Signs in (`{ token }` or `{ user, password }`) and returns the Cookie header to send. */
export async function signIn(url: string, creds: { token: string } | { user: string; password: string }): Promise<string> {
  const res = await fetch(`${url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(creds) });
  if (!res.ok) throw new Error(`sign-in failed: ${res.status} ${await res.text()}`);
  return res.headers.get('set-cookie')!.split(';')[0]!;
}

/** fetch with the operator's cookie of the app at that origin (a JSON body gets its content type). */
export function apiFetch(url: string, init: RequestInit & { json?: unknown } = {}): Promise<globalThis.Response> {
  const { json, ...rest } = init;
  const headers = new Headers(rest.headers);
  const cookie = cookies.get(new URL(url).origin);
  if (cookie && !headers.has('cookie')) headers.set('cookie', cookie);
  if (json !== undefined) headers.set('content-type', 'application/json');
  return fetch(url, { ...rest, headers, ...(json !== undefined ? { body: JSON.stringify(json) } : {}) });
}

/** A socket on /dashboard signed in as `cookie` (default: the app's operator). */
export function dashboardSocket(t: TestApp, cookie = t.cookie): Socket {
  return io(`${t.url}/dashboard`, { transports: ['websocket'], forceNew: true, extraHeaders: { cookie } });
}

export const demoStimuli: Stimulus[] = loadStimulusSets(path.join(root, 'stimuli')).sets.get('demo')!.manifest.stimuli;

export function sessionStart(channels = 4, over: Partial<SessionStartInput> = {}): SessionStartInput {
  return {
    rigId: 'test-rig',
    subject: 'M1',
    channels: Array.from({ length: channels }, (_, i) => ({ id: `c${i}`, label: `channel ${i}` })),
    stimulusSetId: 'demo',
    timing: { responseWindowMs: 100, latencyMs: 50, baselineWindowMs: 50, binWidthMs: 1 },
    ...over,
  };
}

/** A parsed session start for the pure compute tests: C channels c0.., stimulus set x, binned counts. */
export function computeStart(C: number): SessionStart {
  return sessionStartSchema.parse(sessionStart(C, { stimulusSetId: 'x', countsMode: 'binned' }));
}

/** A raw socket on /rig, for sending what a correct client never would. */
export async function rawRig(url: string, token = TOKEN): Promise<Socket> {
  const s = io(`${url}/rig`, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
  await new Promise<void>((resolve, reject) => {
    s.once('connect', () => resolve());
    s.once('connect_error', reject);
  });
  return s;
}

/** Emits one event with a msgpack payload (or the raw value given) and returns the acknowledgement. */
export function send(s: Socket, event: string, body: unknown, raw = false): Promise<any> {
  return s.timeout(5000).emitWithAck(event, raw ? body : encodePayload(body));
}

/** Polls until `fn` returns a truthy value (state reached through sockets arrives asynchronously). */
export async function until<T>(fn: () => T | Promise<T>, what: string, tries = 400): Promise<NonNullable<Awaited<T>>> {
  for (let i = 0; i < tries; i++) {
    const v = await fn();
    if (v) return v as NonNullable<Awaited<T>>;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export async function getJson(url: string): Promise<any> {
  const res = await apiFetch(url);
  return { status: res.status, body: await res.json() };
}

/**
 * Waits until a session's model report stops changing (reports settle after the session ends; none for 3 s).
 * After the end come the end's report, the model thread's last snapshot (up to a second later: snapshotMs) and
 * the exact refit, each with a report after the one running: on a loaded machine two of them can be more than
 * the 1.5 s this waited before, which could return models that change afterwards (nwb-models then asks for the
 * maps of a driver that may no longer be one, and compares its export with a later report).
 */
export async function finalModels(url: string, sessionId: string): Promise<void> {
  let version = -1;
  await until(async () => {
    const v = (await getJson(`${url}/api/sessions/${sessionId}/models`)).body.version;
    const same = v === version;
    version = v;
    if (!same) await new Promise((r) => setTimeout(r, 3000));
    return same;
  }, 'the final models', 100);
}
