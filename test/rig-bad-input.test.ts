/** Every kind of bad rig input: an acknowledged error naming the problem, a counted log line, no crash, no change to the statistics. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'socket.io-client';
import { io } from 'socket.io-client';
import { encodePayload } from '@sharedlens/shared';
import { demoStimuli, getJson, rawRig, send, sessionStart, startApp, testConfig, TOKEN, until, type TestApp } from './helpers.ts';

let t: TestApp;
let s: Socket;
let sessionId: string;
let seq = 0;
const C = 4;
const stimA = demoStimuli[0].id;

before(async () => {
  t = await startApp({ limits: { ...testConfig().limits, maxPayloadBytes: 64 * 1024, eventsPerSec: 2000, burstEvents: 4000 } });
  s = await rawRig(t.url);
  const ack = await send(s, 'session:start', sessionStart(C));
  sessionId = ack.data.sessionId;
  // one good trial so there are statistics that must not change
  await ok('stim:onset', { trial: 0, stimulusId: stimA, tMs: 100 });
  await ok('counts:binned', { startMs: 0, binWidthMs: 1, counts: new Uint16Array(300 * C).fill(1) });
  await ok('stim:offset', { trial: 0, stimulusId: stimA, tMs: 250 });
  await until(() => t.app.store.get(sessionId)?.latest?.trialsCompleted === 1, 'first trial');
});
after(async () => {
  s.close();
  await t.close();
});

async function ok(event: string, body: Record<string, unknown>) {
  const ack = await send(s, event, { sessionId, seq: ++seq, ...body });
  assert.ok('data' in ack, `${event} rejected: ${JSON.stringify(ack)}`);
  return ack;
}

/** Sends a bad event and checks: error code, message, counted log line, statistics unchanged, server alive. */
async function rejects(event: string, payload: unknown, code: string, message: RegExp, opts: { raw?: boolean; socket?: Socket } = {}) {
  const rt = t.app.store.get(sessionId)!;
  const before = JSON.stringify(t.app.store.snapshot(rt, true)!.channels) + JSON.stringify(t.app.store.snapshot(rt, true)!.stimuli);
  const countBefore = t.app.rejectedCounts.byCode[code] ?? 0;
  const ack = await send(opts.socket ?? s, event, payload, opts.raw);
  assert.ok('error' in ack, `expected an error for ${event}, got ${JSON.stringify(ack)}`);
  assert.equal(ack.error.code, code, JSON.stringify(ack.error));
  assert.match(ack.error.message + ' ' + (ack.error.details ?? []).join(' '), message);
  assert.equal(t.app.rejectedCounts.byCode[code], countBefore + 1, 'counted');
  const line = t.logs.findLast((l) => l.code === code);
  assert.ok(line && line.count === countBefore + 1 && /rejected rig input/.test(String(line.msg)), 'a counted log line');
  const after = JSON.stringify(t.app.store.snapshot(rt, true)!.channels) + JSON.stringify(t.app.store.snapshot(rt, true)!.stimuli);
  assert.equal(after, before, 'statistics unchanged');
  assert.equal((await getJson(`${t.url}/api/health`)).body.status, 'ok');
  return ack;
}

test('malformed msgpack bytes', async () => {
  await rejects('stim:onset', Buffer.from([0xc1, 0xff, 0x00]), 'malformed', /not valid msgpack/, { raw: true });
});

test('a payload that is neither msgpack bytes nor JSON text', async () => {
  await rejects('stim:onset', { sessionId, seq: 99, trial: 1 }, 'malformed', /msgpack-encoded binary/, { raw: true });
  await rejects('stim:onset', 12, 'malformed', /msgpack-encoded binary/, { raw: true });
});

test('malformed JSON text', async () => {
  await rejects('stim:onset', '{"sessionId": ', 'malformed', /not valid JSON/, { raw: true });
});

test('JSON text payloads are accepted like msgpack ones', async () => {
  const ack = await send(s, 'stim:onset', JSON.stringify({ sessionId, seq: ++seq, trial: 77, stimulusId: stimA, tMs: 5000 }), true);
  assert.deepEqual(ack, { data: { seq, duplicate: false } });
  await ok('trial:abort', { trial: 77, reason: 'fixation break' });
});

test('wrong types are listed field by field', async () => {
  const ack = await rejects('stim:onset', { sessionId, seq: ++seq, trial: 'one', stimulusId: 7, tMs: 1 }, 'invalid', /trial: .*stimulusId: /);
  assert.equal(ack.error.details.length, 2);
});

test('NaN and infinite timestamps', async () => {
  await rejects('stim:onset', { sessionId, seq: ++seq, trial: 1, stimulusId: stimA, tMs: NaN }, 'invalid', /tMs: .*NaN/);
  await rejects('stim:onset', { sessionId, seq: ++seq, trial: 1, stimulusId: stimA, tMs: Infinity }, 'invalid', /tMs/);
});

test('unknown stimulus id', async () => {
  await rejects('stim:onset', { sessionId, seq: ++seq, trial: 1, stimulusId: 'no-such-image', tMs: 400 }, 'unknown-stimulus', /no-such-image/);
});

test('unknown channel ids', async () => {
  await rejects('counts:binned', { sessionId, seq: ++seq, startMs: 300, binWidthMs: 1, channelIds: ['c0', 'c1', 'c2', 'zz9'], counts: new Uint16Array(C) }, 'unknown-channel', /zz9/);
});

