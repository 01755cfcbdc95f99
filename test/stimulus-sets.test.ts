/** Any stimulus set: manifests without categories, `npm run stimuli -- add`, the published schema, errors naming file/entry/field, config merged key by key. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import sharp from 'sharp';
import type { Stimulus } from '@sharedlens/shared';
import { loadConfig, mergeConfig } from '../server/src/config.ts';
import { loadStimulusSets, manifestJsonSchema, parseManifest } from '../server/src/stimulus-sets.ts';
import { addTrial, channelStats, createNeuronStats } from '../server/src/compute/neuron-stats.ts';
import { createEncoding, refit } from '../server/src/compute/encoding.ts';
import { modelReport } from '../server/src/compute/model-report.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';
import { computeStart, root, tmpDir } from './helpers.ts';

const cli = (args: string[], env: Record<string, string>) =>
  spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'server/src/stimuli-cli.ts'), ...args], { cwd: root, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 });

/** A folder of small PNGs: `files` relative paths. */
async function imageFolder(files: string[]): Promise<string> {
  const dir = tmpDir();
  for (const [i, f] of files.entries()) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    await sharp({ create: { width: 16, height: 12, channels: 3, background: { r: 20 * i, g: 100, b: 200 - 10 * i } } }).png().toFile(path.join(dir, f));
  }
  return dir;
}

test('manifests: category optional (all "all"), or given for every stimulus; errors name the file, the entry and the field', () => {
  const ok = parseManifest({ id: 'v4', stimuli: [{ id: 'a', file: 'a.png' }, { id: 'b', file: 'b.png' }] });
  assert.ok('manifest' in ok);
  assert.deepEqual(ok.manifest.stimuli.map((s) => s.category), ['all', 'all']);
  const bad = parseManifest({ id: 'v4', stimuli: [{ id: 'a', file: 'a.png', category: 'face' }, { id: 'b', file: 'b.png' }, { id: 'c', file: '/etc/x.png', category: 'face' }, { id: 'd', file: 'd.png', category: '' }] });
  assert.ok('errors' in bad);
  assert.ok(bad.errors.includes('stimuli[2] (id "c"), field file: file must be a plain relative path'), bad.errors.join('\n'));
  assert.ok(bad.errors.some((e) => e.startsWith('stimuli[3] (id "d"), field category:')), bad.errors.join('\n'));
  assert.ok(bad.errors.some((e) => /^stimuli\[1\] \(id "b"\), field category: missing while 3 of 4 stimuli have one/.test(e)), bad.errors.join('\n'));
  const dir = tmpDir();
  fs.mkdirSync(path.join(dir, 'v4'));
  fs.writeFileSync(path.join(dir, 'v4/manifest.json'), JSON.stringify({ id: 'v4', stimuli: [{ id: 'a', file: 'a.png', category: 7 }] }));
  const { problems } = loadStimulusSets(dir);
  assert.equal(problems.length, 1);
  assert.match(problems[0], /v4\/manifest\.json: stimuli\[0\] \(id "a"\), field category: Invalid input: expected string, received number/);
});

test('the published JSON schema of the manifest is the one generated from the zod schema', () => {
  const text = fs.readFileSync(path.join(root, 'docs/stimulus-manifest.schema.json'), 'utf8');
  assert.deepEqual(JSON.parse(text), manifestJsonSchema(), 'regenerate with: npm run -s stimuli -- schema > docs/stimulus-manifest.schema.json');
  const items = (JSON.parse(text) as { properties: { stimuli: { items: { required: string[]; properties: { category: { default: string } } } } } }).properties.stimuli.items;
  assert.deepEqual(items.required, ['id', 'file'], 'category is optional');
  assert.equal(items.properties.category.default, 'all');
});

