/**
 * Imports an NWB file as a recorded sharedlens session: its images become a stimulus set (or an existing
 * set is used), its presentations and counts become the frames a rig would have sent, written through the
 * recorder like a live session, so the session replays through the same pipeline as any other.
 */
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { sessionStartSchema, fieldErrors, type Frame, type SessionStart, type Stimulus } from '@sharedlens/shared';
import { Recorder } from '../sinks/recorder.ts';
import { loadStimulusSets, type StimulusSet } from '../stimulus-sets.ts';
import { NwbLayoutError, openNwb, readLayout, type NwbLayout } from './read-nwb.ts';
import { nwbFrames, rigMs } from './nwb-frames.ts';

export interface ImportOptions {
  file: string;
  recorder: Recorder;
  stimulusDir: string;
  /** Use this registered stimulus set (its manifest gives the categories) instead of the file's images. */
  setId?: string;
  /** Session id to record under (default: nwb-<identifier>). */
  sessionId?: string;
  /** Timing for files not written by sharedlens (defaults: the simulated rig's). */
  timing?: Partial<SessionStart['timing']>;
  rigId?: string;
  /** Bins per counts:binned frame. */
  blockRows?: number;
}

export interface ImportResult {
  sessionId: string;
  stimulusSetId: string;
  /** True when the images were written as a new stimulus set. */
  setCreated: boolean;
  channels: number;
  trials: number;
  records: number;
  counts: NwbLayout['counts']['kind'];
}

const DEFAULT_TIMING = { responseWindowMs: 200, latencyMs: 50, baselineWindowMs: 100, binWidthMs: 1 };
const safeId = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 90) || 'session';

/** Runs the import; throws NwbLayoutError (unsupported file) or Error (I/O) with a message naming the problem. */
export async function importNwb(o: ImportOptions): Promise<ImportResult> {
  const f = await openNwb(o.file);
  try {
    const layout = readLayout(f);
    const notes = layout.notes;
    const { set, created } = await stimulusSetFor(layout, o);
    const byId = new Map(set.manifest.stimuli.map((s) => [s.id, s]));
    const missing = [...new Set(layout.trials.map((t) => t.stimulusId))].filter((id) => !byId.has(id));
    if (missing.length) throw new NwbLayoutError(`stimulus set "${set.manifest.id}" has no image for ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`);
    const timing = notes?.timing ?? { ...DEFAULT_TIMING, ...o.timing, ...(layout.counts.kind === 'binned' && Number.isFinite(layout.counts.rateHz) && !o.timing?.binWidthMs ? { binWidthMs: 1000 / layout.counts.rateHz } : {}) };
    if (layout.counts.kind === 'binned' && Number.isFinite(layout.counts.rateHz) && Math.abs(1000 / layout.counts.rateHz - timing.binWidthMs) > 1e-9) {
      throw new NwbLayoutError(`the binned counts are at ${layout.counts.rateHz} Hz, not one bin per ${timing.binWidthMs} ms`);
    }
    const parsed = sessionStartSchema.safeParse({
      rigId: notes?.rigId ?? o.rigId ?? 'nwb-import',
      subject: layout.subject ?? 'unknown',
      channels: layout.channels,
      stimulusSetId: set.manifest.id,
      timing,
      countsMode: layout.counts.kind === 'trial' ? 'trial' : 'binned',
      ...(notes?.preferredCategory ? { preferredCategory: notes.preferredCategory } : {}),
    });
    if (!parsed.success) throw new NwbLayoutError(`the file does not make a valid session: ${fieldErrors(parsed.error).join('; ')}`);
    const start = parsed.data;
    const sessionId = freeSessionId(o.recorder, o.sessionId ?? `nwb-${safeId(layout.identifier)}`);
    const startedAt = new Date(layout.sessionStartTime);
    if (Number.isNaN(startedAt.getTime())) throw new NwbLayoutError(`session_start_time "${layout.sessionStartTime}" is not a date`);
    const zeroMs = notes?.zeroMs ?? 0;
    const startFrame: Extract<Frame, { type: 'session:start' }> = {
      type: 'session:start',
      sessionId,
      startedAt: startedAt.toISOString(),
      start,
      stimuli: set.manifest.stimuli.map((s): Stimulus => ({ id: s.id, file: s.file, category: s.category, ...(s.tags ? { tags: s.tags } : {}) })),
    };
    const t0 = startedAt.getTime();
    o.recorder.create(startFrame, t0);
    let records = 1;
    let atMs = t0;
    try {
      for (const frame of nwbFrames(f, layout, { sessionId, start, zeroMs, synthesiseOffsets: !notes, ...(o.blockRows ? { blockRows: o.blockRows } : {}) })) {
        // server time of acceptance: the session's start plus the rig time elapsed (paces 1x replays)
        const rig = 'tMs' in frame ? frame.tMs : frame.type === 'counts:binned' ? frame.startMs : null;
        if (rig !== null) atMs = Math.max(atMs, t0 + rig - rigMs(0, zeroMs));
        o.recorder.append({ atMs, frame });
        records++;
      }
    } catch (e) {
      // a file that fails halfway leaves nothing behind
      o.recorder.finish(sessionId, 'ended');
      fs.rmSync(path.dirname(o.recorder.logFile(sessionId)), { recursive: true, force: true });
      throw e;
    }
    o.recorder.finish(sessionId, 'ended');
    return { sessionId, stimulusSetId: set.manifest.id, setCreated: created, channels: start.channels.length, trials: layout.trials.length, records, counts: layout.counts.kind };
  } finally {
    f.close();
  }
}

