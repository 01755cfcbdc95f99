/**
 * The `sharedlens` processing module of an export: per-channel statistics and model scores, per-stimulus
 * means and variances, PSTHs per category, drivers with their reference images, readout weights and the
 * shared-feature maps as images. Missing values (a statistic not yet defined) are NaN.
 */
import type { ModelScores } from '@sharedlens/shared';
import type { SessionAnalysis } from './session-analysis.ts';
import { dynamicTable, typed, typedGroup, type H5Group } from './nwb-hdf5.ts';

const num = (v: number | null | undefined): number => (v === null || v === undefined ? NaN : v);

/** Writes processing/sharedlens; appends a note for every part it could not write. */
export function writeAnalysis(f: H5Group, a: SessionAnalysis, notes: string[]): void {
  const mod = typedGroup(f.get('processing') as H5Group, 'sharedlens', 'ProcessingModule', {
    description: 'sharedlens analysis: per-channel statistics and encoding-model scores, per-stimulus responses, PSTHs, drivers, readout weights and shared-feature maps (docs/nwb.md)',
  });
  const snap = a.snapshot;
  const C = snap.channels.length;
  const K = snap.categories.length;
  const scores: (ModelScores | null)[] = a.models?.channels.map((c) => c.scores) ?? new Array<null>(C).fill(null);
  const gates = a.models?.channels.map((c) => c.selectivity) ?? new Array<null>(C).fill(null);
  dynamicTable(mod, 'channel_statistics', {
    description: `per channel: statistics over ${snap.trialsCompleted} completed trials (${snap.trialsAborted} aborted); category_means columns in the order ${JSON.stringify(snap.categories)}; model columns NaN without a fitted model`,
    n: C,
    columns: [
      { name: 'channel_id', description: 'channel id', strings: snap.channels.map((c) => c.id) },
      { name: 'n_trials', description: 'completed trials in the statistics', values: snap.channels.map((c) => c.nTrials), dtype: '<i' },
      { name: 'preferred_category', description: 'preferred category (empty: none yet)', strings: snap.channels.map((c) => c.preferredCategory ?? '') },
      { name: 'category_means', description: `mean baseline-subtracted response per category, spikes per response window; categories ${JSON.stringify(snap.categories)}`, values: snap.channels.flatMap((c) => snap.categories.map((k) => num(c.categoryMeans[k]))), shape: [C, Math.max(1, K)] },
      { name: 'selectivity_index', description: '(R_pref - R_other) / (|R_pref| + |R_other|)', values: snap.channels.map((c) => num(c.selectivityIndex)) },
      { name: 'd_prime', description: "d' between preferred and other categories", values: snap.channels.map((c) => num(c.dPrime)) },
      { name: 'split_half_r', description: 'Pearson r across stimuli between even and odd repeats', values: snap.channels.map((c) => num(c.splitHalfR)) },
      { name: 'noise_ceiling', description: 'Spearman-Brown corrected split-half r', values: snap.channels.map((c) => num(c.noiseCeiling)) },
      { name: 'reliability_stimuli', description: 'stimuli behind split_half_r', values: snap.channels.map((c) => c.reliabilityStimuli), dtype: '<i' },
      { name: 'model_alpha', description: 'ridge regularisation of the encoding model', values: scores.map((s) => num(s?.alpha)) },
      { name: 'model_loo_r', description: 'leave-one-stimulus-out correlation of predicted and measured mean responses', values: scores.map((s) => num(s?.looR)) },
      { name: 'model_normalised_r', description: 'model_loo_r / sqrt(noise ceiling)', values: scores.map((s) => num(s?.normalisedR)) },
      { name: 'model_fev', description: 'fraction of explainable variance explained, sign(r) r^2 / noise ceiling', values: scores.map((s) => num(s?.fev)) },
      { name: 'model_generalisation_r', description: 'fitted on the preferred category, correlation on out-of-category stimuli', values: scores.map((s) => num(s?.generalisationR)) },
      { name: 'selectivity_test_p', description: "p-value of the selectivity test that gates the channel's drivers (NaN: not run)", values: gates.map((g) => num(g?.p)) },
      { name: 'selectivity_test_significant', description: '1 when the selectivity test passed', values: gates.map((g) => (g?.significant ? 1 : 0)), dtype: '<B' },
    ],
  });
  const stimuli = snap.stimuli ?? [];
  dynamicTable(mod, 'stimulus_statistics', {
    description: 'per stimulus: mean and unbiased variance of the response per channel (columns in channel order; NaN: too few trials)',
    n: stimuli.length,
    columns: [
      { name: 'stimulus_id', description: 'stimulus id', strings: stimuli.map((s) => s.id) },
      { name: 'category', description: 'stimulus category', strings: stimuli.map((s) => s.category) },
      { name: 'n_trials', description: 'completed trials of this stimulus', values: stimuli.map((s) => s.nTrials), dtype: '<i' },
      { name: 'mean', description: 'mean response per channel, spikes per response window', values: stimuli.flatMap((s) => s.mean.map(num)), shape: [stimuli.length, C] },
      { name: 'variance', description: 'unbiased variance of the response per channel', values: stimuli.flatMap((s) => s.variance.map(num)), shape: [stimuli.length, C] },
    ],
  });
  if (snap.psth) {
    const cats = Object.keys(snap.psth.byCategory);
    const B = snap.psth.byCategory[cats[0]]?.[0]?.length ?? 0;
    dynamicTable(mod, 'psth', {
      description: `PSTH per category: mean spikes per ${snap.psth.binMs} ms bin per trial, [category, channel, bin]; the first bin starts ${snap.psth.startMs} ms from onset`,
      n: cats.length,
      columns: [
        { name: 'category', description: 'category', strings: cats },
        { name: 'bin_start_ms', description: 'start of each bin relative to onset, ms', values: cats.flatMap(() => Array.from({ length: B }, (_, i) => snap.psth!.startMs + i * snap.psth!.binMs)), shape: [cats.length, Math.max(1, B)] },
        { name: 'psth', description: 'mean spikes per bin per trial, [category, channel, bin]', values: cats.flatMap((k) => snap.psth!.byCategory[k].flat()), shape: [cats.length, C, Math.max(1, B)] },
      ],
    });
  }
  if (!a.models) notes.push('no encoding models for this session: model columns are NaN, no drivers or readout weights');
  else writeDrivers(mod, a);
  if (a.readouts) {
    const rows = a.readouts.weights.map((w, c) => ({ c, w })).filter((r): r is { c: number; w: Float32Array } => r.w !== null);
    const D = rows[0]?.w.length ?? 0;
    dynamicTable(mod, 'readout_weights', {
      description: `ridge readout weights of each channel's encoding model on the ${D}-d CNN features of ${a.readouts.featureModel}`,
      n: rows.length,
      columns: [
        { name: 'channel_id', description: 'channel id', strings: rows.map((r) => snap.channels[r.c].id) },
        { name: 'weights', description: 'readout weights (float32)', values: concat(rows.map((r) => r.w)), dtype: '<f', shape: [rows.length, Math.max(1, D)] },
      ],
    });
  }
  if (a.explanations.length) writeMaps(mod, a);
  else notes.push('no shared-feature maps computed for this session');
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function writeDrivers(mod: H5Group, a: SessionAnalysis): void {
  const rows = a.models!.channels.flatMap((c) => c.drivers.map((d) => ({ channel: c.id, d })));
  dynamicTable(mod, 'drivers', {
    description: `out-of-category drivers of each channel and their reference images (stimulus ids of stimulus/templates); models version ${a.models!.version}, features ${a.models!.featureModel}`,
    n: rows.length,
    columns: [
      { name: 'channel_id', description: 'channel id', strings: rows.map((r) => r.channel) },
      { name: 'stimulus_id', description: 'the driver stimulus', strings: rows.map((r) => r.d.stimulusId) },
      { name: 'category', description: "the driver's category", strings: rows.map((r) => r.d.category) },
      { name: 'mean_response', description: "the driver's mean response", values: rows.map((r) => r.d.meanResponse) },
      { name: 'n_trials', description: "the driver's trials", values: rows.map((r) => r.d.nTrials), dtype: '<i' },
      { name: 'preferred_mean', description: 'mean response to the preferred category', values: rows.map((r) => r.d.preferredMean) },
      { name: 'statistic', description: "Welch t of the driver's trials against the preferred category's trials", values: rows.map((r) => r.d.statistic) },
      { name: 'p', description: 'one-sided p-value of that test', values: rows.map((r) => r.d.p) },
      { name: 'q', description: "Benjamini-Hochberg adjusted p-value among the channel's candidates", values: rows.map((r) => r.d.q) },
      { name: 'reference_id', description: 'the reference image (empty: none)', strings: rows.map((r) => r.d.referenceId ?? '') },
      { name: 'similarity', description: 'readout-weighted cosine similarity of driver and reference features', values: rows.map((r) => num(r.d.similarity)) },
      { name: 'reference_response', description: "the reference's mean response", values: rows.map((r) => num(r.d.referenceResponse)) },
    ],
  });
}

function writeMaps(mod: H5Group, a: SessionAnalysis): void {
  const images = typedGroup(mod, 'shared_feature_maps', 'Images', { description: 'shared-feature maps (uint8 0-255, one colour scale per driver/reference pair); rows of shared_feature_map_pairs name them' });
  const names: { driver: string; reference: string }[] = [];
  a.explanations.forEach((e, i) => {
    const pair = { driver: `pair${i}_driver`, reference: `pair${i}_reference` };
    for (const [name, data, about] of [
      [pair.driver, e.driverMap, `driver ${e.driverId} of ${e.channelId}`],
      [pair.reference, e.referenceMap, `reference ${e.referenceId} of ${e.channelId}`],
    ] as const) {
      const d = images.create_dataset({ name, data: Uint8Array.from(data), shape: [e.size, e.size], dtype: '<B' });
      typed(d, 'GrayscaleImage');
      d.create_attribute('description', about);
    }
    names.push(pair);
  });
  const ex = a.explanations;
  dynamicTable(mod, 'shared_feature_map_pairs', {
    description: 'one row per driver/reference pair with both shared-feature maps (images in shared_feature_maps)',
    n: ex.length,
    columns: [
      { name: 'channel_id', description: 'channel id', strings: ex.map((e) => e.channelId) },
      { name: 'driver_id', description: 'driver stimulus id', strings: ex.map((e) => e.driverId) },
      { name: 'reference_id', description: 'reference stimulus id', strings: ex.map((e) => e.referenceId) },
      { name: 'similarity', description: 'readout-weighted cosine similarity', values: ex.map((e) => e.similarity) },
      { name: 'driver_response', description: "the driver's mean response", values: ex.map((e) => e.driverResponse) },
      { name: 'reference_response', description: "the reference's mean response (NaN: none)", values: ex.map((e) => num(e.referenceResponse)) },
      { name: 'model_version', description: 'model version of the readout weights', values: ex.map((e) => e.modelVersion), dtype: '<i' },
      { name: 'method', description: 'how the maps were computed (compute.maps method/features)', strings: ex.map((e) => e.method ?? '') },
      { name: 'driver_map', description: 'name of the driver map in shared_feature_maps', strings: names.map((n) => n.driver) },
      { name: 'reference_map', description: 'name of the reference map in shared_feature_maps', strings: names.map((n) => n.reference) },
    ],
  });
}
