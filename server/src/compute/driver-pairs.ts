/**
 * Which computed shared-feature map pairs the drivers gallery shows: one card per current (channel,
 * driver); pairs whose driver or reference no longer fits the channel are retired with a reason (issue 16:
 * 39 of 266 cards showed a "driver" from the channel's current preferred category, 50 a reference outside
 * it, and only 157 were distinct channel/driver pairs). Plain functions, no streams or sockets.
 */
import type { ChannelStats, DriverPair, Explanation, ModelSnapshot } from '@sharedlens/shared';

/** A pair as the API lists it (the wire type). */
export type PairRow = DriverPair;

export type PairSort = 'channel' | 'similarity' | 'strength';

export interface PairQuery {
  channel?: string;
  area?: string;
  /** Category of the driver image. */
  category?: string;
  minSimilarity?: number;
  sort?: PairSort;
}

/** The key of a pair's maps. */
export const pairKey = (e: Pick<Explanation, 'channelId' | 'driverId' | 'referenceId'>) => `${e.channelId}/${e.driverId}/${e.referenceId}`;

/**
 * Splits computed pairs into the current ones (at most one per channel and driver: the newest that still
 * holds) and retired ones with the reason. A pair holds while its driver lies outside the channel's
 * current preferred category, its reference inside it, and (once models exist) the channel's model still
 * lists the driver with that reference. Example: ch042 turns face-preferring, so its pair with driver
 * face-animal-mouse is retired "face-animal-mouse is face, now ch042's preferred category".
 */
export function classifyPairs(
  explanations: Iterable<Explanation>,
  channels: ChannelStats[],
  models: ModelSnapshot | null,
  categoryOf: (stimulusId: string) => string | undefined,
): { current: PairRow[]; retired: PairRow[] } {
  const stats = new Map(channels.map((c) => [c.id, c]));
  const modelOf = new Map((models?.channels ?? []).map((c) => [c.id, c]));
  const groups = new Map<string, Explanation[]>();
  for (const e of explanations) {
    const k = `${e.channelId}/${e.driverId}`;
    const g = groups.get(k);
    if (g) g.push(e);
    else groups.set(k, [e]);
  }
  const current: PairRow[] = [];
  const retired: PairRow[] = [];
  for (const group of groups.values()) {
    group.sort((a, b) => (a.computedAt < b.computedAt ? 1 : a.computedAt > b.computedAt ? -1 : b.modelVersion - a.modelVersion));
    let shown = false;
    for (const e of group) {
      const ch = stats.get(e.channelId);
      const row: PairRow = {
        key: pairKey(e),
        channelId: e.channelId,
        area: ch?.area ?? null,
        preferredCategory: ch?.preferredCategory ?? null,
        driverId: e.driverId,
        driverCategory: categoryOf(e.driverId) ?? null,
        referenceId: e.referenceId,
        referenceCategory: categoryOf(e.referenceId) ?? null,
        similarity: e.similarity,
        driverResponse: e.driverResponse,
        referenceResponse: e.referenceResponse,
        modelVersion: e.modelVersion,
        computedAt: e.computedAt,
        computeMs: e.computeMs,
        backend: e.backend,
        ...(e.method ? { method: e.method } : {}),
        size: e.size,
        ...(e.stale ? { stale: true } : {}),
      };
      const reason = retiredBecause(row, modelOf.get(e.channelId)?.drivers, models !== null, shown);
      if (reason) retired.push({ ...row, retired: reason });
      else {
        current.push(row);
        shown = true;
      }
    }
  }
  return { current, retired };
}

function retiredBecause(p: PairRow, drivers: { stimulusId: string; referenceId: string | null }[] | undefined, haveModels: boolean, superseded: boolean): string | null {
  const pref = p.preferredCategory;
  if (pref && p.driverCategory === pref) return `${p.driverId} is ${pref}, now ${p.channelId}'s preferred category`;
  if (pref && p.referenceCategory && p.referenceCategory !== pref) return `reference ${p.referenceId} is ${p.referenceCategory}, outside ${p.channelId}'s preferred category (${pref})`;
  if (haveModels) {
    const d = drivers?.find((x) => x.stimulusId === p.driverId);
    if (!d) return `${p.driverId} is no longer among ${p.channelId}'s drivers`;
    if (d.referenceId && d.referenceId !== p.referenceId) return `${p.channelId}'s reference for ${p.driverId} is now ${d.referenceId}`;
  }
  if (superseded) return `newer maps of ${p.channelId} and ${p.driverId} replace these`;
  return null;
}

// one collator (localeCompare with options builds one per call: 31 ms of a 1,152-pair page in the bench's profile)
const collator = new Intl.Collator('en', { numeric: true });

/** Filters and sorts pair rows (similarity and strength descending, channel ascending). */
export function queryPairs(rows: PairRow[], q: PairQuery): PairRow[] {
  const channel = q.channel?.toLowerCase();
  const out = rows.filter(
    (r) =>
      (!channel || r.channelId.toLowerCase().includes(channel)) &&
      (!q.area || r.area === q.area) &&
      (!q.category || r.driverCategory === q.category) &&
      (q.minSimilarity === undefined || r.similarity >= q.minSimilarity),
  );
  const byChannel = (a: PairRow, b: PairRow) => collator.compare(a.channelId, b.channelId) || collator.compare(a.driverId, b.driverId);
  const sort = q.sort ?? 'channel';
  return out.sort(sort === 'similarity' ? (a, b) => b.similarity - a.similarity || byChannel(a, b) : sort === 'strength' ? (a, b) => b.driverResponse - a.driverResponse || byChannel(a, b) : byChannel);
}
