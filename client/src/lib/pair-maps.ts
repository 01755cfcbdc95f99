/**
 * Shared-feature maps of one driver pair, fetched as one greyscale PNG (driver left, reference right, values
 * 0-255 on the pair's shared scale) only when a card comes on screen, decoded once and kept in a small cache.
 */
export interface PairMaps {
  driver: Uint8Array;
  reference: Uint8Array;
  /** Side of each map as fetched (px). */
  size: number;
}
const cache = new Map<string, Promise<PairMaps>>();
/** Decoded maps kept in the page: 2 x 112^2 bytes each for the cards' maps, so about 8 MB at most. */
const MAX_CACHED = 320;

/**
 * Loads and splits a pair's maps; `version` (e.g. computedAt) refetches maps recomputed under the same key;
 * `px` asks the server for maps shrunk to px by px (the cards), none for the full size (the enlarged view).
 */
export function pairMaps(url: string, version: string, px?: number): Promise<PairMaps> {
  const key = `${url}@${version}:${px ?? 'full'}`;
  let p = cache.get(key);
  if (p) {
    // most recently used last, so the oldest leaves first
    cache.delete(key);
    cache.set(key, p);
    return p;
  }
  // ahead of the cards' stimulus images in the browser's six connections (first paint of the gallery)
  p = fetch(`${url}?v=${encodeURIComponent(version)}${px ? `&px=${px}` : ''}`, { priority: 'high' } as RequestInit)
    .then((r) => {
      if (!r.ok) throw new Error(`maps ${r.status}`);
      return r.blob();
    })
    // no colour management: the grey levels are data, not a photograph
    .then((b) => createImageBitmap(b, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' }))
    .then((bmp) => {
      const c = new OffscreenCanvas(bmp.width, bmp.height);
      const ctx = c.getContext('2d')!;
      ctx.drawImage(bmp, 0, 0);
      const rgba = ctx.getImageData(0, 0, bmp.width, bmp.height).data;
      // read before close(): a closed bitmap's sides are 0
      const size = bmp.height;
      bmp.close();
      const driver = new Uint8Array(size * size);
      const reference = new Uint8Array(size * size);
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          driver[y * size + x] = rgba[(y * 2 * size + x) * 4];
          reference[y * size + x] = rgba[(y * 2 * size + size + x) * 4];
        }
      return { driver, reference, size };
    });
  p.catch(() => cache.delete(key));
  cache.set(key, p);
  while (cache.size > MAX_CACHED) cache.delete(cache.keys().next().value!);
  return p;
}

/** Svelte action: calls `onVisible` once, when the element first comes within 200 px of the viewport. */
export function whenVisible(el: HTMLElement, onVisible: () => void) {
  const io = new IntersectionObserver(
    (entries) => {
      if (entries.some((e) => e.isIntersecting)) {
        io.disconnect();
        onVisible();
      }
    },
    { rootMargin: '200px' },
  );
  io.observe(el);
  return { destroy: () => io.disconnect() };
}
