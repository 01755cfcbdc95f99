/**
 * Follow-up suggestions for a session (compute/followup.ts) from its current statistics and encoding
 * models; the candidate pool is the session's stimulus set plus any registered sets whose features are
 * ready. Answers `{ suggestions, notes } | { error }` (notes: why a strategy asked for gave nothing).
 */
import type { Observable } from 'rxjs';
import type { AckError, Suggestion } from '@sharedlens/shared';
import { featuresComplete, knownFeatures, type FeatureSet } from './compute/encoding.ts';
import { suggestWithNotes, type Candidate, type FollowupContext, type Strategy } from './compute/followup.ts';
import { channelStats } from './compute/neuron-stats.ts';
import type { Runtime } from './sinks/session-store.ts';
import type { StimulusSet } from './stimulus-sets.ts';

export interface FollowupAsk {
  count: number;
  strategy?: Strategy;
  mix?: Partial<Record<Strategy, number>>;
  neurons?: string[];
  poolSetIds?: string[];
}

export interface FollowupDeps {
  sets: Map<string, StimulusSet>;
  featuresFor: ((setId: string) => Observable<FeatureSet | null>) | null;
  confirmRepeats: number;
  /** The models' regularisation grid (the improve design's prior before the first fit). */
  alphas: number[];
}

/** Latest value of a replaying observable, if it has one now. */
function current<T>(o: Observable<T>): T | undefined {
  let v: T | undefined;
  o.subscribe((x) => (v = x)).unsubscribe();
  return v;
}

export function suggestFollowups(deps: FollowupDeps, rt: Runtime, ask: FollowupAsk): { suggestions: Suggestion[]; notes: string[] } | { error: AckError } {
  const fail = (code: AckError['code'], message: string) => ({ error: { code, message } });
  const stats = rt.latest;
  const enc = rt.encoding;
  if (!deps.featuresFor) return fail('invalid', 'follow-ups need the encoding models, which are off (compute.features is false)');
  const mix = ask.mix ?? { [ask.strategy ?? 'probe']: 1 };
  if (!stats || !enc) return fail('invalid', 'no encoding models yet for this session: they need the stimulus features, which are being computed');
  // improve needs features only (its design is chosen before any response); probe needs fitted models
  // the candidates and the observed stimuli need their features: wait for the whole set's
  const [known, total] = knownFeatures(enc);
  if (known < total) return fail('invalid', `the stimulus features are still being computed (${known} of ${total}); follow-ups need them all, ask again in a moment`);
  if (!enc.ridge && (mix.probe ?? 0) > 0) return fail('invalid', 'no encoding models yet for this session: probe needs a few stimuli with trials first (improve works from the first trial)');
  const ids = stats.start.channels.map((c) => c.id);
  const unknown = (ask.neurons ?? []).filter((n) => !ids.includes(n));
  if (unknown.length) return fail('unknown-channel', `unknown channel ids: ${unknown.join(', ')}`);
  const neurons = ask.neurons?.length ? ask.neurons.map((n) => ids.indexOf(n)) : ids.map((_, i) => i);
  const { features, dim } = enc.featureSet;
  const pool: Candidate[] = stats.stimuli.map((s, i) => ({ id: s.id, setId: stats.start.stimulusSetId, category: s.category, features: features.subarray(i * dim, (i + 1) * dim) }));
  for (const setId of ask.poolSetIds ?? []) {
    if (setId === stats.start.stimulusSetId) continue;
    const set = deps.sets.get(setId);
    if (!set) return fail('unknown-stimulus', `unknown stimulus set "${setId}"`);
    const fs = current(deps.featuresFor(setId));
    if (!fs || !featuresComplete(fs)) return fail('invalid', `the features of stimulus set "${setId}" are being computed; ask again in a moment`);
    if (fs.dim !== dim || fs.modelId !== enc.featureSet.modelId) return fail('invalid', `stimulus set "${setId}" has features of another model`);
    set.manifest.stimuli.forEach((s, i) => pool.push({ id: s.id, setId, category: s.category, features: fs.features.subarray(i * dim, (i + 1) * dim) }));
  }
  const cs = channelStats(stats);
  const ctx: FollowupContext = {
    stats,
    enc,
    preferred: cs.map((c) => (c.preferredCategory ? stats.categories.indexOf(c.preferredCategory) : -1)),
    pool,
    neurons,
    confirmRepeats: deps.confirmRepeats,
    alphas: deps.alphas,
  };
  return suggestWithNotes(ctx, ask.count, mix);
}