test('stimuli add: subfolders as categories, a CSV, or none; every image must decode; the set is registered and loads', async () => {
  const stimulusDir = tmpDir();
  const env = { STIMULUS_DIR: stimulusDir };
  const src = await imageFolder(['body/b1.png', 'body/b2.png', 'object/Cup 1.png', 'object/o2.png']);
  let r = cli(['add', src, '--id', 'lab', '--categories', 'subfolders'], env);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /stimulus set "lab": 4 images, categories body, object; registered in/);
  const lab = loadStimulusSets(stimulusDir).sets.get('lab')!;
  assert.deepEqual(lab.manifest.stimuli.map((s) => [s.id, s.category]), [['body-b1', 'body'], ['body-b2', 'body'], ['object-cup-1', 'object'], ['object-o2', 'object']]);
  assert.ok(fs.existsSync(path.join(stimulusDir, 'lab/object/Cup 1.png')));
  r = cli(['add', src, '--id', 'lab'], env);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /already registered/);

  const flat = await imageFolder(['x.png', 'y.png', 'z.png']);
  const csv = path.join(tmpDir(), 'cats.csv');
  fs.writeFileSync(csv, 'file,category\nx.png,face\n"y.png","face"\nz.png,object\n');
  r = cli(['add', flat, '--categories', 'csv', csv, '--id', 'fromcsv'], env);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(loadStimulusSets(stimulusDir).sets.get('fromcsv')!.manifest.stimuli.map((s) => s.category), ['face', 'face', 'object']);
  r = cli(['add', flat, '--id', 'plain'], env);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /no categories/);
  assert.deepEqual([...new Set(loadStimulusSets(stimulusDir).sets.get('plain')!.manifest.stimuli.map((s) => s.category))], ['all']);

  fs.writeFileSync(path.join(flat, 'broken.png'), 'not an image');
  r = cli(['add', flat, '--id', 'broken'], env);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /1 of 4 images do not decode:\n\s+broken\.png: /);
  assert.equal(loadStimulusSets(stimulusDir).sets.has('broken'), false, 'nothing registered');
  fs.writeFileSync(csv, 'file,category\nx.png,face\n');
  r = cli(['add', flat, '--categories', 'csv', csv], env);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /gives no category for broken\.png, y\.png, z\.png/);
  r = cli(['add', src, '--categories', 'subfolders', '--id', 'x', 'extra'], env);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /usage: npm run stimuli -- add FOLDER/);
});

test('a set with one category: models and scores work; selectivity, generalisation and drivers say why they are absent', () => {
  const S = 20;
  const D = 8;
  const stimuli: Stimulus[] = Array.from({ length: S }, (_, i) => ({ id: `s${i}`, file: 'x.png', category: 'all' }));
  const rand = mulberry32(9);
  const features = Float32Array.from({ length: S * D }, () => rand());
  const w = Float64Array.from({ length: D }, () => rand() * 4 - 2);
  const stats = createNeuronStats(computeStart(1), stimuli, null);
  for (let r = 0; r < 6; r++)
    for (let s = 0; s < S; s++) {
      const drive = w.reduce((a, wd, d) => a + wd * features[s * D + d], 0);
      addTrial(stats, { kind: 'completed', trial: 0, stimulusId: `s${s}`, onsetMs: 0, seq: 0, responses: Float64Array.of(3 * drive + (rand() - 0.5)) });
    }
  const cfg = { alphas: [0.01, 0.1, 1, 10], refitEveryTrials: 5, minStimuli: 6 };
  const enc = refit(createEncoding({ features, dim: D, modelId: 't', backend: 'cpu' }, S), stats, cfg);
  const rule = { ...loadConfig(root, {}).compute.drivers, minReliability: 0.1 };
  const ch = modelReport('s', stats, enc, channelStats(stats), cfg, rule).channels[0];
  assert.ok(ch.scores!.looR! > 0.8 && ch.scores!.normalisedR! > 0.8 && ch.scores!.fev! > 0.6, JSON.stringify(ch.scores));
  assert.equal(ch.scores!.generalisationR, null);
  assert.match(ch.scores!.generalisationReason!, /one category/);
  assert.deepEqual(ch.drivers, []);
  assert.match(ch.driversReason!, /one category/);
  assert.match(channelStats(stats)[0].selectivityReason!, /one category/);
});

test('config files merge into the defaults key by key; lists and rig tokens replace', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'lab.json');
  fs.writeFileSync(file, JSON.stringify({ compute: { drivers: { q: 0.1 }, maps: { intervalMs: 500 } }, rigTokens: { 'lab-rig-token-1': 'left' }, allowedHosts: ['rig.lab'] }));
  const c = loadConfig(root, { SHAREDLENS_CONFIG: file });
  const d = loadConfig(root, {});
  assert.equal(c.compute.drivers.q, 0.1);
  assert.equal(c.compute.drivers.selectivityAlpha, d.compute.drivers.selectivityAlpha, 'sibling keys keep their defaults');
  assert.equal(c.compute.maps.intervalMs, 500);
  assert.equal(c.compute.maps.smoothSigmaPx, d.compute.maps.smoothSigmaPx);
  assert.deepEqual(c.compute.alphas, d.compute.alphas);
  assert.deepEqual(c.rigTokens, { 'lab-rig-token-1': 'left' }, 'the demo token does not stay valid beside the lab\'s');
  assert.deepEqual(c.allowedHosts, ['rig.lab']);
  assert.deepEqual(mergeConfig({ a: { b: 1, c: [1, 2] }, d: 1 }, { a: { c: [3] }, e: 2 }), { a: { b: 1, c: [3] }, d: 1, e: 2 });
  fs.writeFileSync(file, JSON.stringify({ compute: { drivers: { q: 2 } } }));
  assert.throws(() => loadConfig(root, { SHAREDLENS_CONFIG: file }), /compute\.drivers\.q/);
});
