/**
 * NWB export and import, checked with pynwb 2.3.1 (NWB 2.6 schema) as the independent reader and
 * validator, and numpy as the reference for the statistics of an imported file.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { SessionSnapshot } from '@sharedlens/shared';
import { runSimRig } from '../server/src/sim/sim-rig.ts';
import { Recorder } from '../server/src/sinks/recorder.ts';
import { loadStimulusSets } from '../server/src/stimulus-sets.ts';
import { exportRecorded, recordedFrames } from '../server/src/nwb/export-recorded.ts';
import { importNwb } from '../server/src/nwb/import-session.ts';
import { statisticsOf } from '../server/src/nwb/session-analysis.ts';
import { NwbLayoutError } from '../server/src/nwb/read-nwb.ts';
import { apiFetch, demoStimuli, root, startApp, tmpDir, TOKEN, until, type TestApp } from './helpers.ts';
import { python, recordBinnedWithGap, recordTrialModeSession, validateNwb } from './nwb-support.ts';

const sets = loadStimulusSets(path.join(root, 'stimuli')).sets;
const pipeline = { psthBinMs: 10 };
const out = tmpDir('sharedlens-nwb-');
let t: TestApp;
let demoId: string;
let trialId: string;

const stats = async (recorder: Recorder, id: string): Promise<SessionSnapshot> => {
  const meta = recorder.meta(id)!;
  const snap = await statisticsOf(recordedFrames(recorder, id), pipeline, { sessionId: 'x', startedAt: meta.startedAt, state: 'ended' });
  assert.ok(snap, `session ${id} has statistics`);
  return snap;
};
const exportOf = (id: string, file: string) => exportRecorded({ recorder: t.app.recorder, sessionId: id, file, sets, pipeline, about: { lab: 'Test lab', institution: 'Test institute', experimenter: ['Doe, Jane'] } });

before(async () => {
  t = await startApp();
  // the demo: the simulated rig over the demo set (three categories), with aborted trials
  const sim = await runSimRig({ url: t.url, token: TOKEN, stimuli: demoStimuli, stimulusSetId: 'demo', channels: 12, trials: 90, onMs: 200, offMs: 200, abortRate: 0.1, seed: 4, reconnectAfterTrials: 0, fast: true });
  demoId = sim.sessionId;
  await until(() => t.app.recorder.meta(demoId)?.state === 'ended', 'the demo session to end');
  sim.client.close();
  trialId = recordTrialModeSession(t.app.recorder, demoStimuli, { sessionId: 'trial-mode-1', channels: 6, trials: 80, seed: 9 });
});
after(async () => {
  await t.close();
  fs.rmSync(out, { recursive: true, force: true });
});

const READ_BACK = `
import sys, json, hashlib, numpy as np
from pynwb import NWBHDF5IO
io = NWBHDF5IO(sys.argv[1], 'r'); f = io.read()
nan = lambda a: [None if (isinstance(x, float) and np.isnan(x)) else x for x in np.asarray(a).tolist()]
tr = f.trials
res = {'identifier': f.identifier, 'lab': f.lab, 'experimenter': list(f.experimenter), 'subject': f.subject.subject_id,
  'start': f.session_start_time.isoformat(),
  'trials': {'start': tr['start_time'][:].tolist(), 'stimulus_id': list(tr['stimulus_id'][:]), 'category': list(tr['category'][:]),
             'aborted': [int(x) for x in tr['aborted'][:]], 'abort_reason': list(tr['abort_reason'][:]), 'trial': [int(x) for x in tr['trial'][:]]}}
ec = f.processing['ecephys']
ch = ec['channels']
res['channels'] = {'id': list(ch['channel_id'][:]), 'label': list(ch['label'][:]), 'area': list(ch['area'][:])}
if 'binned_counts' in ec.data_interfaces:
  ts = ec['binned_counts']
  d = np.asarray(ts.data[:], dtype='<u2')
  res['binned'] = {'sha256': hashlib.sha256(d.tobytes()).hexdigest(), 'shape': list(d.shape), 'rate': ts.rate, 'start': ts.starting_time, 'unit': ts.unit}
if 'trial_counts' in ec.data_interfaces:
  tc = ec['trial_counts']
  res['trial_counts'] = {'trial': [int(x) for x in tc['trial'][:]], 'response': np.asarray(tc['response_counts'][:]).tolist(), 'baseline': nan(np.asarray(tc['baseline_counts'][:]).ravel())}
if 'presentations' in f.stimulus:
  p = f.stimulus['presentations']
  order = [im.name for im in p.indexed_images.order_of_images]
  res['presentations'] = {'ids': [order[i] for i in p.data[:]], 'times': p.timestamps[:].tolist(), 'images': len(order)}
sl = f.processing['sharedlens']
cs = sl['channel_statistics']
res['stats'] = {k: nan(cs[k][:]) for k in ['selectivity_index', 'd_prime', 'split_half_r', 'noise_ceiling', 'n_trials', 'model_loo_r']}
res['stats']['preferred'] = list(cs['preferred_category'][:])
ss = sl['stimulus_statistics']
res['stimulus_mean'] = nan(np.asarray(ss['mean'][:]).ravel())
res['stimulus_ids'] = list(ss['stimulus_id'][:])
print(json.dumps(res))
`;

describe('NWB export', () => {
  it('the demo session and a trial-mode session with aborts pass pynwb.validate with no errors', async () => {
    for (const id of [demoId, trialId]) {
      const file = path.join(out, `${id}.nwb`);
      const r = await exportOf(id, file);
      assert.ok(r.bytes > 0 && fs.existsSync(file) && !fs.existsSync(`${file}.part`));
      assert.deepEqual(await validateNwb(file), [], `pynwb.validate of ${id}`);
    }
  });

  it('values read back with pynwb equal the session: counts, times, stimulus ids, aborts, statistics', async () => {
    const file = path.join(out, `${demoId}.nwb`);
    const back = await python(READ_BACK, [file]);
    const frames = [...recordedFrames(t.app.recorder, demoId)];
    const start = frames[0];
    assert.equal(start.type, 'session:start');
    if (start.type !== 'session:start') return;
    assert.equal(back.identifier, demoId);
    assert.equal(back.lab, 'Test lab');
    assert.deepEqual(back.experimenter, ['Doe, Jane']);
    assert.equal(back.subject, start.start.subject);
    assert.equal(new Date(back.start).getTime(), new Date(start.startedAt).getTime());
    assert.deepEqual(back.channels.id, start.start.channels.map((c) => c.id));
    assert.deepEqual(back.channels.area, start.start.channels.map((c) => c.area ?? ''));
    // every count of every bin, in order
    const hash = crypto.createHash('sha256');
    let bins = 0;
    let firstStart = NaN;
    for (const f of frames) {
      if (f.type !== 'counts:binned') continue;
      if (!bins) firstStart = f.startMs;
      bins += f.nBins;
      hash.update(Buffer.from(f.counts.buffer, f.counts.byteOffset, f.counts.byteLength));
    }
    assert.deepEqual(back.binned.shape, [bins, start.start.channels.length]);
    assert.equal(back.binned.sha256, hash.digest('hex'));
    assert.equal(back.binned.rate, 1000 / start.start.timing.binWidthMs);
    assert.equal(back.binned.unit, 'spikes');
    // trials: onset times relative to the first bin, stimulus ids, aborts
    const onsets = frames.filter((f) => f.type === 'stim:onset');
    const aborted = new Set(frames.filter((f) => f.type === 'trial:abort').map((f) => f.trial));
    assert.ok(aborted.size > 0, 'the demo session has aborted trials');
    assert.deepEqual(back.trials.stimulus_id, onsets.map((f) => f.stimulusId));
    assert.deepEqual(back.trials.trial, onsets.map((f) => f.trial));
    assert.deepEqual(back.trials.aborted, onsets.map((f) => (aborted.has(f.trial) ? 1 : 0)));
    const zero = Math.min(firstStart, ...onsets.map((f) => f.tMs));
    back.trials.start.forEach((s: number, i: number) => assert.ok(Math.abs(s - (onsets[i].tMs - zero) / 1000) < 1e-9));
    assert.equal(back.binned.start, (firstStart - zero) / 1000);
    assert.deepEqual(back.presentations.ids, onsets.map((f) => f.stimulusId));
    assert.equal(back.presentations.images, demoStimuli.length);
    const catOf = new Map(demoStimuli.map((s) => [s.id, s.category]));
    assert.deepEqual(back.trials.category, onsets.map((f) => catOf.get(f.stimulusId)));
    // statistics as the pipeline computes them
    const snap = await stats(t.app.recorder, demoId);
    assert.deepEqual(back.stats.selectivity_index, snap.channels.map((c) => c.selectivityIndex));
    assert.deepEqual(back.stats.d_prime, snap.channels.map((c) => c.dPrime));
    assert.deepEqual(back.stats.noise_ceiling, snap.channels.map((c) => c.noiseCeiling));
    assert.deepEqual(back.stats.n_trials, snap.channels.map((c) => c.nTrials));
    assert.deepEqual(back.stats.preferred, snap.channels.map((c) => c.preferredCategory ?? ''));
    assert.deepEqual(back.stimulus_ids, snap.stimuli!.map((s) => s.id));
    assert.deepEqual(back.stimulus_mean, snap.stimuli!.flatMap((s) => s.mean));
  });

  it('trial-mode counts read back with pynwb equal the counts:trial frames, baseline NaN where none was sent', async () => {
    const back = await python(READ_BACK, [path.join(out, `${trialId}.nwb`)]);
    const counts = [...recordedFrames(t.app.recorder, trialId)].filter((f) => f.type === 'counts:trial');
    assert.deepEqual(back.trial_counts.trial, counts.map((f) => f.trial));
    assert.deepEqual(back.trial_counts.response, counts.map((f) => Array.from(f.responseCounts)));
    assert.deepEqual(back.trial_counts.baseline, counts.flatMap((f) => (f.baselineCounts ? Array.from(f.baselineCounts) : new Array(6).fill(null))));
    assert.ok(back.trials.aborted.includes(1) && back.trials.abort_reason.includes('fixation break'));
    assert.equal(back.binned, undefined);
  });

  it('GET /api/sessions/:id/export.nwb sends a valid file; an unknown session is a 404', async () => {
    const res = await apiFetch(`${t.url}/api/sessions/${trialId}/export.nwb`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-disposition') ?? '', /trial-mode-1\.nwb/);
    const file = path.join(out, 'http.nwb');
    fs.writeFileSync(file, Buffer.from(await res.arrayBuffer()));
    assert.deepEqual(await validateNwb(file), []);
    const missing = await apiFetch(`${t.url}/api/sessions/no-such-session/export.nwb`);
    assert.equal(missing.status, 404);
    const anonymous = await fetch(`${t.url}/api/sessions/${trialId}/export.nwb`);
    assert.equal(anonymous.status, 401);
  });
});

describe('NWB import', () => {
  it('a round trip (export, import, replay) reproduces the statistics exactly, binned and trial mode', async () => {
    const data = tmpDir('sharedlens-nwb-import-');
    const recorder = new Recorder({ dataDir: data, fsync: 'never', fsyncIntervalMs: 1000 });
    try {
      for (const id of [demoId, trialId]) {
        const r = await importNwb({ file: path.join(out, `${id}.nwb`), recorder, stimulusDir: path.join(root, 'stimuli'), blockRows: 333 });
        assert.equal(r.setCreated, false, 'the demo set is registered: its images are not written again');
        assert.equal(r.stimulusSetId, 'demo');
        const [a, b] = [await stats(t.app.recorder, id), await stats(recorder, r.sessionId)];
        assert.ok(a.trialsCompleted > 20 && a.trialsAborted > 0);
        assert.deepEqual(b, a);
      }
    } finally {
      recorder.close();
      fs.rmSync(data, { recursive: true, force: true });
    }
  });

  it('bins with a gap are exported with timestamps, validate, and round-trip to the same statistics', async () => {
    const id = recordBinnedWithGap(t.app.recorder, demoStimuli, 'gap-1');
    const file = path.join(out, 'gap.nwb');
    await exportOf(id, file);
    assert.deepEqual(await validateNwb(file), []);
    const back = await python("import sys, json\nfrom pynwb import NWBHDF5IO\nts = NWBHDF5IO(sys.argv[1], 'r').read().processing['ecephys']['binned_counts']\nt = ts.timestamps[:]\nprint(json.dumps({'n': len(t), 'gap': float(max(t[1:] - t[:-1])), 'rate': ts.rate}))", [file]);
    assert.equal(back.rate, null);
    assert.ok(Math.abs(back.gap - 3.002) < 1e-9, `largest step ${back.gap} s`);
    const data = tmpDir('sharedlens-nwb-import-');
    const recorder = new Recorder({ dataDir: data, fsync: 'never', fsyncIntervalMs: 1000 });
    try {
      const r = await importNwb({ file, recorder, stimulusDir: path.join(root, 'stimuli'), blockRows: 77 });
      assert.deepEqual(await stats(recorder, r.sessionId), await stats(t.app.recorder, id));
    } finally {
      recorder.close();
      fs.rmSync(data, { recursive: true, force: true });
    }
  });

  it('a file made by pynwb (units with spike times, IndexSeries over Images) imports, replays, and matches numpy', async () => {
    const file = path.join(out, 'pynwb-made.nwb');
    const ref = await python(MAKE_AND_COMPUTE, [file]);
    const data = tmpDir('sharedlens-nwb-import-');
    const stimulusDir = tmpDir('sharedlens-nwb-stimuli-');
    const recorder = new Recorder({ dataDir: data, fsync: 'never', fsyncIntervalMs: 1000 });
    try {
      const r = await importNwb({ file, recorder, stimulusDir, timing: { latencyMs: 50, responseWindowMs: 200, baselineWindowMs: 100, binWidthMs: 1 } });
      assert.equal(r.counts, 'units');
      assert.equal(r.setCreated, true);
      const set = loadStimulusSets(stimulusDir).sets.get(r.stimulusSetId)!;
      assert.deepEqual(set.manifest.stimuli.map((s) => s.category), ref.categories_of_images);
      const snap = await stats(recorder, r.sessionId);
      assert.equal(snap.trialsCompleted, ref.trials);
      const close = (a: number | null, b: number | null, what: string) => assert.ok(a !== null && b !== null && Math.abs(a - b) < 1e-9, `${what}: ${a} vs numpy ${b}`);
      snap.stimuli!.forEach((s, i) => s.mean.forEach((m, c) => close(m, ref.stim_mean[i][c], `mean of ${s.id}, unit ${c}`)));
      snap.channels.forEach((c, u) => {
        assert.equal(c.preferredCategory, ref.preferred[u]);
        close(c.selectivityIndex, ref.si[u], `SI of unit ${u}`);
        close(c.dPrime, ref.dprime[u], `d' of unit ${u}`);
      });
    } finally {
      recorder.close();
      fs.rmSync(data, { recursive: true, force: true });
      fs.rmSync(stimulusDir, { recursive: true, force: true });
    }
  });

  it('a trials table with image ids imports against a registered set (--set), its aborts kept', async () => {
    const file = path.join(out, 'trials-table.nwb');
    await python(TRIALS_TABLE, [file, JSON.stringify(demoStimuli.slice(0, 6).map((s) => s.id))]);
    const data = tmpDir('sharedlens-nwb-import-');
    const recorder = new Recorder({ dataDir: data, fsync: 'never', fsyncIntervalMs: 1000 });
    try {
      const r = await importNwb({ file, recorder, stimulusDir: path.join(root, 'stimuli'), setId: 'demo' });
      assert.equal(r.setCreated, false);
      assert.equal(r.trials, 30);
      const snap = await stats(recorder, r.sessionId);
      assert.equal(snap.trialsAborted, 3);
      assert.equal(snap.trialsCompleted, 27);
      assert.deepEqual(snap.stimuli!.filter((s) => s.nTrials > 0).map((s) => s.id).sort(), demoStimuli.slice(0, 6).map((s) => s.id).sort());
    } finally {
      recorder.close();
      fs.rmSync(data, { recursive: true, force: true });
    }
  });

  it('unsupported files get a clear message naming what is missing', async () => {
    const data = tmpDir('sharedlens-nwb-import-');
    const recorder = new Recorder({ dataDir: data, fsync: 'never', fsyncIntervalMs: 1000 });
    try {
      const noStim = path.join(out, 'units-only.nwb');
      await python(UNITS_ONLY, [noStim]);
      await assert.rejects(importNwb({ file: noStim, recorder, stimulusDir: path.join(root, 'stimuli') }), (e: Error) => e instanceof NwbLayoutError && /no image presentations/.test(e.message));
      const notNwb = path.join(out, 'plain.h5');
      await python("import sys, h5py, json\nh5py.File(sys.argv[1], 'w').create_dataset('x', data=[1, 2])\nprint('{}')", [notNwb]);
      await assert.rejects(importNwb({ file: notNwb, recorder, stimulusDir: path.join(root, 'stimuli') }), /is not an NWB file/);
      const text = path.join(out, 'notes.txt');
      fs.writeFileSync(text, 'not hdf5 at all');
      await assert.rejects(importNwb({ file: text, recorder, stimulusDir: path.join(root, 'stimuli') }), /is not an HDF5 file/);
      await assert.rejects(importNwb({ file: path.join(out, 'missing.nwb'), recorder, stimulusDir: path.join(root, 'stimuli') }), /no file .*missing\.nwb/);
      await assert.rejects(importNwb({ file: path.join(out, `${demoId}.nwb`), recorder, stimulusDir: path.join(root, 'stimuli'), setId: 'nope' }), /no stimulus set "nope"/);
      const unsorted = path.join(out, 'unsorted.nwb');
      await python(UNSORTED, [unsorted]);
      await assert.rejects(importNwb({ file: unsorted, recorder, stimulusDir: tmpDir('sharedlens-nwb-stimuli-') }), (e: Error) => e instanceof NwbLayoutError && /spike times of unit unit0 are not sorted/.test(e.message));
      assert.deepEqual(fs.readdirSync(recorder.root), [], 'nothing was recorded');
    } finally {
      recorder.close();
      fs.rmSync(data, { recursive: true, force: true });
    }
  });
});

const UNITS_ONLY = `
import sys, json, datetime
from pynwb import NWBFile, NWBHDF5IO
f = NWBFile(session_description='units only', identifier='u1', session_start_time=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc))
f.add_unit(spike_times=[0.1, 0.2])
with NWBHDF5IO(sys.argv[1], 'w') as io: io.write(f)
print('{}')
`;

const TRIALS_TABLE = `
import sys, json, datetime
import numpy as np
from pynwb import NWBFile, NWBHDF5IO
ids = json.loads(sys.argv[2])
rng = np.random.default_rng(3)
f = NWBFile(session_description='trials table', identifier='tt1', session_start_time=datetime.datetime(2025, 2, 3, tzinfo=datetime.timezone.utc))
f.add_trial_column('stimulus_id', 'image id')
f.add_trial_column('aborted', 'aborted trial')
for k in range(30):
  f.add_trial(start_time=1.0 + 0.5 * k, stop_time=1.2 + 0.5 * k, stimulus_id=ids[k % len(ids)], aborted=k % 10 == 9)
for u in range(3):
  f.add_unit(spike_times=np.sort(rng.uniform(0, 17, 400)))
with NWBHDF5IO(sys.argv[1], 'w') as io: io.write(f)
print('{}')
`;

const UNSORTED = `
import sys, datetime
import numpy as np
from pynwb import NWBFile, NWBHDF5IO
from pynwb.image import Images, GrayscaleImage, IndexSeries
from pynwb.base import ImageReferences
imgs = [GrayscaleImage(name='a', data=np.zeros((4, 4), dtype=np.uint8)), GrayscaleImage(name='b', data=np.ones((4, 4), dtype=np.uint8))]
images = Images(name='two', images=imgs, description='two', order_of_images=ImageReferences('order_of_images', imgs))
f = NWBFile(session_description='unsorted', identifier='u2', session_start_time=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc))
f.add_stimulus_template(images)
f.add_stimulus(IndexSeries(name='p', data=np.array([0, 1], dtype=np.uint32), indexed_images=images, unit='N/A', timestamps=[0.5, 1.0]))
f.add_unit(spike_times=[0.9, 0.2, 0.6])
with NWBHDF5IO(sys.argv[1], 'w') as io: io.write(f)
print('{}')
`;

/**
 * Builds a file the way another lab would (pynwb: Units with spike times, Images with their category as
 * description, an IndexSeries of presentations) and computes the statistics from the spike times with numpy.
 */
