/**
 * Per-channel report of the encoding models: scores (leave-one-stimulus-out correlation, the same over
 * the noise ceiling, the preferred-category generalisation test) and drivers with reference images.
 */
import type { ChannelModel, ChannelStats, ModelSnapshot } from '@sharedlens/shared';
import { findDrivers, referenceImage, type DriverRule } from './drivers.ts';
import type { EncodingConfig, EncodingState } from './encoding.ts';
import { pearson, type NeuronStatsState } from './neuron-stats.ts';
import { buildBasis, chosenAlphas, createRidgeState, neuronModel, predict, type RidgeBasis } from './ridge.ts';

const MIN_CEILING = 0.1;

type CategoryBasis = { basis: RidgeBasis; out: number[] } | null;
const categoryBases = new WeakMap<EncodingState, { refits: number; bases: Map<number, CategoryBasis> }>();

/** Report of every channel; `channels` are the derived statistics of the same state. */
export function modelReport(sessionId: string, stats: NeuronStatsState, enc: EncodingState, channels: ChannelStats[], cfg: EncodingConfig, rule: DriverRule): ModelSnapshot {
  const base = { sessionId, version: enc.version, featureModel: enc.featureSet.modelId, backend: enc.featureSet.backend, refits: enc.refits };
  const ridge = enc.ridge;
  if (!ridge) return { ...base, channels: channels.map((c) => ({ id: c.id, scores: null, drivers: [] })) };
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
    const measured = Float64Array.from(rows, (s) => stats.mean[s * C + c]);
    const looR = pearson(measured, model.looPredictions);
    const k = ch.preferredCategory ? stats.categories.indexOf(ch.preferredCategory) : -1;
    let generalisationR: number | null = null;
    let generalisationStimuli = 0;
    const cb = k >= 0 ? categoryBasis(k) : null;
    if (cb) {
      const y = Float64Array.from(cb.basis.rows, (s) => stats.mean[s * C + c]);
      const m = neuronModel(createRidgeState(cb.basis, 1, y), 0);
      const pred = cb.out.map((s) => predict(m, features.subarray(s * dim, (s + 1) * dim)));
      generalisationR = pearson(pred, cb.out.map((s) => stats.mean[s * C + c]));
      generalisationStimuli = cb.out.length;
    }
    const prefStimuli = k >= 0 ? rows.filter((s) => stats.catOfStim[s] === k) : [];
    const drivers = findDrivers(stats, c, k, rule).map((d) => {
      const ref = referenceImage(model.weights, features, dim, d.stimulus, prefStimuli);
      return {
        stimulusId: stats.stimuli[d.stimulus].id,
        category: stats.stimuli[d.stimulus].category,
        meanResponse: d.mean,
        nTrials: d.nTrials,
        preferredMean: d.preferredMean,
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
        // below a ceiling of 0.1 the ratio is noise (seen: 50 for a channel with no reliable tuning)
        looROverCeiling: looR !== null && ch.noiseCeiling !== null && ch.noiseCeiling >= MIN_CEILING ? looR / ch.noiseCeiling : null,
        nStimuli: rows.length,
        generalisationR,
        generalisationStimuli,
      },
      drivers,
    };
  });
  return { ...base, channels: out };
}
