/**
 * The new list with the previous objects kept where nothing shown changed, so immutable components (the
 * grid's tiles) re-render only the channels whose displayed values moved: at 384 channels a trial changes
 * every channel's trial count but few tiles' two-decimal figures.
 */
export function keepUnchanged<T extends { id: string }>(prev: T[], next: T[], shown: (x: T) => string = (x) => JSON.stringify(x)): T[] {
  const old = new Map(prev.map((x) => [x.id, x]));
  return next.map((x) => {
    const o = old.get(x.id);
    return o && shown(o) === shown(x) ? o : x;
  });
}

const f2 = (v: number | null | undefined) => (v == null ? '' : v.toFixed(2));

/** What a grid tile shows of a channel (see ChannelTile.svelte): its identity, category and two-decimal figures. */
export const tileShows = (c: { id: string; label: string; area?: string; preferredCategory: string | null; selectivityIndex: number | null; noiseCeiling: number | null; selectivityReason?: string | null }) =>
  [c.id, c.label, c.area ?? '', c.preferredCategory ?? '', f2(c.selectivityIndex), f2(c.noiseCeiling), c.selectivityReason ?? ''].join('|');
