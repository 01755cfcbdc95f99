/** The drivers gallery's HTTP payloads (`GET /api/sessions/:id/driver-pairs`): pairs without their maps. */

/** One (channel, driver, reference) pair as listed; its two maps travel as one PNG at `mapsUrl(...)`. */
export interface DriverPair {
  /** `channelId/driverId/referenceId`, the key of the pair's maps. */
  key: string;
  channelId: string;
  area: string | null;
  /** The channel's preferred category now. */
  preferredCategory: string | null;
  driverId: string;
  driverCategory: string | null;
  referenceId: string;
  referenceCategory: string | null;
  /** Readout-weighted cosine similarity of the two images' CNN features (-1..1). */
  similarity: number;
  /** Mean baseline-subtracted response to the driver (spikes per response window). */
  driverResponse: number;
  referenceResponse: number | null;
  modelVersion: number;
  computedAt: string;
  computeMs: number;
  backend: string;
  /** Map side in pixels. */
  size: number;
  /** Why the pair left the gallery; absent for current pairs. */
  retired?: string;
  /** True while the channel's readout has moved since these maps were made (they are being recomputed). */
  stale?: boolean;
}

/** One page of pairs, filtered and sorted on the server. */
export interface DriverPairsPage {
  sessionId: string;
  /** The session's stimulus set (the cards' image URLs). */
  stimulusSetId: string;
  /** Pairs matching the filters. */
  total: number;
  offset: number;
  limit: number;
  /** Current and retired pairs of the session, before filtering. */
  current: number;
  retired: number;
  /** Map jobs waiting or running. */
  queued: number;
  /** Recording areas among the current pairs. */
  areas: string[];
  pairs: DriverPair[];
}

/**
 * Side of the maps the gallery's cards ask for (`?px=`): the cards show them at 180 css px, so half of the
 * 224-pixel maps costs a quarter of the bytes and no visible detail; the enlarged view asks for the full size.
 */
export const CARD_MAP_PX = 112;
/** Side of a pair's maps on its card: CARD_MAP_PX, or the maps' own size when smaller. */
export const cardMapPx = (p: Pick<DriverPair, 'size'>) => Math.min(CARD_MAP_PX, p.size);

/**
 * URL of a pair's maps (`?px=N` for N by N maps, shrunk on the server): a greyscale PNG, 2 x size by size pixels, driver left and reference right, values
 * 0-255 on one colour scale shared by both.
 */
export const mapsUrl = (sessionId: string, p: Pick<DriverPair, 'channelId' | 'driverId' | 'referenceId'>) =>
  `/api/sessions/${encodeURIComponent(sessionId)}/driver-pairs/maps/${[p.channelId, p.driverId, p.referenceId].map(encodeURIComponent).join('/')}`;
