/**
 * Exports one recorded session as an NWB 2.6 file (docs/nwb.md says what goes where). Two streaming passes
 * over the session's frames: a scan (trials and the counts' layout), then the counts written block by block
 * into chunked, gzip-compressed datasets, so memory does not grow with the session's length. The file is
 * written under a temporary name and renamed when complete.
 */
import fs from 'node:fs';
import sharp from 'sharp';
import type { Frame } from '@sharedlens/shared';
import type { StimulusSet } from '../stimulus-sets.ts';
import { stimulusFile } from '../stimulus-sets.ts';
import { Appendable, NWB_VERSION, dynamicTable, h5Ready, seriesData, text, timestampsAttrs, typed, typedGroup, floatAttr, type H5Group } from './nwb-hdf5.ts';
import h5wasm from 'h5wasm/node';
import { scanSession, type SessionScan } from './session-scan.ts';
import type { SessionAnalysis } from './session-analysis.ts';
import { writeAnalysis } from './write-analysis.ts';

export interface ExportAbout {
  lab?: string;
  institution?: string;
  experimenter?: string[];
  description?: string;
}

export interface ExportOptions {
  /** Output file (.nwb). */
  file: string;
  /** The session's frames in log order; called once per pass. */
  frames: () => Iterable<Frame>;
  /** The session's stimulus set (images into stimulus/templates), or null when it is not registered here. */
  set: StimulusSet | null;
  about: ExportAbout;
  analysis: SessionAnalysis | null;
  /** Rows per block written at once (tests use small blocks to cross block edges). */
  blockRows?: number;
}

/** What `general/data_collection` holds, as JSON: enough to rebuild the session exactly on import. */
export interface SharedlensNotes {
  sharedlens: {
    format: 1;
    sessionId: string;
    rigId: string;
    stimulusSetId: string;
    countsMode: 'binned' | 'trial';
    timing: { responseWindowMs: number; latencyMs: number; baselineWindowMs: number; binWidthMs: number };
    preferredCategory?: string;
    /** Rig time (ms) of the file's time zero: file seconds = (rig ms - zeroMs) / 1000. */
    zeroMs: number;
    ended: boolean;
  };
}

export interface ExportResult {
  file: string;
  bytes: number;
  trials: number;
  bins: number;
  trialCountRows: number;
  images: number;
  notes: string[];
}

const seconds = (ms: number, zeroMs: number) => (ms - zeroMs) / 1000;

/** Writes the NWB file; throws with a message naming the problem (nothing is left at `file` then). */
export async function exportSession(opts: ExportOptions): Promise<ExportResult> {
  const scan = scanSession(opts.frames());
  const notes: string[] = [];
  if (!opts.set) notes.push(`stimulus set "${scan.start.start.stimulusSetId}" is not registered here: no images in stimulus/templates, no IndexSeries`);
  await h5Ready();
  const part = `${opts.file}.part`;
  const f = new h5wasm.File(part, 'w');
  let images = 0;
  try {
    writeFileFields(f, scan, opts.about);
    const stimIndex = new Map(scan.start.stimuli.map((s, i) => [s.id, i]));
    if (opts.set) images = await writeStimuli(f, scan, opts.set, stimIndex);
    writeTrials(f, scan);
    const ecephys = typedGroup(f.get('processing') as H5Group, 'ecephys', 'ProcessingModule', { description: 'sharedlens: the rig channels and their spike counts (binned, or per trial)' });
    writeChannels(ecephys, scan);
    const blockRows = opts.blockRows ?? 4096;
    if (scan.start.start.countsMode === 'binned') writeBinned(ecephys, scan, opts.frames(), blockRows);
    else writeTrialCounts(ecephys, scan, opts.frames(), blockRows);
    if (opts.analysis) writeAnalysis(f, opts.analysis, notes);
    else notes.push('no analysis given: processing/sharedlens is not written');
  } catch (e) {
    f.close();
    fs.rmSync(part, { force: true });
    throw e;
  }
  f.close();
  fs.renameSync(part, opts.file);
  return {
    file: opts.file,
    bytes: fs.statSync(opts.file).size,
    trials: scan.trials.length,
    bins: scan.bins.total,
    trialCountRows: scan.trialCounts.rows,
    images,
    notes,
  };
}

