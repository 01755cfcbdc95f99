/**
 * Sign-in and origins in Debian's chromium (playwright-core): a page from another origin gets nothing
 * (API reads, text/plain and JSON POSTs, the dashboard socket) even while the browser holds an operator's
 * cookie; a viewer signed in on the login page sees the grid but the server refuses her steering; the token
 * URL signs in and the cookie survives a reload; the built dashboard runs under the CSP without a violation.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { RigClient } from '@sharedlens/shared';
import { hashPassword } from '../server/src/auth/secrets.ts';
import { demoStimuli, getJson, SIGN_IN_TOKEN, startApp, testConfig, TOKEN, until, type TestApp } from './helpers.ts';

const C = 6;
let t: TestApp;
let browser: Browser;
let foreign: http.Server;
let foreignUrl: string;
let sessionId: string;
let rig: RigClient;

/**
 * Page-side: one socket.io exchange over a raw WebSocket (engine.io v4 framing): connect to /dashboard,
 * emit `event` with an acknowledgement, resolve with the answer, or with why the connection failed.
 */
const socketIoExchangeSource = `(args) => new Promise((resolve) => {
  const ws = new WebSocket(args.url.replace(/^http/, 'ws') + '/socket.io/?EIO=4&transport=websocket');
  const done = (v) => (ws.close(), resolve(v));
  ws.onerror = () => resolve({ refused: 'websocket failed' });
  ws.onmessage = (m) => {
    const d = String(m.data);
    if (d.startsWith('0')) ws.send('40/dashboard,');
    else if (d === '2') ws.send('3');
    else if (d.startsWith('40/dashboard,')) ws.send('42/dashboard,1' + JSON.stringify([args.event, args.body]));
    else if (d.startsWith('44/dashboard,')) done({ refused: JSON.parse(d.slice('44/dashboard,'.length)).message });
    else if (d.startsWith('43/dashboard,1')) done({ ack: JSON.parse(d.slice('43/dashboard,1'.length))[0] });
  };
})`;
const socketIoExchange = (page: Page, args: { url: string; event: string; body: unknown }): Promise<unknown> => page.evaluate(`(${socketIoExchangeSource})(${JSON.stringify(args)})`);

before(async () => {
  const base = testConfig();
  t = await startApp({ auth: { ...base.auth, users: { vera: { hash: await hashPassword('vera-password-1'), role: 'viewer' } } }, dashboard: { deltaThrottleMs: 100, snapshotThrottleMs: 300 } });
  // a live session with statistics (kept open, so the dashboard watches it): something to watch and to try to replay
  rig = new RigClient({ url: t.url, token: TOKEN });
  await rig.connect();
  sessionId = await rig.startSession({ rigId: 'sec-rig', subject: 'M1', stimulusSetId: 'demo', channels: Array.from({ length: C }, (_, i) => ({ id: `ch${i}`, label: `ch${i}` })), timing: { responseWindowMs: 100, latencyMs: 0, baselineWindowMs: 0, binWidthMs: 1 } });
  for (let trial = 0; trial < 40; trial++) {
    const stim = demoStimuli[trial % demoStimuli.length]!.id;
    await rig.onset(trial, stim, trial * 300);
    await rig.binned(trial * 300, 1, new Uint16Array(200 * C).fill(trial % 2));
    await rig.offset(trial, stim, trial * 300 + 150);
  }
  await until(async () => (await getJson(`${t.url}/api/sessions/${sessionId}/stats`)).body.trialsCompleted === 40, 'statistics');
  // the other origin: same host, another port (same site, so only the Origin check stands in the way)
  foreign = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>elsewhere</title><p>another origin</p>'));
  await new Promise<void>((resolve) => foreign.listen(0, '127.0.0.1', resolve));
  foreignUrl = `http://127.0.0.1:${(foreign.address() as { port: number }).port}`;
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
});
after(async () => {
  await browser?.close();
  rig?.close();
  foreign?.close();
  await t?.close();
});

/** A fresh browser context whose CSP violations are collected in window.__csp. */
async function context(): Promise<{ ctx: BrowserContext; page: Page; csp: () => Promise<string[]> }> {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await ctx.newPage();
  await page.addInitScript(() => {
    (window as unknown as { __csp: string[] }).__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => (window as unknown as { __csp: string[] }).__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const consoleCsp: string[] = [];
  page.on('console', (m) => /Content Security Policy/i.test(m.text()) && consoleCsp.push(m.text()));
  return { ctx, page, csp: async () => [...consoleCsp, ...(await page.evaluate(() => (window as unknown as { __csp: string[] }).__csp))] };
}

test('the token URL signs in, the cookie survives a reload, and the dashboard runs under the CSP', async () => {
  const { ctx, page, csp } = await context();
  try {
    await page.goto(`${t.url}/?token=${SIGN_IN_TOKEN}`);
    assert.equal(new URL(page.url()).search, '', 'the token leaves the address bar');
    const cookies = await ctx.cookies();
    assert.deepEqual(cookies.map((c) => [c.name, c.httpOnly, c.sameSite]), [['sharedlens_session', true, 'Strict']]);
    assert.equal(await page.evaluate(() => document.cookie), '', 'scripts cannot read the session cookie');
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid="channel-tile"]').length === n, C, { timeout: 30_000 });
    await page.reload();
    assert.equal(new URL(page.url()).pathname, '/', 'still signed in after a reload');
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid="channel-tile"]').length === n, C, { timeout: 30_000 });
    // every view, under the CSP
    for (const view of ['#/neuron/ch0', '#/drivers', '#/followup', '#/sessions']) {
      await page.goto(`${t.url}/${view}`);
      await page.waitForLoadState('networkidle');
    }
    await page.waitForSelector('[data-testid="recorded-session"]');
    assert.deepEqual(await csp(), []);
  } finally {
    await ctx.close();
  }
});

