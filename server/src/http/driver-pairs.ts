/**
 * `/api/sessions/:id/driver-pairs`: the drivers gallery's pairs, paged, filtered and sorted on the server,
 * and each pair's two shared-feature maps as one small greyscale PNG fetched only for cards on screen
 * (issue 16: one JSON of every map was 35.7 MB for 266 pairs and froze the page).
 */
import { createHash } from 'node:crypto';
import { Router } from 'express';
import sharp from 'sharp';
import { cardMapPx, type Explanation } from '@sharedlens/shared';
import { channelStats } from '../compute/neuron-stats.ts';
import { classifyPairs, pairKey, queryPairs, type PairQuery, type PairRow } from '../compute/driver-pairs.ts';
import type { Runtime, SessionStore } from '../sinks/session-store.ts';
import { apiError } from './api-error.ts';

export interface DriverPairsRouterDeps {
  store: SessionStore;
  /** Computed maps of a session, keyed as the map jobs key them. */
  results: Map<string, Map<string, Explanation>>;
  /** Map jobs waiting or running. */
  queued: () => number;
  /** Counted warning for a rejected request. */
  log: (msg: string, fields: Record<string, unknown>) => void;
}

const MAX_LIMIT = 200;
/** Smallest map side one may ask for (below it a map shows nothing). */
const MIN_MAP_PX = 16;
const SORTS = new Set(['channel', 'similarity', 'strength']);

/** Current and retired pairs of a runtime. */
export function pairsOf(store: SessionStore, results: DriverPairsRouterDeps['results'], rt: Runtime): { current: PairRow[]; retired: PairRow[] } {
  const st = rt.latest;
  const categories = new Map((st?.stimuli ?? []).map((s) => [s.id, s.category]));
  return classifyPairs(results.get(rt.id)?.values() ?? [], st ? channelStats(st) : [], store.models(rt), (id) => categories.get(id));
}

/**
 * Greyscale PNG of a pair's maps, driver left and reference right (2 x px by px pixels, values 0-255 on the
 * pair's shared colour scale); about 10-20 kB for 224-pixel maps against 133 kB of base64 each. `px` below
 * the maps' size shrinks each map on its own (sharp, area-averaging kernel) for the gallery's cards, which show
 * them at 180 css px; the enlarged view asks for the full size.
 */
export async function mapsPng(e: Explanation, px = e.size): Promise<Buffer> {
  const n = e.size;
  const shrink = (m: Uint8Array) =>
    px === n ? Promise.resolve(Buffer.from(m.buffer, m.byteOffset, n * n)) : sharp(m, { raw: { width: n, height: n, channels: 1 } }).resize(px, px, { kernel: 'mitchell' }).extractChannel(0).raw().toBuffer();
  const [d, r] = await Promise.all([shrink(e.driverMap), shrink(e.referenceMap)]);
  const both = Buffer.alloc(2 * px * px);
  for (let y = 0; y < px; y++) {
    both.set(d.subarray(y * px, (y + 1) * px), y * 2 * px);
    both.set(r.subarray(y * px, (y + 1) * px), y * 2 * px + px);
  }
  // level 6 with adaptive filters: within 5% of level 9's size at a fifth of its time for smooth maps (bench/dashboard)
  return sharp(both, { raw: { width: 2 * px, height: px, channels: 1 } }).toColourspace('b-w').png({ compressionLevel: 6, adaptiveFiltering: true }).toBuffer();
}

/** Strong validator of a pair's maps: they change only when recomputed (a new computedAt). */
export const mapsEtag = (e: Pick<Explanation, 'channelId' | 'driverId' | 'referenceId' | 'computedAt' | 'size'>, px = e.size) =>
  `"${createHash('sha1').update(`${pairKey(e)}@${e.computedAt}${px === e.size ? '' : `:${px}`}`).digest('base64url').slice(0, 20)}"`;