function writeFileFields(f: H5Group, scan: SessionScan, about: ExportAbout): void {
  const { start } = scan;
  typed(f, 'NWBFile');
  f.create_attribute('nwb_version', NWB_VERSION);
  for (const g of ['acquisition', 'analysis', 'processing', 'stimulus', 'stimulus/presentation', 'stimulus/templates', 'general', 'intervals']) f.create_group(g);
  f.create_dataset({ name: 'file_create_date', data: [new Date().toISOString()] });
  text(f, 'identifier', start.sessionId);
  text(f, 'session_description', about.description ?? `sharedlens session ${start.sessionId}: rig ${start.start.rigId}, stimulus set ${start.start.stimulusSetId}, ${start.start.channels.length} channels`);
  text(f, 'session_start_time', start.startedAt);
  text(f, 'timestamps_reference_time', start.startedAt);
  const general = f.get('general') as H5Group;
  if (about.lab) text(general, 'lab', about.lab);
  if (about.institution) text(general, 'institution', about.institution);
  if (about.experimenter?.length) general.create_dataset({ name: 'experimenter', data: about.experimenter });
  const t = start.start.timing;
  const sl: SharedlensNotes = {
    sharedlens: {
      format: 1,
      sessionId: start.sessionId,
      rigId: start.start.rigId,
      stimulusSetId: start.start.stimulusSetId,
      countsMode: start.start.countsMode,
      timing: { responseWindowMs: t.responseWindowMs, latencyMs: t.latencyMs, baselineWindowMs: t.baselineWindowMs, binWidthMs: t.binWidthMs },
      ...(start.start.preferredCategory ? { preferredCategory: start.start.preferredCategory } : {}),
      zeroMs: scan.zeroMs,
      ended: scan.ended,
    },
  };
  text(general, 'data_collection', JSON.stringify(sl));
  const subject = typedGroup(general, 'subject', 'Subject');
  text(subject, 'subject_id', start.start.subject);
}

interface LoadedImage {
  id: string;
  category: string;
  data: Uint8Array;
  height: number;
  width: number;
  channels: 1 | 3 | 4;
}

/** Decodes one image of the set (pixels as stored: height x width x channels, uint8). */
async function loadImage(set: StimulusSet, s: { id: string; category: string }): Promise<LoadedImage> {
  const file = stimulusFile(set, s.id);
  if (!file) throw new Error(`stimulus "${s.id}" of the session is not in set "${set.manifest.id}"`);
  const img = sharp(file);
  const meta = await img.metadata();
  // grey + alpha has no NWB image type: it becomes RGBA
  const pipeline = meta.channels === 2 ? img.toColourspace('srgb').ensureAlpha() : img;
  const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 1 && info.channels !== 3 && info.channels !== 4) throw new Error(`image ${file} has ${info.channels} channels`);
  return { id: s.id, category: s.category, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), height: info.height, width: info.width, channels: info.channels };
}

/** Writes the images one at a time (decoded, written, released) and the presentations; returns the image count. */
async function writeStimuli(f: H5Group, scan: SessionScan, stimulusSet: StimulusSet, stimIndex: Map<string, number>): Promise<number> {
  const templates = f.get('stimulus/templates') as H5Group;
  const setId = scan.start.start.stimulusSetId;
  const set = typedGroup(templates, setId, 'Images', { description: `sharedlens stimulus set "${setId}": one image per stimulus id (height x width x channels, uint8); the image's description is its category` });
  const refs = [];
  for (const s of scan.start.stimuli) {
    const im = await loadImage(stimulusSet, s);
    const shape = im.channels === 1 ? [im.height, im.width] : [im.height, im.width, im.channels];
    const d = set.create_dataset({ name: im.id, data: im.data, shape, dtype: '<B', chunks: shape, compression: 1 });
    typed(d, im.channels === 1 ? 'GrayscaleImage' : im.channels === 3 ? 'RGBImage' : 'RGBAImage');
    d.create_attribute('description', im.category);
    refs.push(d.create_reference());
  }
  typed(set.create_dataset({ name: 'order_of_images', data: refs }), 'ImageReferences');
  const pres = typedGroup(f.get('stimulus/presentation') as H5Group, 'presentations', 'IndexSeries', {
    comments: 'every stim:onset of the session, aborted trials included (see intervals/trials)',
    description: `image presentations: index into stimulus/templates/${setId}/order_of_images at each onset`,
  });
  const data = pres.create_dataset({ name: 'data', data: Uint32Array.from(scan.trials, (t) => stimIndex.get(t.stimulusId) ?? 0), dtype: '<I' });
  seriesData(data, 'N/A');
  timestampsAttrs(pres.create_dataset({ name: 'timestamps', data: Float64Array.from(scan.trials, (t) => seconds(t.onsetMs, scan.zeroMs)) }));
  pres.create_soft_link(`/stimulus/templates/${setId}`, 'indexed_images');
  return refs.length;
}

