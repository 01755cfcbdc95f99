/** `/api/stimuli`: registered stimulus sets, their manifests and images, and rescanning for new sets. */
import fs from 'node:fs';
import path from 'node:path';
import { Router } from 'express';
import type { Logger } from 'pino';
import type { Refusals } from '../auth/guards.ts';
import { loadStimulusSets, stimulusFile, type StimulusSet } from '../stimulus-sets.ts';
import { apiError } from './api-error.ts';

export interface StimuliRouterDeps {
  stimulusDir: string;
  stimulusSets: Map<string, StimulusSet>;
  logger: Logger;
  /** Called with the ids of sets a rescan registered (the features cache is warmed for them). */
  onRegistered?: (ids: string[]) => void;
  refused: Refusals;
}

/** The real path of a stimulus file when it lies inside its set's real folder (symlinks resolved), else null. */
export function containedFile(set: StimulusSet, file: string): string | null {
  try {
    const real = fs.realpathSync(file);
    const dir = fs.realpathSync(set.dir);
    return real.startsWith(dir + path.sep) && fs.statSync(real).isFile() ? real : null;
  } catch {
    return null;
  }
}

/** Routes under /api/stimuli: list, POST /rescan, one set's manifest, one stimulus image. */
export function stimuliRouter(deps: StimuliRouterDeps): Router {
  const { stimulusSets, logger } = deps;
  const router = Router();
  router.get('/', (_req, res) => {
    res.json([...stimulusSets.values()].map((s) => ({ id: s.manifest.id, description: s.manifest.description, stimuli: s.manifest.stimuli.length, categories: [...new Set(s.manifest.stimuli.map((x) => x.category))] })));
  });
  // registering extra images: put a folder with a manifest.json under the stimulus directory, then rescan
  router.post('/rescan', (_req, res) => {
    const fresh = loadStimulusSets(deps.stimulusDir);
    const added = [...fresh.sets.keys()].filter((id) => !stimulusSets.has(id));
    for (const id of added) stimulusSets.set(id, fresh.sets.get(id)!);
    for (const p of fresh.problems) logger.error(`stimulus set skipped: ${p}`);
    if (added.length) logger.info({ added }, 'stimulus sets registered');
    if (added.length) deps.onRegistered?.(added);
    res.json({ sets: [...stimulusSets.keys()], added, problems: fresh.problems });
  });
  router.get('/:setId', (req, res) => {
    const set = stimulusSets.get(req.params.setId);
    if (!set) return apiError(res, 404, 'unknown-stimulus', `no stimulus set "${req.params.setId}"`);
    res.json(set.manifest);
  });
  router.get('/:setId/:stimulusId/image', (req, res) => {
    const set = stimulusSets.get(req.params.setId);
    const file = set ? stimulusFile(set, req.params.stimulusId) : null;
    if (!file) return apiError(res, 404, 'unknown-stimulus', `no stimulus "${req.params.stimulusId}" in set "${req.params.setId}"`);
    // a symlink (or a later swap of the file) must not serve what lies outside the set's folder
    const real = containedFile(set!, file);
    if (!real) {
      deps.refused.refuse('outside-set', `stimulus file of "${req.params.stimulusId}" resolves outside set "${req.params.setId}"`, { setId: req.params.setId, stimulusId: req.params.stimulusId });
      return apiError(res, 404, 'unknown-stimulus', `no stimulus "${req.params.stimulusId}" in set "${req.params.setId}"`);
    }
    res.sendFile(real);
  });
  return router;
}