test('a page from another origin gets nothing, although the browser holds an operator cookie', async () => {
  const { ctx, page } = await context();
  try {
    await page.goto(`${t.url}/?token=${SIGN_IN_TOKEN}`);
    await page.goto(foreignUrl);
    const before = { ...t.app.refusedCounts.byCode };
    // page source as text: tsx would wrap functions written here in helpers the page lacks
    const result = (await page.evaluate(`(async ({ url, sessionId }) => {
      const outcome = (p) => p.then((r) => 'status ' + r.status, (e) => 'failed: ' + e.name);
      return {
        read: await outcome(fetch(url + '/api/status', { credentials: 'include' })),
        // a "simple" request: sent without a preflight, so the server itself must refuse it
        plain: await outcome(fetch(url + '/api/sessions/' + sessionId + '/replay', { method: 'POST', credentials: 'include', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: '{"speed":"max"}' })),
        json: await outcome(fetch(url + '/api/sessions/' + sessionId + '/replay', { method: 'POST', credentials: 'include', headers: { 'content-type': 'application/json' }, body: '{"speed":"max"}' })),
        rescan: await outcome(fetch(url + '/api/stimuli/rescan', { method: 'POST', credentials: 'include', mode: 'no-cors', body: '{}' })),
      };
    })(${JSON.stringify({ url: t.url, sessionId })})`)) as Record<string, string>;
    assert.equal(result.read, 'failed: TypeError', 'the API cannot be read');
    assert.equal(result.json, 'failed: TypeError', 'the JSON POST is blocked');
    const socket = await socketIoExchange(page, { url: t.url, event: 'session:replay', body: { sessionId, speed: 'max' } });
    assert.deepEqual(socket, { refused: 'websocket failed' });
    // the server refused each (not only the browser): counted by Origin, and no replay was started
    const after = t.app.refusedCounts.byCode;
    assert.ok((after['origin-not-allowed'] ?? 0) - (before['origin-not-allowed'] ?? 0) >= 4, JSON.stringify({ before, after }));
    assert.equal(t.app.store.all().filter((rt) => rt.kind === 'replay').length, 0);
    assert.ok(t.logs.some((l) => l.code === 'origin-not-allowed' && /socket\.io/.test(String(l.msg))));
  } finally {
    await ctx.close();
  }
});

test('a viewer signed in on the login page sees the grid; the server refuses her replay and follow-up push', async () => {
  const { ctx, page, csp } = await context();
  try {
    await page.goto(`${t.url}/#/sessions`);
    assert.equal(new URL(page.url()).pathname, '/login', 'sent to the login page');
    await page.fill('input[name="user"]', 'vera');
    await page.fill('input[name="secret"]', 'wrong-password');
    await page.click('button[type="submit"]');
    await page.waitForFunction(() => /wrong user name or password/.test(document.getElementById('error')?.textContent ?? ''));
    await page.fill('input[name="secret"]', 'vera-password-1');
    await page.click('button[type="submit"]');
    await page.waitForURL(`${t.url}/#/sessions`);
    await page.goto(`${t.url}/#/`);
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid="channel-tile"]').length === n, C, { timeout: 30_000 });
    // the replay button is there; the server answers it with forbidden, shown on the page
    await page.goto(`${t.url}/#/sessions`);
    await page.locator('[data-testid="replay-button"]').first().click();
    await page.waitForFunction(() => /session:replay needs the operator role \(signed in as vera, viewer\)/.test(document.querySelector('[role="alert"]')?.textContent ?? ''));
    // the follow-up push and replay control, sent from the viewer's own page over the socket
    const push = await socketIoExchange(page, { url: t.url, event: 'followup:request', body: { sessionId, count: 2, strategy: 'improve' } });
    assert.deepEqual(push, { ack: { error: { code: 'forbidden', message: 'followup:request needs the operator role (signed in as vera, viewer)' } } });
    const control = await socketIoExchange(page, { url: t.url, event: 'replay:control', body: { replayId: 'x', action: 'stop' } });
    assert.equal((control as { ack: { error: { code: string } } }).ack.error.code, 'forbidden');
    const post = await page.evaluate(async (sid) => (await fetch(`/api/sessions/${sid}/replay`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"speed":"max"}' })).status, sessionId);
    assert.equal(post, 403);
    assert.equal(t.app.store.all().filter((rt) => rt.kind === 'replay').length, 0);
    assert.deepEqual(await csp(), []);
  } finally {
    await ctx.close();
  }
});
