/**
 * Stimulus sets: each subfolder of the stimulus directory with a manifest.json (id, file, category per
 * image). Manifests are validated and every file must exist inside its folder.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fieldErrors, stimulusManifestSchema, type StimulusManifest } from '@sharedlens/shared';

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
    const parsed = stimulusManifestSchema.safeParse(raw);
    if (!parsed.success) {
      problems.push(`${file}: ${fieldErrors(parsed.error).join('; ')}`);
      continue;
    }
    const missing = parsed.data.stimuli.filter((s) => !fs.existsSync(path.join(dir, s.file)));
    if (missing.length) {
      problems.push(`${file}: missing image files ${missing.map((s) => s.file).join(', ')}`);
      continue;
    }
    sets.set(parsed.data.id, { manifest: parsed.data, dir });
  }
  return { sets, problems };
}

/** Absolute path of one stimulus image, resolved through the manifest (never from a raw request path). */
export function stimulusFile(set: StimulusSet, stimulusId: string): string | null {
  const s = set.manifest.stimuli.find((x) => x.id === stimulusId);
  return s ? path.join(set.dir, s.file) : null;
}
