import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Frame, SessionStart } from '@sharedlens/shared';
import { createAssembler, stepAssembler, type CompletedTrial, type TrialOutcome } from '../server/src/compute/trial-assembler.ts';
import { mulberry32 } from '../server/src/sim/synthetic-neurons.ts';

const C = 3;
function start(timing: Partial<SessionStart['timing']> = {}, countsMode: 'binned' | 'trial' = 'binned'): SessionStart {
  return {
    rigId: 'r',
    subject: 's',
    channels: Array.from({ length: C }, (_, i) => ({ id: `c${i}`, label: `c${i}` })),
    stimulusSetId: 'demo',
    timing: { responseWindowMs: 100, latencyMs: 30, baselineWindowMs: 40, binWidthMs: 1, ...timing },
    countsMode,
  };
}

/** Dense spike counts [bin][channel] over the whole recording, the reference the windows are summed from. */
function dense(nBins: number, seed: number): Uint16Array {
  const r = mulberry32(seed);
  return Uint16Array.from({ length: nBins * C }, () => Math.floor(r() * 4));
}

/** Independent reference: windows summed straight from the dense array (bins assigned by start time). */
function expected(d: Uint16Array, st: SessionStart, onsetMs: number): number[] {
  const { latencyMs, responseWindowMs, baselineWindowMs, binWidthMs: bw } = st.timing;
  const out: number[] = [];
  for (let c = 0; c < C; c++) {
    let resp = 0, nr = 0, base = 0, nb = 0;
    for (let b = 0; b * bw < d.length / C * bw; b++) {
      const t = b * bw;
      if (t >= onsetMs + latencyMs && t < onsetMs + latencyMs + responseWindowMs) { resp += d[b * C + c]; nr++; }
      if (t >= onsetMs - baselineWindowMs && t < onsetMs) { base += d[b * C + c]; nb++; }
    }
    out.push(nb ? resp - (base * nr) / nb : resp);
  }
  return out;
}

function chunked(d: Uint16Array, bw: number, seed: number): Frame[] {
  const r = mulberry32(seed);
  const frames: Frame[] = [];
  const nBins = d.length / C;
  let b = 0;
  let seq = 1000;
  while (b < nBins) {
    const n = Math.min(nBins - b, 1 + Math.floor(r() * 70));
    frames.push({ type: 'counts:binned', sessionId: 's', seq: seq++, startMs: b * bw, binWidthMs: bw, nBins: n, counts: d.slice(b * C, (b + n) * C) });
    b += n;
  }
  return frames;
}

function run(st: SessionStart, frames: Frame[]): TrialOutcome[] {
  const s = createAssembler(st, 10);
  return frames.flatMap((f) => stepAssembler(s, f));
}

/** Interleaves trial events with chunks by time, as a rig sends them. */
function interleave(chunks: Frame[], events: { atMs: number; frame: Frame }[]): Frame[] {
  const all = [...chunks.map((f) => ({ atMs: (f as { startMs: number }).startMs + 0.5, frame: f })), ...events];
  return all.sort((a, b) => a.atMs - b.atMs).map((x) => x.frame);
}

for (const bw of [1, 5]) {
  test(`responses equal window sums of the dense counts (bin width ${bw} ms, random chunking)`, () => {
    const st = start({ binWidthMs: bw });
    const d = dense(Math.ceil(3000 / bw), 7 + bw);
    const onsets = [200, 600, 1000, 1400, 2200];
    const events = onsets.flatMap((on, trial) => [
      { atMs: on, frame: { type: 'stim:onset', sessionId: 's', seq: trial * 2 + 1, trial, stimulusId: `x${trial}`, tMs: on } as Frame },
      { atMs: on + 200, frame: { type: 'stim:offset', sessionId: 's', seq: trial * 2 + 2, trial, stimulusId: `x${trial}`, tMs: on + 200 } as Frame },
    ]);
    const out = run(st, interleave(chunked(d, bw, 3), events));
    assert.deepEqual(out.map((o) => o.trial), [0, 1, 2, 3, 4]);
    for (const o of out as CompletedTrial[]) {
      const exp = expected(d, st, onsets[o.trial]);
      exp.forEach((v, c) => assert.ok(Math.abs(o.responses[c] - v) < 1e-9, `trial ${o.trial} channel ${c}: ${o.responses[c]} vs ${v}`));
      // the PSTH holds every count from baseline start to response end
      const first = Math.ceil((onsets[o.trial] - 40) / bw - 1e-9);
      const last = Math.ceil((onsets[o.trial] + 130) / bw - 1e-9);
      for (let c = 0; c < C; c++) {
        let total = 0;
        for (let b = first; b < last; b++) total += d[b * C + c];
        const nP = o.psth!.length / C;
        const psthTotal = Array.from(o.psth!.subarray(c * nP, (c + 1) * nP)).reduce((a, b) => a + b, 0);
        assert.equal(psthTotal, total);
      }
    }
  });
}