const MAKE_AND_COMPUTE = `
import sys, json, datetime
import numpy as np
from pynwb import NWBFile, NWBHDF5IO
from pynwb.image import Images, RGBImage, IndexSeries
from pynwb.base import ImageReferences
rng = np.random.default_rng(7)
U, S, T = 5, 8, 96
cats = ['faces', 'faces', 'faces', 'tools', 'tools', 'tools', 'scenes', 'scenes']
imgs = [RGBImage(name='img%d' % i, data=rng.integers(0, 255, (12, 10, 3), dtype=np.uint8), description=cats[i]) for i in range(S)]
images = Images(name='lab_set', images=imgs, description='images of another lab', order_of_images=ImageReferences('order_of_images', imgs))
pres = rng.integers(0, S, T)
onsets = 1.0 + 0.5 * np.arange(T)           # on the 1 ms grid
rates = rng.uniform(5, 40, (U, S))           # spikes/s per unit and image during the response
spikes = [[] for _ in range(U)]
for u in range(U):
  base = rng.uniform(0, onsets[-1] + 1.0, rng.poisson(8 * (onsets[-1] + 1.0)))
  spikes[u].extend(base)
  for k, t0 in enumerate(onsets):
    n = rng.poisson(rates[u, pres[k]] * 0.2)
    spikes[u].extend(t0 + 0.05 + rng.uniform(0, 0.2, n))
f = NWBFile(session_description='another lab', identifier='lab-session-7', session_start_time=datetime.datetime(2025, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc))
f.add_stimulus_template(images)
f.add_stimulus(IndexSeries(name='presentations', data=pres.astype(np.uint32), indexed_images=images, unit='N/A', timestamps=onsets))
for u in range(U):
  f.add_unit(spike_times=np.sort(np.array(spikes[u])))
with NWBHDF5IO(sys.argv[1], 'w') as io: io.write(f)
# the statistics from the spike times: response = spikes in [on+50, on+250) ms minus spikes in [on-100, on) x 2
io = NWBHDF5IO(sys.argv[1], 'r'); g = io.read()
st = [np.asarray(g.units['spike_times'][u]) for u in range(U)]
pres = np.asarray(g.stimulus['presentations'].data[:]); onsets = np.asarray(g.stimulus['presentations'].timestamps[:])
count = lambda s, a, b: int(np.sum((s * 1000 >= a - 1e-9) & (s * 1000 < b - 1e-9)))
R = np.array([[count(st[u], on * 1000 + 50, on * 1000 + 250) - count(st[u], on * 1000 - 100, on * 1000) * 2.0 for u in range(U)] for on in onsets])
stim_mean = [[float(R[pres == i, u].mean()) if np.any(pres == i) else None for u in range(U)] for i in range(S)]
ucats = sorted(set(cats)); catv = np.array([cats[i] for i in pres])
pref, si, dp = [], [], []
for u in range(U):
  means = {c: R[catv == c, u].mean() for c in ucats}
  p = max(ucats, key=lambda c: means[c]); pref.append(p)
  a, b = R[catv == p, u], R[catv != p, u]
  si.append(float((a.mean() - b.mean()) / (abs(a.mean()) + abs(b.mean()))))
  dp.append(float((a.mean() - b.mean()) / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)))
print(json.dumps({'trials': int(T), 'stim_mean': stim_mean, 'preferred': pref, 'si': si, 'dprime': dp, 'categories_of_images': cats}))
`;