test('counts of the wrong length', async () => {
  await rejects('counts:binned', { sessionId, seq: ++seq, startMs: 300, binWidthMs: 1, counts: new Uint16Array(C * 2 + 1) }, 'wrong-size', /not a whole number of bins of 4 channels/);
  await rejects('counts:binned', { sessionId, seq: ++seq, startMs: 300, binWidthMs: 1, counts: new Uint8Array(7) }, 'invalid', /even byte length/);
});

test('negative counts', async () => {
  await rejects('counts:binned', { sessionId, seq: ++seq, startMs: 300, binWidthMs: 1, counts: [1, -1, 0, 2] }, 'invalid', /counts\[1\] = -1/);
});

test('a bin width other than the session timing', async () => {
  await rejects('counts:binned', { sessionId, seq: ++seq, startMs: 300, binWidthMs: 2, counts: new Uint16Array(C) }, 'wrong-size', /binWidthMs 2/);
});

test('bins that go back in time', async () => {
  await rejects('counts:binned', { sessionId, seq: ++seq, startMs: 100, binWidthMs: 1, counts: new Uint16Array(C) }, 'bad-sequence', /before the end of the previous bins/);
});

test('an offset without an onset, and an abort after the offset', async () => {
  await rejects('stim:offset', { sessionId, seq: ++seq, trial: 42, stimulusId: stimA, tMs: 500 }, 'bad-trial-state', /without an open onset/);
  await rejects('trial:abort', { sessionId, seq: ++seq, trial: 0 }, 'bad-trial-state', /not open/);
});

test('a reused trial number', async () => {
  await rejects('stim:onset', { sessionId, seq: ++seq, trial: 0, stimulusId: stimA, tMs: 600 }, 'bad-trial-state', /already had an onset/);
});

test('counts:trial on a binned session', async () => {
  await rejects('counts:trial', { sessionId, seq: ++seq, trial: 0, responseCounts: [1, 2, 3, 4] }, 'invalid', /countsMode "binned"/);
});

test('an oversized payload gets an error, not a dropped connection', async () => {
  await rejects('counts:binned', { sessionId, seq: ++seq, startMs: 300, binWidthMs: 1, counts: new Uint16Array(9_000 * C) }, 'too-large', /exceeds maxPayloadBytes/);
  assert.ok(s.connected);
});

test('an unknown session id', async () => {
  await rejects('stim:onset', { sessionId: 'nope', seq: 1, trial: 1, stimulusId: stimA, tMs: 1 }, 'unknown-session', /unknown session "nope"/);
});

test('an unknown event name', async () => {
  await rejects('stim:explode', { sessionId }, 'invalid', /unknown event "stim:explode"/);
});

test('an event without an acknowledgement callback gets rig:error', async () => {
  const got = new Promise<any>((resolve) => s.once('rig:error', resolve));
  s.emit('stim:onset', encodePayload({ sessionId, seq: ++seq, trial: 9, stimulusId: stimA, tMs: 900 }));
  const e = await got;
  assert.equal(e.error.code, 'invalid');
  assert.match(e.error.message, /acknowledgement callback/);
});

test('an unknown stimulus set or preferred category at session:start', async () => {
  const a = await send(s, 'session:start', sessionStart(2, { stimulusSetId: 'nope' }));
  assert.equal(a.error.code, 'unknown-stimulus');
  const b = await send(s, 'session:start', sessionStart(2, { preferredCategory: 'cars' }));
  assert.equal(b.error.code, 'invalid');
  const c = await send(s, 'session:start', { ...sessionStart(2), channels: [{ id: 'x', label: 'a' }, { id: 'x', label: 'b' }] });
  assert.match(c.error.details.join(), /channel ids must be unique/);
});

test('a wrong rig token is refused at connection with the reason', async () => {
  const bad = io(`${t.url}/rig`, { auth: { token: 'wrong-token' }, transports: ['websocket'], reconnection: false, forceNew: true });
  const err = await new Promise<Error>((resolve) => bad.once('connect_error', resolve));
  assert.match(err.message, /unauthorized/);
  bad.close();
});

test('a flood is rate-limited with an acknowledged error, and the server keeps serving', async () => {
  const t2 = await startApp({ limits: { ...testConfig().limits, maxPayloadBytes: 65536, eventsPerSec: 10, burstEvents: 20 } });
  try {
    const f = await rawRig(t2.url);
    const acks = await Promise.all(Array.from({ length: 60 }, () => send(f, 'session:resume', { sessionId: 'x' })));
    const limited = acks.filter((a) => a.error?.code === 'rate-limited');
    assert.ok(limited.length >= 35, `${limited.length} of 60 limited`);
    assert.match(limited[0].error.message, /more than 10 events\/s/);
    assert.ok(t2.logs.some((l) => l.code === 'rate-limited' && Number(l.count) >= 35));
    assert.equal((await getJson(`${t2.url}/api/health`)).body.status, 'ok');
    f.close();
  } finally {
    await t2.close();
  }
});

test('events after session:end are refused; the statistics of the session are kept', async () => {
  const other = await rawRig(t.url);
  const id = (await send(other, 'session:start', sessionStart(2))).data.sessionId;
  assert.ok('data' in (await send(other, 'session:end', { sessionId: id, seq: 1 })));
  const a = await send(other, 'stim:onset', { sessionId: id, seq: 2, trial: 0, stimulusId: stimA, tMs: 1 });
  assert.equal(a.error.code, 'session-ended');
  other.close();
});

test('the rejected counts appear per session in the status endpoint', async () => {
  const { body } = await getJson(`${t.url}/api/status`);
  const mine = body.sessions.find((x: any) => x.sessionId === sessionId);
  assert.ok(mine.rejected['invalid'] >= 3);
  assert.ok(body.rejected.total >= 15);
  assert.equal(mine.trialsCompleted, 1);
});
