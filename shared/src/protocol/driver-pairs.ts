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
  /**
   * How the maps were made, `<method>/<features>` (docs/compute.md, maps), e.g. `layerOcclusion/prediction`:
   * features `prediction` map where the neuron's predicted response falls when a region is removed (each image
   * on its own); `raw`, `centred`, `standardised` the paper's shared-feature vector; absent in explanations
   * recorded before it was kept. See `mapKind`.
   */
  method?: string;
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

/** What a pair's maps show, by their `method` (`<method>/<features>`): a name for the colour bar and a sentence. */
export function mapKind(method: string | undefined): { name: string; explains: string } {
  const features = method?.split('/')[1] ?? 'raw';
  if (features === 'prediction')
    return {
      name: 'model-drive map',
      explains: "how much the neuron's predicted response (its fitted model) falls when the region is removed; each image's map uses that image and the neuron's model only, so both show what drives this neuron, not which features the two images share beyond that",
    };
  if (features === 'predictionShared')
    return { name: 'model-drive map (shared scale)', explains: "how much the neuron's predicted response falls when the region is removed, scaled by how much the other image drives the model above the set's mean" };
  return { name: 'shared-feature map', explains: "how much each pixel carries the features the neuron's model weights and both images share" };
}
