/**
 * Model score history of a session, per channel, over the whole session and bounded: when the history is
 * full every other point is dropped and only every 2nd, 4th, ... model version is kept from then on, so it
 * always spans the session at an even resolution (issue 16: the neuron page showed the last 20-25 trials).
 */

export interface ScoreHistory {
  /** Most points kept. */
  max: number;
  /** Keep one model version in `stride`. */
  stride: number;
  seen: number;
  trials: number[];
  /** Per channel: held-out r and normalised r at each kept point. */
  looR: Map<string, (number | null)[]>;
  normalisedR: Map<string, (number | null)[]>;
}

export const createScoreHistory = (max = 400): ScoreHistory => ({ max, stride: 1, seen: 0, trials: [], looR: new Map(), normalisedR: new Map() });

/** Adds one model version's scores at `trials` completed trials (a version at the same trial count replaces the last point). */
export function addScores(h: ScoreHistory, trials: number, channels: { id: string; scores: { looR: number | null; normalisedR: number | null } | null }[]): ScoreHistory {
  const last = h.trials.length - 1;
  const replace = last >= 0 && h.trials[last] === trials;
  if (!replace && h.seen++ % h.stride !== 0) return h;
  if (!replace) h.trials.push(trials);
  const n = h.trials.length;
  for (const c of channels) {
    for (const [map, v] of [[h.looR, c.scores?.looR ?? null], [h.normalisedR, c.scores?.normalisedR ?? null]] as const) {
      let list = map.get(c.id);
      if (!list) map.set(c.id, (list = []));
      while (list.length < n - 1) list.push(null);
      list[n - 1] = v;
    }
  }
  if (h.trials.length > h.max) {
    const keep = (_: unknown, i: number) => i % 2 === 0;
    h.trials = h.trials.filter(keep);
    for (const map of [h.looR, h.normalisedR]) for (const [k, v] of map) map.set(k, v.filter(keep));
    h.stride *= 2;
  }
  return h;
}
