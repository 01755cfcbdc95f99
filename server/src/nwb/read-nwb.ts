/**
 * Reads an NWB file (any NWB 2.x writer: pynwb, MatNWB, sharedlens) and finds what a sharedlens session
 * needs: the presentations (a trials table with a stimulus id column, or an IndexSeries over Images), the
 * counts (sharedlens' binned or per-trial counts, another binned TimeSeries with unit "spikes", or a Units
 * table with spike times, binned here) and the stimulus images. Unsupported layouts throw an NwbLayoutError
 * naming what is missing.
 */
import fs from 'node:fs';
import h5wasm, { type Dataset, type Group, type File as H5File } from 'h5wasm/node';
import type { SharedlensNotes } from './export-session.ts';

export class NwbLayoutError extends Error {}

export interface NwbTrial {
  trial: number;
  stimulusId: string;
  onsetS: number;
  /** Offset time, or null when none was recorded. */
  offsetS: number | null;
  aborted: boolean;
  abortReason: string;
  category: string | null;
}

export interface NwbImage {
  id: string;
  /** height x width (x channels) uint8 pixels. */
  data: Uint8Array;
  shape: number[];
  description: string;
}

export type NwbCounts =
  | { kind: 'binned'; path: string; rows: number; channels: number; rateHz: number; startS: number; timestampsPath: string | null }
  | { kind: 'trial'; path: string; rows: number; channels: number; baseline: boolean }
  | { kind: 'units'; units: number; spikes: number; index: number[]; firstS: number; lastS: number };

export interface NwbLayout {
  identifier: string;
  sessionStartTime: string;
  subject: string | null;
  notes: SharedlensNotes['sharedlens'] | null;
  trials: NwbTrial[];
  /** The Images container's name and its images in the order presentations index them (empty: none). */
  imageSet: { name: string; images: NwbImage[] } | null;
  channels: { id: string; label: string; area?: string; depthUm?: number }[];
  counts: NwbCounts;
}

const asString = (v: unknown): string => (v instanceof Uint8Array ? new TextDecoder().decode(v) : String(v));
const strings = (d: Dataset): string[] => {
  const v = d.value;
  return Array.isArray(v) ? v.map(asString) : [asString(v)];
};
const numbers = (d: Dataset): number[] => {
  const v = d.value as ArrayLike<number | bigint> | number;
  return typeof v === 'number' ? [v] : Array.from(v as ArrayLike<number | bigint>, Number);
};
const attr = (o: Group | Dataset, name: string): unknown => o.attrs[name]?.value;
const typeOf = (o: Group | Dataset | null): string => (o ? asString(attr(o, 'neurodata_type') ?? '') : '');

/** Opens an NWB file for reading (the caller closes it). */
export async function openNwb(file: string): Promise<H5File> {
  if (!fs.existsSync(file)) throw new NwbLayoutError(`no file ${file}`);
  await h5wasm.ready;
  let f: H5File | null = null;
  let type: string;
  try {
    f = new h5wasm.File(file, 'r');
    type = typeOf(f);
  } catch (e) {
    // h5wasm opens anything and fails on the first read, with a plain message
    try {
      f?.close();
    } catch {
      // the file never opened
    }
    throw new NwbLayoutError(`${file} is not an HDF5 file (${e instanceof Error ? e.message : String(e)})`);
  }
  if (type !== 'NWBFile') {
    f.close();
    throw new NwbLayoutError(`${file} is not an NWB file (the root has no neurodata_type NWBFile)`);
  }
  return f;
}

const dataset = (f: Group, p: string): Dataset | null => {
  const o = f.get(p);
  return o instanceof h5wasm.Dataset ? o : null;
};
const group = (f: Group, p: string): Group | null => {
  const o = f.get(p);
  return o instanceof h5wasm.Group ? o : null;
};

/** A DynamicTable column by name, or null. */
function column(table: Group, name: string): Dataset | null {
  return dataset(table, name);
}

/** Describes the file; reads only metadata, the trials and the images, never the counts. */
export function readLayout(f: H5File): NwbLayout {
  const identifier = strings(dataset(f, 'identifier')!)[0];
  const sessionStartTime = strings(dataset(f, 'session_start_time')!)[0];
  const subjectId = dataset(f, 'general/subject/subject_id');
  let notes: NwbLayout['notes'] = null;
  const dc = dataset(f, 'general/data_collection');
  if (dc) {
    try {
      const parsed = JSON.parse(strings(dc)[0]) as Partial<SharedlensNotes>;
      if (parsed.sharedlens?.format === 1) notes = parsed.sharedlens;
    } catch {
      // free text written by another program
    }
  }
  const imageSet = readImages(f);
  const trials = readTrials(f, imageSet);
  const { channels, counts } = readCounts(f);
  return { identifier, sessionStartTime, subject: subjectId ? strings(subjectId)[0] : null, notes, trials, imageSet, channels, counts };
}

