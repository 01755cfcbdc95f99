/**
 * NWB test support: pynwb 2.3.1 (the independent reader and validator) run through Debian's python3, and
 * sessions written straight into a recorder (trial-mode counts, aborts, every category of a set).
 */
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Frame, SessionStartInput, Stimulus } from '@sharedlens/shared';
import { sessionStartSchema } from '@sharedlens/shared';
import type { Recorder } from '../server/src/sinks/recorder.ts';
import { mulberry32, poisson } from '../server/src/sim/synthetic-neurons.ts';
import { root } from './helpers.ts';

/**
 * The folder holding pynwb/: SHAREDLENS_PYNWB, or ../shared/reference beside the repository. Missing both
 * is a failure with the reason (the NWB tests need an independent validator; they are never skipped).
 */
export function pynwbPath(): string {
  const candidates = [process.env.SHAREDLENS_PYNWB, path.resolve(root, '..', 'shared', 'reference')].filter((p): p is string => !!p);
  const found = candidates.find((p) => fs.existsSync(path.join(p, 'pynwb', '__init__.py')));
  if (!found) {
    throw new Error(`pynwb 2.3.1 not found: set SHAREDLENS_PYNWB to the folder that holds pynwb/ (looked in ${candidates.join(', ')}); it needs Debian's python3-hdmf`);
  }
  return found;
}

/**
 * Runs a Python script with pynwb importable; `args` become sys.argv[1:]; resolves to its stdout parsed as
 * JSON. Asynchronous on purpose: the servers under test run in this process, and a synchronous child that
 * blocks the event loop for seconds lets the server's keep-alive timer close a socket just as the next
 * request is written on it ('fetch failed: other side closed', seen in CI).
 */
export async function python(script: string, args: string[] = []): Promise<any> {
  const { stdout } = await promisify(execFile)('/usr/bin/python3', ['-c', script, ...args], {
    env: { ...process.env, PYTHONPATH: pynwbPath(), PYTHONWARNINGS: 'ignore' },
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  return JSON.parse(stdout);
}

/** pynwb.validate on one file: the list of error strings (empty: valid). */
export function validateNwb(file: string): Promise<string[]> {
  return python('import sys, json\nfrom pynwb import validate\nerrors, status = validate(paths=[sys.argv[1]])\nprint(json.dumps([str(e) for e in errors] + ([] if status == 0 else ["status %d" % status])))', [file]);
}

/**
 * Records a trial-mode session (one counts:trial per trial, baseline counts on most trials, ~15% aborted)
 * over the given stimuli straight into the recorder; returns its id.
 */
export function recordTrialModeSession(recorder: Recorder, stimuli: Stimulus[], opts: { sessionId: string; channels: number; trials: number; seed: number }): string {
  const rand = mulberry32(opts.seed);
  const input: SessionStartInput = {
    rigId: 'trial-rig',
    subject: 'M7',
    channels: Array.from({ length: opts.channels }, (_, i) => ({ id: `e${i}`, label: `electrode ${i}`, area: i % 2 ? 'IT' : 'V4', depthUm: 100 * i })),
    stimulusSetId: 'demo',
    timing: { responseWindowMs: 150, latencyMs: 60, baselineWindowMs: 100, binWidthMs: 5 },
    countsMode: 'trial',
  };
  const start = sessionStartSchema.parse(input);
  const cats = [...new Set(stimuli.map((s) => s.category))];
  const id = opts.sessionId;
  recorder.create({ type: 'session:start', sessionId: id, startedAt: '2026-03-04T10:00:00.000Z', start, stimuli }, 1_000);
  let seq = 0;
  const rec = (frame: Frame, atMs: number) => recorder.append({ atMs, frame });
  for (let t = 0; t < opts.trials; t++) {
    const s = stimuli[Math.floor(rand() * stimuli.length)];
    const tMs = 5_000 + t * 400;
    rec({ type: 'stim:onset', sessionId: id, seq: ++seq, trial: t, stimulusId: s.id, tMs }, tMs);
    if (rand() < 0.15) {
      rec({ type: 'trial:abort', sessionId: id, seq: ++seq, trial: t, ...(t % 2 ? { reason: 'fixation break' } : {}) }, tMs + 50);
      continue;
    }
    rec({ type: 'stim:offset', sessionId: id, seq: ++seq, trial: t, stimulusId: s.id, tMs: tMs + 200 }, tMs + 200);
    const k = cats.indexOf(s.category);
    const responseCounts = Float64Array.from({ length: opts.channels }, (_, c) => poisson(rand, 3 + (k === c % cats.length ? 6 : 0)));
    const baselineCounts = t % 5 ? Float64Array.from({ length: opts.channels }, () => poisson(rand, 2)) : undefined;
    rec({ type: 'counts:trial', sessionId: id, seq: ++seq, trial: t, responseCounts, ...(baselineCounts ? { baselineCounts } : {}) }, tMs + 260);
  }
  rec({ type: 'session:end', sessionId: id, seq: ++seq }, 5_000 + opts.trials * 400);
  recorder.finish(id, 'ended');
  return id;
}

/** Records a binned session whose counts stop for a while mid-session (the rig paused): the export needs timestamps. */
export function recordBinnedWithGap(recorder: Recorder, stimuli: Stimulus[], sessionId: string): string {
  const rand = mulberry32(21);
  const C = 3;
  const start = sessionStartSchema.parse({
    rigId: 'gap-rig',
    subject: 'M9',
    channels: Array.from({ length: C }, (_, i) => ({ id: `g${i}`, label: `g${i}` })),
    stimulusSetId: 'demo',
    timing: { responseWindowMs: 100, latencyMs: 20, baselineWindowMs: 50, binWidthMs: 2 },
  });
  recorder.create({ type: 'session:start', sessionId, startedAt: '2026-05-06T07:08:09.000Z', start, stimuli }, 0);
  let seq = 0;
  const rec = (frame: Frame) => recorder.append({ atMs: 0, frame });
  // trials every 300 ms; the rig sends nothing between 6 s and 9 s
  const bins = (fromMs: number, toMs: number) => {
    for (let t = fromMs; t < toMs; t += 40) {
      const counts = Uint16Array.from({ length: 20 * C }, () => poisson(rand, 0.05));
      rec({ type: 'counts:binned', sessionId, seq: ++seq, startMs: t, binWidthMs: 2, nBins: 20, counts });
    }
  };
  let trial = 0;
  for (const [from, to] of [[0, 6_000], [9_000, 15_000]]) {
    for (let t = from + 100; t + 200 < to; t += 300) {
      const s = stimuli[trial % stimuli.length];
      rec({ type: 'stim:onset', sessionId, seq: ++seq, trial, stimulusId: s.id, tMs: t });
      rec({ type: 'stim:offset', sessionId, seq: ++seq, trial, stimulusId: s.id, tMs: t + 150 });
      trial++;
    }
    bins(from, to);
  }
  rec({ type: 'session:end', sessionId, seq: ++seq });
  recorder.finish(sessionId, 'ended');
  return sessionId;
}
