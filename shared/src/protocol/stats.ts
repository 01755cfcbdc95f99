/** JSON shapes of the per-neuron statistics, as served by the status endpoint and the dashboard namespace. */

export interface ChannelStats {
  id: string;
  label: string;
  area?: string;
  /** Completed (non-aborted) trials that entered the statistics. */
  nTrials: number;
  /** Mean baseline-subtracted response (spikes per response window) per category; null before any trial. */
  categoryMeans: Record<string, number | null>;
  preferredCategory: string | null;
  /** (R_pref - R_other) / (|R_pref| + |R_other|), trial means; null until both sides have trials. */
  selectivityIndex: number | null;
  /** Why selectivityIndex and dPrime are null (e.g. a stimulus set with one category); null when they are not. */
  selectivityReason: string | null;
  /** (mean_pref - mean_other) / sqrt((var_pref + var_other) / 2), trial responses. */
  dPrime: number | null;
  /** Pearson r across stimuli between mean responses of even and odd repeats. */
  splitHalfR: number | null;
  /**
   * Spearman-Brown corrected split-half r, 2r / (1 + r): the reliability R of the mean responses.
   * A model that predicts the true tuning exactly correlates with the measured means at sqrt(R).
   */
  noiseCeiling: number | null;
  /** Stimuli with repeats in both halves behind splitHalfR. */
  reliabilityStimuli: number;
}

export interface StimulusStats {
  id: string;
  /** The stimulus' category; a set without categories has the single category "all". */
  category: string;
  nTrials: number;
  /** Mean response per channel (channel order of the session), null before any trial. */
  mean: (number | null)[];
  /** Unbiased variance per channel, null below two trials. */
  variance: (number | null)[];
}

/** `damaged`: the recorded log holds unreadable bytes inside (kept untouched; replayable, not resumable). */
export type SessionState = 'live' | 'disconnected' | 'ended' | 'replay' | 'interrupted' | 'damaged';

export interface SessionSnapshot {
  sessionId: string;
  /** For replays: the recorded session being replayed. */
  sourceSessionId?: string;
  rigId: string;
  subject: string;
  stimulusSetId: string;
  startedAt: string;
  state: SessionState;
  categories: string[];
  trialsCompleted: number;
  trialsAborted: number;
  /** Completed trials per second of rig time over the last 10 s. */
  trialsPerSec: number;
  lastSeq: number;
  /** Sequence numbers the rig skipped (reported to it when they happened). */
  seqGaps: number;
  rejected: Record<string, number>;
  channels: ChannelStats[];
  stimuli?: StimulusStats[];
  /** PSTH per category: mean spikes per bin per trial, [category][channel][bin]; binned sessions only. */
  psth?: { binMs: number; startMs: number; byCategory: Record<string, number[][]> };
}

export interface SessionSummary {
  sessionId: string;
  rigId: string;
  subject: string;
  stimulusSetId: string;
  startedAt: string;
  endedAt?: string;
  state: SessionState;
  channels: number;
  records: number;
  trialsCompleted?: number;
  sourceSessionId?: string;
}

export interface StatsDelta {
  sessionId: string;
  trialsCompleted: number;
  trialsAborted: number;
  trialsPerSec: number;
  channels: ChannelStats[];
}

/** Encoding-model scores of one channel (ridge from CNN features to mean responses). */
export interface ModelScores {
  alpha: number;
  /** Leave-one-stimulus-out correlation r of predicted and measured mean responses. */
  looR: number | null;
  /** Normalised correlation r / sqrt(R), R the noise ceiling: 1 for a model that predicts the true tuning (in expectation). */
  normalisedR: number | null;
  /** Fraction of explainable variance explained, sign(r) r^2 / R. */
  fev: number | null;
  /** Why normalisedR and fev are null (e.g. the noise ceiling below the configured minimum reliability); null when they are not. */
  normalisedReason: string | null;
  nStimuli: number;
  /** Fitted on the preferred category only, correlation on out-of-category stimuli (the paper's test). */
  generalisationR: number | null;
  generalisationStimuli: number;
  /** Why generalisationR is null; null when it is not. */
  generalisationReason: string | null;
}

