/**
 * Builds a stimulus set from a folder of images (`npm run stimuli -- add`): finds the images, takes the
 * categories from the first-level subfolders or a CSV file (or none), checks that every image decodes with
 * sharp, and registers the set by copying it into the stimulus directory with its manifest.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import type { StimulusManifest } from '@sharedlens/shared';
import { parseManifest } from './stimulus-sets.ts';

/** File endings taken as images (what sharp decodes). */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp', '.gif', '.tif', '.tiff', '.avif', '.svg'];

export type CategorySource = { kind: 'none' } | { kind: 'subfolders' } | { kind: 'csv'; file: string };

export class ImportError extends Error {}

/** Image files under `folder`, relative paths with forward slashes, sorted. */
export function listImages(folder: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(folder, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.name.startsWith('.')) continue;
      if (e.isDirectory()) walk(r);
      else if (e.isFile() && IMAGE_EXTENSIONS.includes(path.extname(e.name).toLowerCase())) out.push(r);
    }
  };
  walk('');
  return out.sort();
}

/** Splits one CSV line (RFC 4180 quoting: "a, b" and "" inside quotes). */
export function csvFields(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') (cur += '"'), i++;
      else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') out.push(cur.trim()), (cur = '');
    else cur += ch;
  }
  out.push(cur.trim());
  return out;
}

/** file -> category from a CSV with a header naming the columns `file` and `category`. */
export function readCategoryCsv(csvFile: string): Map<string, string> {
  const lines = fs.readFileSync(csvFile, 'utf8').split(/\r?\n/).filter((l) => l.trim() !== '');
  const header = csvFields(lines[0] ?? '').map((h) => h.toLowerCase());
  const fi = header.indexOf('file');
  const ci = header.indexOf('category');
  if (fi < 0 || ci < 0) throw new ImportError(`${csvFile}: the header must name the columns file and category (found: ${header.join(', ')})`);
  const map = new Map<string, string>();
  lines.slice(1).forEach((line, i) => {
    const f = csvFields(line);
    if (!f[fi] || !f[ci]) throw new ImportError(`${csvFile}, line ${i + 2}: file and category are both needed`);
    map.set(f[fi].replace(/\\/g, '/'), f[ci]);
  });
  return map;
}

/** A stimulus id from a relative path: lower case, runs of other characters as '-', no extension. */
export const stimulusIdOf = (rel: string) =>
  rel
    .replace(/\.[^./]+$/, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 128) || 'stimulus';

/** The manifest of a folder of images; throws ImportError naming every problem. */
export function buildManifest(folder: string, id: string, categories: CategorySource): StimulusManifest {
  if (!fs.existsSync(folder) || !fs.statSync(folder).isDirectory()) throw new ImportError(`${folder} is not a folder`);
  const files = listImages(folder);
  if (!files.length) throw new ImportError(`${folder}: no images (${IMAGE_EXTENSIONS.join(' ')})`);
  const problems: string[] = [];
  let categoryOf: (rel: string) => string | undefined = () => undefined;
  if (categories.kind === 'subfolders') {
    const top = files.filter((f) => !f.includes('/'));
    if (top.length) problems.push(`--categories subfolders: images outside a subfolder have no category: ${top.slice(0, 5).join(', ')}${top.length > 5 ? ` and ${top.length - 5} more` : ''}`);
    categoryOf = (rel) => rel.split('/')[0];
  } else if (categories.kind === 'csv') {
    const map = readCategoryCsv(categories.file);
    const unlisted = files.filter((f) => !map.has(f));
    const missing = [...map.keys()].filter((f) => !files.includes(f));
    if (unlisted.length) problems.push(`${categories.file} gives no category for ${unlisted.slice(0, 5).join(', ')}${unlisted.length > 5 ? ` and ${unlisted.length - 5} more` : ''}`);
    if (missing.length) problems.push(`${categories.file} names images that are not in ${folder}: ${missing.slice(0, 5).join(', ')}`);
    categoryOf = (rel) => map.get(rel);
  }
  const seen = new Map<string, string>();
  const stimuli = files.map((file) => {
    const sid = stimulusIdOf(file);
    if (seen.has(sid)) problems.push(`${file} and ${seen.get(sid)} give the same stimulus id "${sid}"; rename one`);
    seen.set(sid, file);
    const category = categoryOf(file);
    return { id: sid, file, ...(category ? { category } : {}) };
  });
  if (problems.length) throw new ImportError(problems.join('\n'));
  const checked = parseManifest({ id, description: `Imported from ${path.basename(path.resolve(folder))}: ${files.length} images`, stimuli });
  if ('errors' in checked) throw new ImportError(checked.errors.join('\n'));
  return checked.manifest;
}

/** Decodes every image fully; returns one line per image that does not decode. */
export async function undecodable(folder: string, manifest: StimulusManifest): Promise<string[]> {
  const bad: string[] = [];
  for (const s of manifest.stimuli) {
    try {
      await sharp(path.join(folder, s.file)).raw().toBuffer();
    } catch (e) {
      bad.push(`${s.file}: ${(e as Error).message}`);
    }
  }
  return bad;
}

/**
 * Registers a set: copies the images to `<stimulusDir>/<id>/` and writes the manifest there last, so a
 * half-copied set is never loaded. Refuses an id that is already registered.
 */
export function registerSet(stimulusDir: string, folder: string, manifest: StimulusManifest): string {
  const dest = path.join(stimulusDir, manifest.id);
  if (fs.existsSync(path.join(dest, 'manifest.json'))) throw new ImportError(`a stimulus set "${manifest.id}" is already registered in ${dest}; choose another --id`);
  for (const s of manifest.stimuli) {
    fs.mkdirSync(path.dirname(path.join(dest, s.file)), { recursive: true });
    fs.copyFileSync(path.join(folder, s.file), path.join(dest, s.file));
  }
  const tmp = path.join(dest, 'manifest.json.tmp');
  fs.writeFileSync(tmp, `${JSON.stringify(manifest, null, 1)}\n`);
  fs.renameSync(tmp, path.join(dest, 'manifest.json'));
  return dest;
}