function freeSessionId(recorder: Recorder, base: string): string {
  let id = base;
  for (let n = 2; recorder.meta(id); n++) id = `${base}-${n}`;
  return id;
}

/** The registered set named by --set, the file's set when registered with every image, or the file's images written as a new set. */
async function stimulusSetFor(layout: NwbLayout, o: ImportOptions): Promise<{ set: StimulusSet; created: boolean }> {
  const { sets } = loadStimulusSets(o.stimulusDir);
  if (o.setId) {
    const set = sets.get(o.setId);
    if (!set) throw new NwbLayoutError(`no stimulus set "${o.setId}" in ${o.stimulusDir} (registered: ${[...sets.keys()].join(', ') || 'none'})`);
    return { set, created: false };
  }
  const img = layout.imageSet;
  if (!img || !img.images.length) throw new NwbLayoutError('the file holds no Images in stimulus/templates: name a registered stimulus set with --set SET_ID');
  const ids = new Set(layout.trials.map((t) => t.stimulusId));
  const existing = sets.get(img.name) ?? (layout.notes ? sets.get(layout.notes.stimulusSetId) : undefined);
  if (existing && [...ids].every((id) => existing.manifest.stimuli.some((s) => s.id === id))) return { set: existing, created: false };
  let setId = safeId(img.name);
  for (let n = 2; sets.has(setId) || fs.existsSync(path.join(o.stimulusDir, setId)); n++) setId = `${safeId(img.name)}-${n}`;
  const dir = path.join(o.stimulusDir, setId);
  fs.mkdirSync(dir, { recursive: true });
  const catFromTrials = new Map<string, string>();
  for (const t of layout.trials) if (t.category && !catFromTrials.has(t.stimulusId)) catFromTrials.set(t.stimulusId, t.category);
  const stimuli: Stimulus[] = [];
  for (const im of img.images) {
    const [height, width, channels = 1] = im.shape;
    if (!height || !width || ![1, 3, 4].includes(channels)) throw new NwbLayoutError(`image ${im.id} has shape [${im.shape.join(', ')}]; expected height x width (x 3 or 4)`);
    const file = `${safeId(im.id)}.png`;
    await sharp(Buffer.from(im.data), { raw: { width, height, channels: channels as 1 | 3 | 4 } }).png().toFile(path.join(dir, file));
    stimuli.push({ id: im.id, file, category: catFromTrials.get(im.id) ?? (im.description && im.description !== 'no description' ? im.description : 'all') });
  }
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify({ id: setId, description: `images of NWB file ${layout.identifier} (${img.name})`, stimuli }, null, 2));
  const set = loadStimulusSets(o.stimulusDir).sets.get(setId);
  if (!set) throw new Error(`the stimulus set written to ${dir} did not load`);
  return { set, created: true };
}
