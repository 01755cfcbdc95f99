/**
 * Per-channel report of the encoding models: scores (leave-one-stimulus-out correlation, normalised by the
 * square root of the noise ceiling, the fraction of explainable variance, the preferred-category
 * generalisation test) and the drivers' tests with reference images.
 */
import type { ChannelModel, ChannelStats, ModelSnapshot } from '@sharedlens/shared';
import { findDrivers, referenceImage, type DriverRule } from './drivers.ts';
import type { EncodingConfig, EncodingState } from './encoding.ts';
import { normalisedScores, pearson, type NeuronStatsState } from './neuron-stats.ts';
import { buildBasis, chosenAlphas, createRidgeState, neuronModel, predict, type NeuronModel, type RidgeBasis } from './ridge.ts';
import { referenceImages, type ReferenceCache } from './reference-cache.ts';

/** Below this noise ceiling the normalised scores are null unless the rule says otherwise (a ratio over a ceiling near 0 is noise). */
const MIN_RELIABILITY = 0.1;

/** How drivers are tested, and the reliability below which normalised scores are not reported. */
export type ReportRule = DriverRule & { minReliability?: number };

type CategoryBasis = { basis: RidgeBasis; out: number[] } | null;
const categoryBases = new WeakMap<EncodingState, { refits: number; bases: Map<number, CategoryBasis> }>();

/** Optional parts of a report: the reference images from a cache (workers/report-worker.ts), each channel's model as computed. */
export interface ReportExtras {
  references?: ReferenceCache;
  onModel?: (c: number, model: NeuronModel) => void;
}

/** Report of every channel; `channels` are the derived statistics of the same state. */
export function modelReport(sessionId: string, stats: NeuronStatsState, enc: EncodingState, channels: ChannelStats[], cfg: EncodingConfig, rule: ReportRule, extras: ReportExtras = {}): ModelSnapshot {
  const base = { sessionId, version: enc.version, featureModel: enc.featureSet.modelId, backend: enc.featureSet.backend, refits: enc.refits };
  const ridge = enc.ridge;
  if (!ridge) return { ...base, channels: channels.map((c) => ({ id: c.id, scores: null, drivers: [], selectivity: null, driverCandidates: 0, driversReason: 'no encoding models yet' })) };
  const { C } = stats;
  const { features, dim } = enc.featureSet;
  const rows = ridge.basis.rows;
  const alphaIdx = chosenAlphas(ridge);
  // the per-category bases depend only on the stimuli in the model, so they live until the next refit
  // (every snapshot and every map job asks for a report; rebuilding them each time repeats eigendecompositions)
  let cached = categoryBases.get(enc);
  if (!cached || cached.refits !== enc.refits) categoryBases.set(enc, (cached = { refits: enc.refits, bases: new Map() }));
  const catBases = cached.bases;
  const categoryBasis = (k: number) => {
    if (!catBases.has(k)) {
      const inCat = rows.filter((s) => stats.catOfStim[s] === k);
      const out = rows.filter((s) => stats.catOfStim[s] !== k);
      catBases.set(k, inCat.length >= cfg.minStimuli && out.length >= 3 ? { basis: buildBasis(features, dim, inCat, cfg.alphas), out } : null);
    }
    return catBases.get(k)!;
  };
  const out: ChannelModel[] = channels.map((ch, c) => {
    const model = neuronModel(ridge, c, alphaIdx[c]);
    extras.onModel?.(c, model);
    const measured = Float64Array.from(rows, (s) => stats.mean[s * C + c]);
    const looR = pearson(measured, model.looPredictions);
    const k = ch.preferredCategory ? stats.categories.indexOf(ch.preferredCategory) : -1;
    let generalisationR: number | null = null;
    let generalisationStimuli = 0;
    const cb = k >= 0 && stats.categories.length > 1 ? categoryBasis(k) : null;
    const generalisationReason =
      stats.categories.length < 2
        ? 'the stimulus set has one category: generalisation fits the preferred category and tests the others'
        : k < 0
          ? 'no preferred category yet'
          : cb
            ? null
            : `too few stimuli in the model: ${cfg.minStimuli} in the preferred category and 3 outside it needed`;
    if (cb) {
      const y = Float64Array.from(cb.basis.rows, (s) => stats.mean[s * C + c]);
      const m = neuronModel(createRidgeState(cb.basis, 1, y), 0);
      const pred = cb.out.map((s) => predict(m, features.subarray(s * dim, (s + 1) * dim)));
      generalisationR = pearson(pred, cb.out.map((s) => stats.mean[s * C + c]));
      generalisationStimuli = cb.out.length;
    }
    const prefStimuli = k >= 0 ? rows.filter((s) => stats.catOfStim[s] === k) : [];
    const tests = findDrivers(stats, c, k, rule);
    // all of the channel's drivers against its preferred stimuli at once, recomputed only when its readout changed
    const refs = extras.references ? referenceImages(extras.references, c, model.weights, features, dim, tests.drivers.map((d) => d.stimulus), prefStimuli) : null;
    const drivers = tests.drivers.map((d, i) => {
      const ref = refs ? refs[i] : referenceImage(model.weights, features, dim, d.stimulus, prefStimuli);
      return {
        stimulusId: stats.stimuli[d.stimulus].id,
        category: stats.stimuli[d.stimulus].category,
        meanResponse: d.mean,
        nTrials: d.nTrials,
        preferredMean: d.preferredMean,
        statistic: d.t,
        df: d.df,
        p: d.p,
        q: d.q,
        referenceId: ref ? stats.stimuli[ref.stimulus].id : null,
        similarity: ref ? ref.similarity : null,
        referenceResponse: ref ? stats.mean[ref.stimulus * C + c] : null,
      };
    });
    return {
      id: ch.id,
      scores: {
        alpha: model.alpha,
        looR,
        ...normalisedScores(looR, ch.noiseCeiling, rule.minReliability ?? MIN_RELIABILITY),
        nStimuli: rows.length,
        generalisationR,
        generalisationStimuli,
        generalisationReason: generalisationR === null && !generalisationReason ? 'correlation undefined (constant predictions or responses)' : generalisationReason,
      },
      drivers,
      selectivity: tests.selectivity,
      driverCandidates: tests.candidates,
      driversReason: tests.reason,
    };
  });
  return { ...base, channels: out };
}