/** The test that gates a channel's drivers: are its preferred category's stimuli above the others? */
export interface SelectivityTest {
  test: 'welch' | 'permutation';
  /** welch: t of preferred vs other stimulus means; permutation: the difference of those means. */
  statistic: number;
  /** One-sided p-value, corrected for picking the preferred category from the data. */
  p: number;
  alpha: number;
  significant: boolean;
  preferredStimuli: number;
  otherStimuli: number;
}

/** An out-of-category driver of a channel (significant at the channel's FDR) and its reference image. */
export interface DriverInfo {
  stimulusId: string;
  category: string;
  meanResponse: number;
  nTrials: number;
  preferredMean: number;
  /** Welch t of the driver's trials against the preferred category's trials, its degrees of freedom. */
  statistic: number;
  df: number;
  /** One-sided p-value of that test. */
  p: number;
  /** Benjamini-Hochberg adjusted p-value among the channel's candidates. */
  q: number;
  referenceId: string | null;
  /** Readout-weighted cosine similarity of driver and reference features. */
  similarity: number | null;
  referenceResponse: number | null;
}

export interface ChannelModel {
  id: string;
  scores: ModelScores | null;
  /** Significant drivers, strongest (highest mean response) first. */
  drivers: DriverInfo[];
  /** The selectivity test that gates the drivers; null when it could not run (see driversReason). */
  selectivity: SelectivityTest | null;
  /** Out-of-category stimuli with enough trials that were tested. */
  driverCandidates: number;
  /** Why there are no drivers; null when there are some. */
  driversReason: string | null;
}

export interface ModelSnapshot {
  sessionId: string;
  /** Increments with every change of the models. */
  version: number;
  featureModel: string;
  backend: string;
  refits: number;
  /**
   * Stimuli of the set: in the models, with features (fewer than `total` while the set's features are
   * still being computed: the models start on those), and all. E.g. "models on 240 of 1,000 images".
   */
  coverage?: { inModels: number; withFeatures: number; total: number };
  channels: ChannelModel[];
}

/** Shared-feature maps of one driver of one channel (METHOD.md step 5), as streamed in `explain:ready`. */
export interface Explanation {
  sessionId: string;
  channelId: string;
  stimulusSetId: string;
  driverId: string;
  referenceId: string;
  /** Readout-weighted cosine similarity of the two images' features. */
  similarity: number;
  driverResponse: number;
  referenceResponse: number | null;
  /** Model version the readout weights came from. */
  modelVersion: number;
  /** How the maps were computed: `method/features` of compute.maps (e.g. 'layer/centred'). */
  method?: string;
  /** True once the channel's readout changed materially since (the maps are being recomputed or retired). */
  stale?: boolean;
  computedAt: string;
  computeMs: number;
  backend: string;
  /** Display maps, size x size, bytes 0-255 on one colour scale shared by both. */
  size: number;
  driverMap: Uint8Array;
  referenceMap: Uint8Array;
}

/**
 * A pair's maps that could not be made, as streamed in `explain:failed`: a map job that timed out (clustered:
 * no worker finished it within cluster.mapJobTimeoutS) or failed. The pair is tried again at the next look.
 */
export interface ExplainFailure {
  sessionId: string;
  channelId: string;
  driverId: string;
  referenceId: string;
  reason: 'timeout' | 'failed';
  /** What went wrong and what to do, for the dashboard's error line. */
  message: string;
  atMs: number;
}

/** One channel in detail (GET /api/sessions/:id/channels/:channelId), for the neuron page. */
export interface ChannelDetail {
  sessionId: string;
  channel: ChannelStats;
  stimuli: { id: string; category: string; nTrials: number; mean: number | null; sem: number | null; predicted: number | null }[];
  /** Mean spikes per bin per trial, per category; binned sessions only. */
  psth: { binMs: number; startMs: number; byCategory: Record<string, number[]> } | null;
  model: ChannelModel | null;
}