function writeTrials(f: H5Group, scan: SessionScan): void {
  const { trials, start, zeroMs } = scan;
  const t = start.start.timing;
  const catOf = new Map(start.stimuli.map((s) => [s.id, s.category]));
  dynamicTable(f.get('intervals') as H5Group, 'trials', {
    type: 'TimeIntervals',
    description: 'one row per stim:onset: start = onset, stop = offset (onset + latency + response window where no offset arrived)',
    n: trials.length,
    columns: [
      { name: 'start_time', description: 'Start time of epoch, in seconds', values: trials.map((x) => seconds(x.onsetMs, zeroMs)) },
      { name: 'stop_time', description: 'Stop time of epoch, in seconds', values: trials.map((x) => seconds(x.offsetMs ?? x.onsetMs + t.latencyMs + t.responseWindowMs, zeroMs)) },
      { name: 'trial', description: 'the rig trial number', values: trials.map((x) => x.trial), dtype: '<i' },
      { name: 'stimulus_id', description: 'stimulus id (the image name in stimulus/templates)', strings: trials.map((x) => x.stimulusId) },
      { name: 'category', description: 'the stimulus category', strings: trials.map((x) => catOf.get(x.stimulusId) ?? '') },
      { name: 'offset_received', description: '1 when the rig sent stim:offset for this trial', values: trials.map((x) => (x.offsetMs === null ? 0 : 1)), dtype: '<B' },
      { name: 'aborted', description: '1 when the rig aborted the trial (it never entered the statistics)', values: trials.map((x) => (x.aborted ? 1 : 0)), dtype: '<B' },
      { name: 'abort_reason', description: 'reason the rig gave for the abort (empty: none)', strings: trials.map((x) => x.abortReason) },
    ],
  });
}

function writeChannels(ecephys: H5Group, scan: SessionScan): void {
  const ch = scan.start.start.channels;
  dynamicTable(ecephys, 'channels', {
    description: 'the rig channels (multi-unit sites; the rig declares no sorted units): one row per column of the counts',
    n: ch.length,
    columns: [
      { name: 'channel_id', description: 'channel id', strings: ch.map((c) => c.id) },
      { name: 'label', description: 'channel label', strings: ch.map((c) => c.label) },
      { name: 'area', description: 'brain area (empty: not declared)', strings: ch.map((c) => c.area ?? '') },
      { name: 'depth_um', description: 'depth in micrometres (NaN: not declared)', values: ch.map((c) => c.depthUm ?? NaN) },
    ],
  });
}

/** Collects rows and writes them in blocks of `blockRows`. */
class BlockWriter<T extends Uint16Array<ArrayBufferLike> | Float64Array<ArrayBufferLike>> {
  private filled = 0;
  constructor(
    private readonly target: Appendable,
    private readonly buf: T,
  ) {}
  push(rows: ArrayLike<number>): void {
    let i = 0;
    while (i < rows.length) {
      const n = Math.min(rows.length - i, this.buf.length - this.filled);
      this.buf.set(Array.prototype.slice.call(rows, i, i + n) as number[], this.filled);
      this.filled += n;
      i += n;
      if (this.filled === this.buf.length) this.flush();
    }
  }
  pushTyped(rows: Uint16Array<ArrayBufferLike> | Float64Array<ArrayBufferLike>): void {
    let i = 0;
    while (i < rows.length) {
      const n = Math.min(rows.length - i, this.buf.length - this.filled);
      this.buf.set(rows.subarray(i, i + n) as never, this.filled);
      this.filled += n;
      i += n;
      if (this.filled === this.buf.length) this.flush();
    }
  }
  flush(): void {
    if (this.filled) this.target.append(this.buf.subarray(0, this.filled) as T);
    this.filled = 0;
  }
}