/** The Images of the first IndexSeries in stimulus/presentation (or the only Images in stimulus/templates). */
function readImages(f: H5File): NwbLayout['imageSet'] {
  const pres = group(f, 'stimulus/presentation');
  let images: Group | null = null;
  for (const name of pres?.keys() ?? []) {
    const s = group(pres!, name);
    if (typeOf(s) === 'IndexSeries' && s!.keys().includes('indexed_images')) {
      images = group(s!, 'indexed_images');
      break;
    }
  }
  if (!images) {
    const templates = group(f, 'stimulus/templates');
    const all = (templates?.keys() ?? []).map((k) => group(templates!, k)).filter((g) => typeOf(g) === 'Images');
    if (all.length === 1) images = all[0];
  }
  if (!images) return null;
  const order = dataset(images, 'order_of_images');
  let members: Dataset[];
  if (order) {
    const refs = order.value as unknown[];
    members = refs.map((r) => f.dereference(r as never) as unknown as Dataset);
  } else {
    members = images
      .keys()
      .sort()
      .map((k) => dataset(images!, k))
      .filter((d): d is Dataset => d !== null && /Image$/.test(typeOf(d)));
  }
  return {
    name: images.path.split('/').pop()!,
    images: members.map((d) => ({
      id: d.path.split('/').pop()!,
      data: Uint8Array.from(d.value as ArrayLike<number>),
      shape: d.shape ?? [],
      description: asString(attr(d, 'description') ?? ''),
    })),
  };
}

const STIM_COLUMNS = ['stimulus_id', 'image_id', 'stimulus', 'image'];

function readTrials(f: H5File, imageSet: NwbLayout['imageSet']): NwbTrial[] {
  const table = group(f, 'intervals/trials');
  const stimCol = table ? STIM_COLUMNS.map((c) => column(table, c)).find((c) => c !== null) : null;
  if (table && stimCol) {
    const onsets = numbers(column(table, 'start_time')!);
    const stops = numbers(column(table, 'stop_time')!);
    const ids = stimCol.dtype === 'S' || typeof (stimCol.value as unknown[])[0] === 'string' ? strings(stimCol) : numbers(stimCol).map((i) => imageSet?.images[i]?.id ?? String(i));
    const get = (name: string) => column(table, name);
    const trialNo = get('trial') ? numbers(get('trial')!) : null;
    const offsetSeen = get('offset_received') ? numbers(get('offset_received')!) : null;
    const aborted = get('aborted') ? numbers(get('aborted')!) : null;
    const reasons = get('abort_reason') ? strings(get('abort_reason')!) : null;
    const cats = get('category') ? strings(get('category')!) : null;
    return onsets.map((onsetS, i) => ({
      trial: trialNo ? trialNo[i] : i,
      stimulusId: ids[i],
      onsetS,
      offsetS: offsetSeen && !offsetSeen[i] ? null : stops[i],
      aborted: aborted ? aborted[i] !== 0 : false,
      abortReason: reasons?.[i] ?? '',
      category: cats?.[i] || null,
    }));
  }
  const pres = group(f, 'stimulus/presentation');
  for (const name of pres?.keys() ?? []) {
    const s = group(pres!, name);
    if (typeOf(s) !== 'IndexSeries' || !imageSet) continue;
    const idx = numbers(dataset(s!, 'data')!);
    const stamps = dataset(s!, 'timestamps');
    const st = dataset(s!, 'starting_time');
    const times = stamps ? numbers(stamps) : idx.map((_, i) => numbers(st!)[0] + i / Number(attr(st!, 'rate')));
    return idx.map((k, i) => {
      const id = imageSet.images[k]?.id;
      if (id === undefined) throw new NwbLayoutError(`IndexSeries ${name} points at image ${k}, but ${imageSet.name} holds ${imageSet.images.length}`);
      return { trial: i, stimulusId: id, onsetS: times[i], offsetS: null, aborted: false, abortReason: '', category: null };
    });
  }
  throw new NwbLayoutError('no image presentations: need a trials table with a stimulus_id (or image_id) column, or an IndexSeries over Images in stimulus/presentation');
}

