import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadStimulusSets } from '../server/src/stimulus-sets.ts';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const tmpDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'sharedlens-bench-'));
export const demoStimuli = loadStimulusSets(path.join(root, 'stimuli')).sets.get('demo')!.manifest.stimuli;