function writeBinned(ecephys: H5Group, scan: SessionScan, frames: Iterable<Frame>, blockRows: number): void {
  const C = scan.start.start.channels.length;
  const bw = scan.start.start.timing.binWidthMs;
  const ts = typedGroup(ecephys, 'binned_counts', 'TimeSeries', {
    comments: 'columns in the order of processing/ecephys/channels',
    description: `spike counts per ${bw} ms bin (time x channels), as the rig sent them`,
  });
  const chunkRows = Math.max(1, Math.min(blockRows, Math.floor(262_144 / (2 * C))));
  const data = new Appendable(ts, 'data', C, '<H', chunkRows);
  seriesData(data.dataset, 'spikes');
  const rows = new BlockWriter(data, new Uint16Array(Math.max(1, blockRows) * C));
  const stamps = scan.bins.contiguous ? null : new Appendable(ts, 'timestamps', 1, '<d', 65_536, 1);
  const stampRows = stamps ? new BlockWriter(stamps, new Float64Array(Math.max(1, blockRows))) : null;
  for (const fr of frames) {
    if (fr.type !== 'counts:binned') continue;
    rows.pushTyped(fr.counts);
    if (stampRows) stampRows.push(Float64Array.from({ length: fr.nBins }, (_, i) => seconds(fr.startMs + i * fr.binWidthMs, scan.zeroMs)));
  }
  rows.flush();
  stampRows?.flush();
  if (stamps) timestampsAttrs(stamps.dataset);
  else {
    const st = ts.create_dataset({ name: 'starting_time', data: scan.bins.total ? seconds(scan.bins.firstStartMs, scan.zeroMs) : 0, dtype: '<d' });
    floatAttr(st, 'rate', 1000 / bw);
    st.create_attribute('unit', 'seconds');
  }
}

function writeTrialCounts(ecephys: H5Group, scan: SessionScan, frames: Iterable<Frame>, blockRows: number): void {
  const C = scan.start.start.channels.length;
  const { rows: n, withBaseline } = scan.trialCounts;
  const t = scan.start.start.timing;
  const table = typedGroup(ecephys, 'trial_counts', 'DynamicTable', {}, 'hdmf-common');
  const cols = ['trial', 'response_counts', ...(withBaseline ? ['baseline_counts'] : [])];
  table.create_attribute('colnames', cols);
  table.create_attribute('description', `per-trial spike counts (trial mode), in the order the rig sent them: response window ${t.latencyMs}-${t.latencyMs + t.responseWindowMs} ms after onset, baseline ${t.baselineWindowMs} ms before it; columns in the order of processing/ecephys/channels`);
  typed(table.create_dataset({ name: 'id', data: BigInt64Array.from({ length: n }, (_, i) => BigInt(i)), shape: [n], dtype: '<q' }), 'ElementIdentifiers', 'hdmf-common');
  const trial = new Appendable(table, 'trial', 1, '<d', 4096, 1);
  const resp = new Appendable(table, 'response_counts', C, '<d', Math.max(1, Math.floor(65_536 / C)));
  const base = withBaseline ? new Appendable(table, 'baseline_counts', C, '<d', Math.max(1, Math.floor(65_536 / C))) : null;
  const block = Math.max(1, blockRows);
  const trialRows = new BlockWriter(trial, new Float64Array(block));
  const respRows = new BlockWriter(resp, new Float64Array(block * C));
  const baseRows = base ? new BlockWriter(base, new Float64Array(block * C)) : null;
  const missing = new Float64Array(C).fill(NaN);
  for (const fr of frames) {
    if (fr.type !== 'counts:trial') continue;
    trialRows.push([fr.trial]);
    respRows.pushTyped(fr.responseCounts);
    baseRows?.pushTyped(fr.baselineCounts ?? missing);
  }
  for (const w of [trialRows, respRows, baseRows]) w?.flush();
  const describe: [Appendable | null, string][] = [
    [trial, 'the rig trial number of the counts'],
    [resp, 'spike counts in the response window, per channel'],
    [base, 'spike counts in the baseline window, per channel (NaN: not sent for this trial)'],
  ];
  for (const [a, d] of describe) {
    if (!a) continue;
    typed(a.dataset, 'VectorData', 'hdmf-common');
    a.dataset.create_attribute('description', d);
  }
}
