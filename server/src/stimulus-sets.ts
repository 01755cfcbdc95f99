/**
 * Stimulus sets: each subfolder of the stimulus directory with a manifest.json (docs/stimuli.md; its JSON
 * schema is docs/stimulus-manifest.schema.json). Manifests are validated, every problem named by file,
 * entry and field, and every file must exist inside its folder.
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { SINGLE_CATEGORY, stimulusManifestSchema, type StimulusManifest } from '@sharedlens/shared';

export interface StimulusSet {
  manifest: StimulusManifest;
  dir: string;
}

/** Loads all sets; returns them with one problem string per folder that was skipped. */
export function loadStimulusSets(root: string): { sets: Map<string, StimulusSet>; problems: string[] } {
  const sets = new Map<string, StimulusSet>();
  const problems: string[] = [];
  if (!fs.existsSync(root)) return { sets, problems: [`stimulus directory ${root} does not exist`] };
  for (const name of fs.readdirSync(root)) {
    const dir = path.join(root, name);
    const file = path.join(dir, 'manifest.json');
    if (!fs.existsSync(file)) continue;
    let raw: unknown;
    try {
      raw = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      problems.push(`${file}: ${(e as Error).message}`);
      continue;
    }
    const checked = parseManifest(raw);
    if ('errors' in checked) {
      problems.push(`${file}: ${checked.errors.join('; ')}`);
      continue;
    }
    const missing = checked.manifest.stimuli.filter((s) => !fs.existsSync(path.join(dir, s.file)));
    if (missing.length) {
      problems.push(`${file}: missing image files ${missing.map((s) => s.file).join(', ')}`);
      continue;
    }
    sets.set(checked.manifest.id, { manifest: checked.manifest, dir });
  }
  return { sets, problems };
}

/**
 * Validates a parsed manifest. Each error names the entry and the field, e.g.
 * `stimuli[3] (id "face-7"), field category: Too small: expected string to have >=1 characters`.
 * A manifest must give a category for every stimulus or for none.
 */
export function parseManifest(raw: unknown): { manifest: StimulusManifest } | { errors: string[] } {
  const parsed = stimulusManifestSchema.safeParse(raw);
  const rawStimuli = (raw as { stimuli?: unknown })?.stimuli;
  const entries = Array.isArray(rawStimuli) ? rawStimuli : [];
  const errors = parsed.success ? [] : parsed.error.issues.map((i) => manifestIssue(i, entries));
  const withCategory = entries.filter((s) => s && typeof s === 'object' && 'category' in s).length;
  if (withCategory > 0 && withCategory < entries.length) {
    const first = entries.findIndex((s) => !(s && typeof s === 'object' && 'category' in s));
    errors.push(`${entryName(first, entries)}, field category: missing while ${withCategory} of ${entries.length} stimuli have one (give every stimulus a category, or none)`);
  }
  return errors.length || !parsed.success ? { errors } : { manifest: parsed.data };
}

function entryName(index: number, entries: unknown[]): string {
  const id = (entries[index] as { id?: unknown } | undefined)?.id;
  return `stimuli[${index}]${typeof id === 'string' ? ` (id "${id}")` : ''}`;
}

function manifestIssue(issue: z.core.$ZodIssue, entries: unknown[]): string {
  const [head, index, ...rest] = issue.path;
  if (head === 'stimuli' && typeof index === 'number') return `${entryName(index, entries)}, field ${rest.length ? rest.join('.') : '(entry)'}: ${issue.message}`;
  return `field ${issue.path.length ? issue.path.join('.') : '(manifest)'}: ${issue.message}`;
}

/** The manifest's JSON schema (draft 2020-12) as a manifest file is written: category optional. */
export function manifestJsonSchema(): Record<string, unknown> {
  return { title: 'sharedlens stimulus set manifest (stimuli/<set>/manifest.json)', ...z.toJSONSchema(stimulusManifestSchema, { io: 'input' }) };
}

/** True when every stimulus of the set has the single category of a set without categories. */
export const uncategorised = (manifest: StimulusManifest) => manifest.stimuli.every((s) => s.category === SINGLE_CATEGORY);

/** Absolute path of one stimulus image, resolved through the manifest (never from a raw request path). */
export function stimulusFile(set: StimulusSet, stimulusId: string): string | null {
  const s = set.manifest.stimuli.find((x) => x.id === stimulusId);
  return s ? path.join(set.dir, s.file) : null;
}
