/**
 * First pass over a recorded session before its NWB export: the session start, every trial (onset,
 * offset, stimulus, abort), and the layout of the counts (how many bins or per-trial rows, whether the
 * bins are contiguous). Memory grows with the number of trials, never with the number of bins.
 */
import type { Frame } from '@sharedlens/shared';

export type StartFrame = Extract<Frame, { type: 'session:start' }>;

export interface ScannedTrial {
  trial: number;
  stimulusId: string;
  onsetMs: number;
  offsetMs: number | null;
  aborted: boolean;
  abortReason: string;
}

export interface SessionScan {
  start: StartFrame;
  /** Trials in onset order. */
  trials: ScannedTrial[];
  /** Binned sessions: total bins, start of the first bin, whether every frame starts where the last ended. */
  bins: { total: number; firstStartMs: number; contiguous: boolean; lastEndMs: number };
  /** Trial-mode sessions: counts:trial frames, and whether any carried baseline counts. */
  trialCounts: { rows: number; withBaseline: boolean };
  /** Earliest rig time in the session (onsets, offsets, bins): the zero of the file's time axis. */
  zeroMs: number;
  ended: boolean;
}

const EPS = 1e-6;

/** Scans the frames of one session (the first must be its session:start). */
export function scanSession(frames: Iterable<Frame>): SessionScan {
  let start: StartFrame | null = null;
  const trials = new Map<number, ScannedTrial>();
  const bins = { total: 0, firstStartMs: NaN, contiguous: true, lastEndMs: NaN };
  const trialCounts = { rows: 0, withBaseline: false };
  let zeroMs = Infinity;
  let ended = false;
  for (const f of frames) {
    if (!start) {
      if (f.type !== 'session:start') throw new Error(`the session log does not begin with session:start (first record: ${f.type})`);
      start = f;
      continue;
    }
    switch (f.type) {
      case 'stim:onset':
        trials.set(f.trial, { trial: f.trial, stimulusId: f.stimulusId, onsetMs: f.tMs, offsetMs: null, aborted: false, abortReason: '' });
        zeroMs = Math.min(zeroMs, f.tMs);
        break;
      case 'stim:offset': {
        const t = trials.get(f.trial);
        if (t) t.offsetMs = f.tMs;
        break;
      }
      case 'trial:abort': {
        const t = trials.get(f.trial);
        if (t) {
          t.aborted = true;
          t.abortReason = f.reason ?? '';
        }
        break;
      }
      case 'counts:binned': {
        if (bins.total === 0) bins.firstStartMs = f.startMs;
        else if (Math.abs(f.startMs - bins.lastEndMs) > EPS) bins.contiguous = false;
        bins.total += f.nBins;
        bins.lastEndMs = f.startMs + f.nBins * f.binWidthMs;
        zeroMs = Math.min(zeroMs, f.startMs);
        break;
      }
      case 'counts:trial':
        trialCounts.rows++;
        if (f.baselineCounts) trialCounts.withBaseline = true;
        break;
      case 'session:end':
        ended = true;
        break;
      default:
        break;
    }
  }
  if (!start) throw new Error('the session log is empty');
  return {
    start,
    trials: [...trials.values()].sort((a, b) => a.onsetMs - b.onsetMs || a.trial - b.trial),
    bins,
    trialCounts,
    zeroMs: Number.isFinite(zeroMs) ? zeroMs : 0,
    ended,
  };
}