/** Routes mounted at /api/sessions: GET /:id/driver-pairs, GET /:id/driver-pairs/maps/:channelId/:driverId/:referenceId. */
export function driverPairsRouter(deps: DriverPairsRouterDeps): Router {
  const router = Router();
  const pngs = new WeakMap<Explanation, Map<number, Promise<Buffer>>>();
  const pngOf = (e: Explanation, px = e.size) => {
    let bySize = pngs.get(e);
    if (!bySize) pngs.set(e, (bySize = new Map()));
    let png = bySize.get(px);
    if (!png) {
      bySize.set(px, (png = mapsPng(e, px)));
      png.catch(() => bySize.delete(px));
    }
    return png;
  };
  /** The newest computed maps of each pair key of a session. */
  const newestByKey = (sessionId: string) => {
    const out = new Map<string, Explanation>();
    for (const e of deps.results.get(sessionId)?.values() ?? []) {
      const k = pairKey(e);
      const had = out.get(k);
      if (!had || had.computedAt < e.computedAt) out.set(k, e);
    }
    return out;
  };
  router.get('/:id/driver-pairs', (req, res) => {
    const rt = deps.store.get(req.params.id);
    if (!rt) return apiError(res, 404, 'unknown-session', `no live session or replay "${req.params.id}"`);
    const q = req.query as Record<string, string | undefined>;
    const offset = q.offset === undefined ? 0 : Number(q.offset);
    const limit = q.limit === undefined ? 24 : Number(q.limit);
    const minSimilarity = q.minSimilarity === undefined || q.minSimilarity === '' ? undefined : Number(q.minSimilarity);
    const problem =
      !Number.isInteger(offset) || offset < 0 ? `offset must be a whole number >= 0, got "${q.offset}"`
      : !Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT ? `limit must be a whole number 1..${MAX_LIMIT}, got "${q.limit}"`
      : minSimilarity !== undefined && !Number.isFinite(minSimilarity) ? `minSimilarity must be a number, got "${q.minSimilarity}"`
      : q.sort !== undefined && !SORTS.has(q.sort) ? `sort must be one of ${[...SORTS].join(', ')}, got "${q.sort}"`
      : null;
    if (problem) {
      deps.log('driver-pairs request rejected', { sessionId: rt.id, problem });
      return apiError(res, 400, 'bad-query', problem);
    }
    const query: PairQuery = { ...(q.channel ? { channel: q.channel } : {}), ...(q.area ? { area: q.area } : {}), ...(q.category ? { category: q.category } : {}), ...(minSimilarity !== undefined ? { minSimilarity } : {}), ...(q.sort ? { sort: q.sort as PairQuery['sort'] } : {}) };
    const { current, retired } = pairsOf(deps.store, deps.results, rt);
    const wantRetired = q.retired === '1' || q.retired === 'true';
    const rows = queryPairs(wantRetired ? retired : current, query);
    const shown = rows.slice(offset, offset + limit);
    // the cards on this page ask for their maps next: their PNGs are encoded meanwhile (first paint)
    const newest = newestByKey(rt.id);
    for (const p of shown) {
      const e = newest.get(p.key);
      if (e) pngOf(e, cardMapPx(e)).catch(() => {});
    }
    // revalidated on every load (ETag from the body): an unchanged page costs a 304, not its JSON again
    res.set('Cache-Control', 'no-cache');
    res.json({
      sessionId: rt.id,
      stimulusSetId: rt.start.stimulusSetId,
      total: rows.length,
      offset,
      limit,
      current: current.length,
      retired: retired.length,
      queued: deps.queued(),
      areas: [...new Set(current.map((r) => r.area).filter((a): a is string => !!a))].sort(),
      pairs: shown,
    });
  });
  router.get('/:id/driver-pairs/maps/:channelId/:driverId/:referenceId', async (req, res, next) => {
    const rt = deps.store.get(req.params.id);
    if (!rt) return apiError(res, 404, 'unknown-session', `no live session or replay "${req.params.id}"`);
    const key = pairKey(req.params);
    const e = newestByKey(rt.id).get(key);
    if (!e) return apiError(res, 404, 'unknown-pair', `no maps for ${key} in session ${rt.id}`);
    const pxQuery = req.query.px;
    const px = pxQuery === undefined ? e.size : Number(pxQuery);
    if (!Number.isInteger(px) || px < MIN_MAP_PX || px > e.size) {
      const problem = `px must be a whole number ${MIN_MAP_PX}..${e.size} (the maps' size), got "${String(pxQuery)}"`;
      deps.log('driver-pairs request rejected', { sessionId: rt.id, problem });
      return apiError(res, 400, 'bad-query', problem);
    }
    // maps asked for by version (?v=computedAt, as the dashboard asks) never change under that URL: a
    // revisit is served from the browser's cache; without it (or for an older version) the browser
    // revalidates with the ETag and an unchanged pair costs a 304
    res.set('ETag', mapsEtag(e, px));
    res.set('Cache-Control', req.query.v === e.computedAt ? 'private, max-age=31536000, immutable' : 'private, no-cache');
    if (req.fresh) return res.status(304).end();
    try {
      res.type('png').send(await pngOf(e, px));
    } catch (err) {
      next(err);
    }
  });
  return router;
}