function readCounts(f: H5File): { channels: NwbLayout['channels']; counts: NwbCounts } {
  const ecephys = group(f, 'processing/ecephys');
  const chTable = ecephys ? group(ecephys, 'channels') : null;
  const ours = chTable
    ? (() => {
        const ids = strings(column(chTable, 'channel_id')!);
        const labels = strings(column(chTable, 'label')!);
        const areas = column(chTable, 'area') ? strings(column(chTable, 'area')!) : [];
        const depth = column(chTable, 'depth_um') ? numbers(column(chTable, 'depth_um')!) : [];
        return ids.map((id, i) => ({ id, label: labels[i], ...(areas[i] ? { area: areas[i] } : {}), ...(Number.isFinite(depth[i]) ? { depthUm: depth[i] } : {}) }));
      })()
    : null;
  const binned = findBinned(f);
  if (binned) {
    const data = dataset(f, `${binned}/data`)!;
    const [rows, C] = data.shape!;
    const st = dataset(f, `${binned}/starting_time`);
    const ts = dataset(f, `${binned}/timestamps`);
    if (!st && !ts) throw new NwbLayoutError(`${binned} has neither starting_time nor timestamps`);
    const channels = ours && ours.length === C ? ours : Array.from({ length: C }, (_, i) => ({ id: `ch${i + 1}`, label: `column ${i + 1} of ${binned}` }));
    return { channels, counts: { kind: 'binned', path: binned, rows, channels: C, rateHz: st ? Number(attr(st, 'rate')) : NaN, startS: st ? numbers(st)[0] : NaN, timestampsPath: ts ? ts.path : null } };
  }
  const tc = ecephys ? group(ecephys, 'trial_counts') : null;
  if (tc && ours) {
    const resp = column(tc, 'response_counts')!;
    return { channels: ours, counts: { kind: 'trial', path: tc.path, rows: resp.shape![0], channels: resp.shape![1], baseline: column(tc, 'baseline_counts') !== null } };
  }
  const units = group(f, 'units');
  if (units && column(units, 'spike_times') && column(units, 'spike_times_index')) {
    const ids = numbers(column(units, 'id')!);
    const index = numbers(column(units, 'spike_times_index')!);
    const names = ['unit_name', 'label', 'name'].map((c) => column(units, c)).find((c) => c !== null);
    const labels = names ? strings(names) : ids.map((id) => `unit ${id}`);
    const areaCol = ['location', 'area', 'brain_area'].map((c) => column(units, c)).find((c) => c !== null);
    const areas = areaCol ? strings(areaCol) : [];
    const spikes = column(units, 'spike_times')!;
    const n = spikes.shape![0];
    // first and last spike of every unit bound the session; each unit's spike times are sorted
    let firstS = Infinity;
    let lastS = -Infinity;
    let prev = 0;
    for (const end of index) {
      if (end > prev) {
        firstS = Math.min(firstS, Number((spikes.slice([[prev, prev + 1]]) as Float64Array)[0]));
        lastS = Math.max(lastS, Number((spikes.slice([[end - 1, end]]) as Float64Array)[0]));
      }
      prev = end;
    }
    return {
      channels: ids.map((id, i) => ({ id: `unit${id}`, label: labels[i], ...(areas[i] ? { area: areas[i] } : {}) })),
      counts: { kind: 'units', units: ids.length, spikes: n, index, firstS, lastS },
    };
  }
  throw new NwbLayoutError('no spike counts: need a Units table with spike_times, or a TimeSeries of binned counts with unit "spikes" (time x channels) in a processing module or acquisition');
}

/** Path of a 2-D TimeSeries with unit "spikes" (sharedlens' own first). */
function findBinned(f: H5File): string | null {
  const candidates: string[] = [];
  for (const root of ['processing', 'acquisition']) {
    const g = group(f, root);
    for (const k of g?.keys() ?? []) {
      const sub = group(g!, k);
      if (!sub) continue;
      const inner = typeOf(sub) === 'ProcessingModule' ? sub.keys().map((n) => `${root}/${k}/${n}`) : [`${root}/${k}`];
      candidates.push(...inner);
    }
  }
  for (const p of candidates.sort((a, b) => Number(b.endsWith('binned_counts')) - Number(a.endsWith('binned_counts')))) {
    const d = dataset(f, `${p}/data`);
    if (d && d.shape?.length === 2 && asString(attr(d, 'unit') ?? '') === 'spikes') return p;
  }
  return null;
}

/** Rows [from, to) of a 2-D dataset as numbers (row-major). */
export function readRows(f: H5File, path: string, from: number, to: number): ArrayLike<number> {
  return dataset(f, path)!.slice([[from, to], []]) as ArrayLike<number>;
}

/** Values [from, to) of a 1-D dataset. */
export function readValues(f: H5File, path: string, from: number, to: number): ArrayLike<number> {
  return dataset(f, path)!.slice([[from, to]]) as ArrayLike<number>;
}
