/** A rig that is not ours: examples/python_rig.py (Debian python3-socketio + python3-msgpack) against the real server. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { getJson, root, startApp, testConfig, TOKEN } from './helpers.ts';

test('the Python rig client starts a session, streams trials, asks for follow-ups and shows them', async () => {
  const base = testConfig();
  const t = await startApp({ compute: { ...base.compute, features: true, maps: { ...base.compute.maps, enabled: false } } });
  try {
    const py = spawn('/usr/bin/python3', [path.join(root, 'examples/python_rig.py'), '--url', t.url, '--token', TOKEN, '--channels', '12', '--trials', '220', '--fast', '--followups', '6'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    py.stdout.on('data', (d) => (out += d));
    py.stderr.on('data', (d) => (err += d));
    const code = await new Promise((r) => py.once('exit', r));
    assert.equal(code, 0, err);
    const sessionId = /session (\S+)/.exec(out)![1];
    assert.match(out, /6 follow-up stimuli:/, `${out}\n${err}`);
    const lines = out.split('\n').filter((l) => /^\s+\d+\. \S+ \[(probe|improve|confirm)\] /.test(l));
    assert.equal(lines.length, 6);
    assert.ok(lines.some((l) => l.includes('[probe]')) && lines.some((l) => l.includes('[improve]')));
    const stats = (await getJson(`${t.url}/api/sessions/${sessionId}/stats`)).body;
    assert.equal(stats.trialsCompleted, 220);
    assert.equal(stats.channels.length, 12);
    assert.equal(stats.state, 'ended');
    // which suggestions were given is in the session log (and so in replays)
    const { records } = t.app.recorder.load(sessionId);
    const given = records.filter((r) => r.frame.type === 'followup:suggested');
    assert.equal(given.length, 1);
  } finally {
    await t.close();
  }
});