test('a trial completes only when its offset has arrived and the bins cover its response window', () => {
  const st = start();
  const s = createAssembler(st, 10);
  const d = dense(400, 1);
  const chunk = (from: number, to: number): Frame => ({ type: 'counts:binned', sessionId: 's', seq: 9, startMs: from, binWidthMs: 1, nBins: to - from, counts: d.slice(from * C, to * C) });
  assert.deepEqual(stepAssembler(s, chunk(0, 100)), []);
  assert.deepEqual(stepAssembler(s, { type: 'stim:onset', sessionId: 's', seq: 1, trial: 0, stimulusId: 'a', tMs: 100 }), []);
  assert.deepEqual(stepAssembler(s, chunk(100, 300)), [], 'no offset yet');
  const done = stepAssembler(s, { type: 'stim:offset', sessionId: 's', seq: 2, trial: 0, stimulusId: 'a', tMs: 300 });
  assert.equal(done.length, 1);
  assert.equal(done[0].kind, 'completed');
  assert.equal(done[0].seq, 2, 'the offset completed it');
  // the other order: offset first, bins later
  stepAssembler(s, { type: 'stim:onset', sessionId: 's', seq: 3, trial: 1, stimulusId: 'b', tMs: 300 });
  assert.deepEqual(stepAssembler(s, { type: 'stim:offset', sessionId: 's', seq: 4, trial: 1, stimulusId: 'b', tMs: 350 }), []);
  assert.deepEqual(stepAssembler(s, chunk(300, 429)), [], 'window ends at 430');
  const later = stepAssembler(s, chunk(429, 430));
  assert.equal(later.length, 1);
  assert.equal(later[0].trial, 1);
});

test('an aborted trial is reported as aborted and never completes', () => {
  const st = start();
  const s = createAssembler(st, 10);
  stepAssembler(s, { type: 'stim:onset', sessionId: 's', seq: 1, trial: 5, stimulusId: 'a', tMs: 100 });
  const ab = stepAssembler(s, { type: 'trial:abort', sessionId: 's', seq: 2, trial: 5 });
  assert.deepEqual(ab.map((o) => o.kind), ['aborted']);
  const d = dense(500, 2);
  assert.deepEqual(stepAssembler(s, { type: 'counts:binned', sessionId: 's', seq: 3, startMs: 0, binWidthMs: 1, nBins: 500, counts: d }), []);
});

test('per-trial count vectors: response minus baseline scaled by window lengths', () => {
  const st = start({ responseWindowMs: 200, baselineWindowMs: 50 }, 'trial');
  const s = createAssembler(st, 10);
  stepAssembler(s, { type: 'stim:onset', sessionId: 's', seq: 1, trial: 0, stimulusId: 'a', tMs: 0 });
  stepAssembler(s, { type: 'stim:offset', sessionId: 's', seq: 2, trial: 0, stimulusId: 'a', tMs: 200 });
  const out = stepAssembler(s, { type: 'counts:trial', sessionId: 's', seq: 3, trial: 0, responseCounts: Float64Array.of(10, 4, 0), baselineCounts: Float64Array.of(1, 2, 0) });
  assert.equal(out.length, 1);
  assert.deepEqual(Array.from((out[0] as CompletedTrial).responses), [10 - 4, 4 - 8, 0]);
});

test('old chunks are dropped, so memory stays bounded over a long session', () => {
  const st = start();
  const s = createAssembler(st, 10);
  const d = new Uint16Array(50 * C);
  for (let i = 0; i < 2000; i++) stepAssembler(s, { type: 'counts:binned', sessionId: 's', seq: i, startMs: i * 50, binWidthMs: 1, nBins: 50, counts: d });
  // retention = baseline + latency + window + 5 s slack, in 50 ms chunks
  assert.ok(s.chunks.length <= Math.ceil((40 + 30 + 100 + 5000) / 50) + 1, `${s.chunks.length} chunks retained`);
});
