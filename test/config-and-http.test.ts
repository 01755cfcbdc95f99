/** Configuration validation, the HTTP API, and path tricks. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { ConfigError, loadConfig } from '../server/src/config.ts';
import { loadStimulusSets } from '../server/src/stimulus-sets.ts';
import { Recorder } from '../server/src/sinks/recorder.ts';
import { apiFetch, getJson, root, startApp, tmpDir, type TestApp } from './helpers.ts';

test('config: environment overrides are applied and validated', () => {
  const warnings: string[] = [];
  const c = loadConfig(root, { HOST: '0.0.0.0', PORT: '9001', DEMO: '0', RIG_TOKENS: 'aaaaaaaa,bbbbbbbb', FSYNC: 'always' }, (w) => warnings.push(w));
  assert.equal(c.host, '0.0.0.0');
  assert.equal(c.port, 9001);
  assert.equal(c.demo, false);
  assert.deepEqual(c.rigTokens, { aaaaaaaa: 'rig1', bbbbbbbb: 'rig2' });
  assert.match(warnings.join('\n'), /rigTokens is a list \(the old form\)/);
  assert.deepEqual(loadConfig(root, { RIG_TOKENS: 'aaaaaaaa=left rig,bbbbbbbb=right rig' }).rigTokens, { aaaaaaaa: 'left rig', bbbbbbbb: 'right rig' });
  assert.equal(c.recording.fsync, 'always');
  assert.throws(() => loadConfig(root, { PORT: 'eighty' }), (e: Error) => e instanceof ConfigError && /PORT="eighty" is not an integer/.test(e.message));
  assert.throws(() => loadConfig(root, { PORT: '70000' }), /port: .*65535/);
  assert.throws(() => loadConfig(root, { RIG_TOKENS: 'short' }), /rigTokens: rig token #1 \(rig "rig1"\) must be at least 8 characters/);
  assert.throws(() => loadConfig(root, { FSYNC: 'sometimes' }), /recording.fsync/);
  assert.throws(() => loadConfig(root, { DEMO: 'maybe' }), /DEMO="maybe" is not a boolean/);
});

test('config: the server refuses to start on an invalid configuration, saying why', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'server/src/main.ts')], {
    cwd: root,
    env: { ...process.env, PORT: 'x', DEMO: '0' },
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /sharedlens: environment PORT="x" is not an integer/);
});

test('stimulus manifests: path tricks and missing files are refused with the reason', () => {
  const dir = tmpDir();
  fs.mkdirSync(path.join(dir, 'evil'));
  fs.writeFileSync(path.join(dir, 'evil/manifest.json'), JSON.stringify({ id: 'evil', stimuli: [{ id: 'a', file: '../../etc/passwd', category: 'x' }] }));
  fs.mkdirSync(path.join(dir, 'gone'));
  fs.writeFileSync(path.join(dir, 'gone/manifest.json'), JSON.stringify({ id: 'gone', stimuli: [{ id: 'a', file: 'a.png', category: 'x' }] }));
  fs.mkdirSync(path.join(dir, 'broken'));
  fs.writeFileSync(path.join(dir, 'broken/manifest.json'), '{ not json');
  const { sets, problems } = loadStimulusSets(dir);
  assert.equal(sets.size, 0);
  assert.equal(problems.length, 3);
  assert.ok(problems.some((p) => /file must be a plain relative path/.test(p)));
  assert.ok(problems.some((p) => /missing image files a.png/.test(p)));
  assert.ok(problems.some((p) => /broken.*JSON/.test(p)));
});

test('the demo stimulus set ships with bodies (human and animal), faces and objects', () => {
  const demo = loadStimulusSets(path.join(root, 'stimuli')).sets.get('demo')!;
  const cats = new Set(demo.manifest.stimuli.map((s) => s.category));
  assert.deepEqual([...cats].sort(), ['body', 'face', 'object']);
  const bodies = demo.manifest.stimuli.filter((s) => s.category === 'body');
  assert.ok(bodies.some((s) => s.tags?.includes('human')) && bodies.some((s) => s.tags?.includes('animal')));
});

test('session ids are never paths', () => {
  for (const bad of ['..', '../x', 'a/b', '', 'a\\b', '.hidden', 'x'.repeat(101)]) assert.equal(Recorder.isSessionId(bad), false, bad);
  assert.equal(Recorder.isSessionId('20261126-100455-simrig-1wewas'), true);
});

let t: TestApp;
before(async () => {
  t = await startApp();
});
after(async () => t.close());

test('GET /api/health and /api/sessions', async () => {
  const h = await getJson(`${t.url}/api/health`);
  assert.equal(h.status, 200);
  assert.equal(h.body.status, 'ok');
  const s = await getJson(`${t.url}/api/sessions`);
  assert.ok(Array.isArray(s.body));
});

test('HTTP path tricks and unknown ids get JSON 404s', async () => {
  for (const p of ['/api/sessions/..%2F..%2Fetc%2Fpasswd/stats', '/api/sessions/%2e%2e/stats', '/api/sessions/nope', '/api/stimuli/demo/..%2Fmanifest.json/image', '/api/stimuli/..%2F..%2Fconfig/x/image', '/api/nothing-here']) {
    const r = await getJson(`${t.url}${p}`);
    assert.equal(r.status, 404, p);
    assert.ok(r.body.error?.message, p);
  }
  const img = await apiFetch(`${t.url}/api/stimuli/demo/face-human-baby/image`);
  assert.equal(img.status, 200);
  assert.equal(img.headers.get('content-type'), 'image/png');
});

test('a malformed JSON body gets a 400 with the reason', async () => {
  const r = await apiFetch(`${t.url}/api/sessions/x/replay`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"speed":' });
  assert.equal(r.status, 400);
  const body = await r.json();
  assert.ok(body.error.message);
  const r2 = await apiFetch(`${t.url}/api/sessions/nope/replay`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"speed": -3}' });
  assert.equal(r2.status, 400);
  assert.match(JSON.stringify(await r2.json()), /speed/);
});

test('config: a configured feature model must exist; the features CLI names an unknown set', () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, 'over.json'), JSON.stringify({ compute: { ...loadConfig(root, {}).compute, model: { id: 'x', dir, layer: 'a', inputSize: 224 } } }));
  assert.throws(() => loadConfig(root, { SHAREDLENS_CONFIG: path.join(dir, 'over.json') }), /compute.model.dir: no model.json/);
  // cluster holds: beats slower than half the hold would stop recordings in normal operation (the fence)
  fs.writeFileSync(path.join(dir, 'beats.json'), JSON.stringify({ cluster: { heartbeatMs: 5000, ttlS: 5 } }));
  assert.throws(() => loadConfig(root, { SHAREDLENS_CONFIG: path.join(dir, 'beats.json') }), /cluster.heartbeatMs: must be at most half of cluster.ttlS/);
  fs.writeFileSync(path.join(dir, 'beats.json'), JSON.stringify({ cluster: { heartbeatMs: 200, ttlS: 3 } }));
  assert.equal(loadConfig(root, { SHAREDLENS_CONFIG: path.join(dir, 'beats.json') }).cluster.heartbeatMs, 200);
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'server/src/features-cli.ts'), '--set', 'nope'], { cwd: root, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown stimulus set "nope"/);
});

test('extra stimulus sets are registered by adding a folder and rescanning; bad manifests are reported', async () => {
  const dir = tmpDir();
  fs.cpSync(path.join(root, 'stimuli', 'demo'), path.join(dir, 'demo'), { recursive: true });
  const t2 = await startApp({ stimulusDir: dir });
  try {
    fs.mkdirSync(path.join(dir, 'extra'));
    fs.copyFileSync(path.join(root, 'stimuli/demo/images/monkey.png'), path.join(dir, 'extra', 'm.png'));
    fs.writeFileSync(path.join(dir, 'extra', 'manifest.json'), JSON.stringify({ id: 'extra', stimuli: [{ id: 'extra-monkey', file: 'm.png', category: 'body' }] }));
    fs.mkdirSync(path.join(dir, 'broken'));
    fs.writeFileSync(path.join(dir, 'broken', 'manifest.json'), JSON.stringify({ id: 'broken', stimuli: [{ id: 'x', file: '../../etc/passwd', category: 'y' }] }));
    const res = await apiFetch(`${t2.url}/api/stimuli/rescan`, { method: 'POST', json: {} });
    const body = await res.json();
    assert.deepEqual(body.added, ['extra']);
    assert.ok(body.problems.some((p: string) => /plain relative path/.test(p)));
    const list = (await getJson(`${t2.url}/api/stimuli`)).body;
    assert.deepEqual(list.map((s: { id: string }) => s.id).sort(), ['demo', 'extra']);
    assert.equal((await apiFetch(`${t2.url}/api/stimuli/extra/extra-monkey/image`)).status, 200);
  } finally {
    await t2.close();
  }
});
