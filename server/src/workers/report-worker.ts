/**
 * The model-report worker thread: the per-channel report of the encoding models (compute/model-report.ts:
 * every channel's readout, scores, generalisation test, driver tests and reference images), which grows
 * with channels x stimuli x features, off the event loop that acknowledges rig events. It keeps per
 * session the stimulus features (sent once), the reference-image cache (compute/reference-cache.ts) and
 * the per-category bases, so a report recomputes only what changed.
 * In: ReportJob (workers/report-client.ts). Out: `{ id, type: 'report', report, weights, recomputed }` or
 * `{ id, type: 'error', message }`.
 */
import { parentPort } from 'node:worker_threads';
import { modelReport } from '../compute/model-report.ts';
import { createReferenceCache, type ReferenceCache } from '../compute/reference-cache.ts';
import { channelStats } from '../compute/neuron-stats.ts';
import type { EncodingState } from '../compute/encoding.ts';
import type { RidgeState } from '../compute/ridge.ts';
import type { ReportJob } from './report-client.ts';

interface SessionCache {
  features: Float32Array | null;
  /** The statistics' per-stimulus arrays as of the last job (jobs after the first send changed rows only). */
  stats: { mean: Float64Array; m2: Float64Array; halfSum: [Float64Array, Float64Array] } | null;
  refs: ReferenceCache;
  /** The models' encoding state as the report sees it; replaced when the basis rows change (the category bases are cached per object). */
  enc: EncodingState | null;
  rowsKey: string;
  xc: Float64Array;
  xMean: Float64Array;
}

const sessions = new Map<string, SessionCache>();

/** Centred features of the basis rows and their means (what the fitted basis holds; rebuilt when the rows change). */
function centred(features: Float32Array, D: number, rows: number[]): { xc: Float64Array; xMean: Float64Array } {
  const n = rows.length;
  const xMean = new Float64Array(D);
  for (const r of rows) for (let d = 0; d < D; d++) xMean[d] += features[r * D + d] / n;
  const xc = new Float64Array(n * D);
  rows.forEach((r, i) => {
    for (let d = 0; d < D; d++) xc[i * D + d] = features[r * D + d] - xMean[d];
  });
  return { xc, xMean };
}

parentPort!.on('message', (job: ReportJob | { type: 'forget'; sessionId: string }) => {
  if (job.type === 'forget') return void sessions.delete(job.sessionId);
  try {
    let s = sessions.get(job.sessionId);
    if (!s) sessions.set(job.sessionId, (s = { features: null, stats: null, refs: createReferenceCache(job.minWeightCosine), enc: null, rowsKey: '', xc: new Float64Array(0), xMean: new Float64Array(0) }));
    if (job.features && !job.featureRows) s.features = job.features;
    if (!s.features) throw new Error('report job without the stimulus features');
    // rows that arrived since (the set's features still being computed)
    if (job.features && job.featureRows) job.featureRows.forEach((row, k) => s.features!.set(job.features!.subarray(k * job.dim, (k + 1) * job.dim), row * job.dim));
    if (!job.statsRows) s.stats = { mean: job.stats.mean, m2: job.stats.m2, halfSum: job.stats.halfSum };
    else {
      if (!s.stats) throw new Error('report job with changed statistics rows but no statistics before them');
      const C = job.stats.C;
      const kept = s.stats;
      job.statsRows.forEach((row, i) => {
        const from = job.stats.mean.subarray(i * C, (i + 1) * C);
        kept.mean.set(from, row * C);
        kept.m2.set(job.stats.m2.subarray(i * C, (i + 1) * C), row * C);
        kept.halfSum[0].set(job.stats.halfSum[0].subarray(i * C, (i + 1) * C), row * C);
        kept.halfSum[1].set(job.stats.halfSum[1].subarray(i * C, (i + 1) * C), row * C);
      });
      job.stats = { ...job.stats, mean: kept.mean, m2: kept.m2, halfSum: kept.halfSum };
    }
    const m = job.model;
    const featureSet = { features: s.features, dim: job.dim, modelId: job.modelId, backend: job.backend };
    let ridge: RidgeState | null = null;
    if (m) {
      const rowsKey = `${m.refits}|${m.rows.join(',')}`;
      if (rowsKey !== s.rowsKey || !s.enc) {
        Object.assign(s, centred(s.features, job.dim, m.rows), { rowsKey });
        s.enc = null;
      }
      const n = m.rows.length;
      const N = job.stats.C;
      // only the chosen regularisation's residuals are needed (neuronModel reads them); the others stay empty
      const r = m.alphas.map(() => new Float64Array(0));
      for (let t = 0; t < N; t++) {
        const a = m.alphaIdx[t];
        if (!r[a].length) r[a] = new Float64Array(N * n);
        r[a].set(m.rChosen.subarray(t * n, (t + 1) * n), t * n);
      }
      // neuronModel needs the rows' features, g and the residuals; no operators (nothing is refreshed here)
      ridge = { basis: { rows: m.rows, n, D: job.dim, alphas: m.alphas, cap: n, exactN: n, xc: s.xc, xCenter: s.xMean, xMean: s.xMean, kinv: [], z: [], gamma: [], g: m.g }, N, y: m.y, r, loss: m.loss };
    }
    const enc: EncodingState = s.enc ?? { featureSet, ridge, rowOf: new Int32Array(job.stats.stimuli.length), withFeatures: null, pending: 0, trialsSinceRefit: 0, version: 0, refits: 0 };
    Object.assign(enc, { featureSet, ridge, withFeatures: job.ready, version: job.version, refits: m?.refits ?? 0 });
    s.enc = enc;
    const D = job.dim;
    const weights = new Float32Array(job.stats.C * D);
    const before = s.refs.recomputed;
    const report = modelReport(job.sessionId, job.stats, enc, channelStats(job.stats), job.config, job.rule, { references: s.refs, onModel: (c, model) => weights.set(model.weights, c * D) });
    // serialised here too: GET /models sends this text as it is, the event loop never stringifies a report
    parentPort!.postMessage({ id: job.id, type: 'report', report, json: JSON.stringify(report), weights, recomputed: s.refs.recomputed - before, extended: s.refs.extended }, [weights.buffer]);
  } catch (e) {
    parentPort!.postMessage({ id: job.id, type: 'error', message: (e as Error).message });
  }
});
