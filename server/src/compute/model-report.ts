/**
 * Per-channel report of the encoding models: scores (leave-one-stimulus-out correlation, normalised by the
 * square root of the noise ceiling, the fraction of explainable variance, the preferred-category
 * generalisation test) and the drivers' tests with reference images.
 */
import type { ChannelModel, ChannelStats, ModelSnapshot } from '@sharedlens/shared';
import { findDrivers, referenceImage, type DriverRule } from './drivers.ts';
import { hasFeatures, knownFeatures, type EncodingConfig, type EncodingState } from './encoding.ts';
import { normalisedScores, pearson, type NeuronStatsState } from './neuron-stats.ts';
import { buildBasis, chosenAlphas, createRidgeState, neuronModels, type NeuronModel, type RidgeBasis } from './ridge.ts';
import { referenceImages, type ReferenceCache } from './reference-cache.ts';

/** Below this noise ceiling the normalised scores are null unless the rule says otherwise (a ratio over a ceiling near 0 is noise). */
const MIN_RELIABILITY = 0.1;

/** How drivers are tested, and the reliability below which normalised scores are not reported. */
export type ReportRule = DriverRule & { minReliability?: number };

/**
 * A category's basis, the stimuli outside it, and their kernel against it: kernel[j n + i] = (x_out_j -
 * xMean) . xc_i, so that a model of the category predicts out-stimulus j as yMean + sum_i kernel[j n + i] c_i
 * from its dual coefficients c (predict(neuronModel(...)) without the n x features weights and out x
 * features products per channel: about half of a report's time at 1,000 stimuli, by a CPU profile).
 */
type CategoryBasis = { basis: RidgeBasis; out: number[]; kernel: Float64Array } | null;

/** The kernel of CategoryBasis: O(out x n x features), once per basis. */
function outKernel(basis: RidgeBasis, features: Float32Array, dim: number, out: number[]): Float64Array {
  const { n, xc, xMean } = basis;
  const kernel = new Float64Array(out.length * n);
  const x = new Float64Array(dim);
  out.forEach((s, j) => {
    for (let d = 0; d < dim; d++) x[d] = features[s * dim + d] - xMean[d];
    for (let i = 0; i < n; i++) {
      let v = 0;
      const o = i * dim;
      for (let d = 0; d < dim; d++) v += x[d] * xc[o + d];
      kernel[j * n + i] = v;
    }
  });
  return kernel;
}
const categoryBases = new WeakMap<EncodingState, { key: string; bases: Map<number, CategoryBasis> }>();

/** Category bases built (all reports): a report whose models' rows did not change builds none. */
export const categoryBasisCounts = { built: 0 };

/** Optional parts of a report: the reference images from a cache (workers/report-worker.ts), each channel's model as computed. */
export interface ReportExtras {
  references?: ReferenceCache;
  onModel?: (c: number, model: NeuronModel) => void;
}

/** Report of every channel; `channels` are the derived statistics of the same state. */
export function modelReport(sessionId: string, stats: NeuronStatsState, enc: EncodingState, channels: ChannelStats[], cfg: EncodingConfig, rule: ReportRule, extras: ReportExtras = {}): ModelSnapshot {
  const ridge = enc.ridge;
  const [withFeatures, total] = knownFeatures(enc);
  const coverage = { inModels: ridge?.basis.n ?? 0, withFeatures, total };
  const base = { sessionId, version: enc.version, featureModel: enc.featureSet.modelId, backend: enc.featureSet.backend, refits: enc.refits, coverage };
  if (!ridge) return { ...base, channels: channels.map((c) => ({ id: c.id, scores: null, drivers: [], selectivity: null, driverCandidates: 0, driversReason: 'no encoding models yet' })) };
  const { C } = stats;
  const { features, dim } = enc.featureSet;
  const rows = ridge.basis.rows;
  const alphaIdx = chosenAlphas(ridge);
  // the per-category bases depend only on the stimuli in the model, so they live until its rows change (an
  // absorb appends one, a refit replaces them): every snapshot and every map job asks for a report, and
  // rebuilding them each time repeats eigendecompositions
  const key = `${enc.refits}|${rows.length}|${ridge.basis.exactN}`;
  let cached = categoryBases.get(enc);
  if (!cached || cached.key !== key) categoryBases.set(enc, (cached = { key, bases: new Map() }));
  const catBases = cached.bases;
  const categoryBasis = (k: number) => {
    if (!catBases.has(k)) {
      const inCat = rows.filter((s) => stats.catOfStim[s] === k);
      const out = rows.filter((s) => stats.catOfStim[s] !== k);
      const basis = inCat.length >= cfg.minStimuli && out.length >= 3 ? buildBasis(features, dim, inCat, cfg.alphas) : null;
      if (basis) categoryBasisCounts.built++;
      catBases.set(k, basis ? { basis, out, kernel: outKernel(basis, features, dim, out) } : null);
    }
    return catBases.get(k)!;
  };
  const models = neuronModels(ridge, alphaIdx);
  const out: ChannelModel[] = channels.map((ch, c) => {
    const model = models[c];
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
      const st = createRidgeState(cb.basis, 1, y);
      const a = chosenAlphas(st)[0];
      const n = cb.basis.n;
      const dual = Float64Array.from({ length: n }, (_, i) => st.r[a][i] * cb.basis.g[a][i]);
      const yMean = y.reduce((acc, v) => acc + v / n, 0);
      const pred = cb.out.map((_, j) => {
        let p = 0;
        for (let i = 0; i < n; i++) p += cb.kernel[j * n + i] * dual[i];
        return yMean + p;
      });
      generalisationR = pearson(pred, cb.out.map((s) => stats.mean[s * C + c]));
      generalisationStimuli = cb.out.length;
    }
    const prefStimuli = k >= 0 ? rows.filter((s) => stats.catOfStim[s] === k) : [];
    const found = findDrivers(stats, c, k, rule);
    // drivers (and so their maps) only among stimuli with features: a reference image needs them
    const withF = enc.withFeatures ? found.drivers.filter((d) => hasFeatures(enc, d.stimulus)) : found.drivers;
    const tests = withF.length === found.drivers.length ? found : { ...found, drivers: withF, reason: withF.length ? found.reason : `${found.drivers.length} drivers found, their stimuli's features still being computed` };
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
