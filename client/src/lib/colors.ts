/** Okabe-Ito colours (colour-blind safe), one per category in a stable order. */
const PALETTE = ['#E69F00', '#56B4E9', '#009E73', '#CC79A7', '#0072B2', '#D55E00', '#F0E442', '#999999'];
const KNOWN: Record<string, string> = { body: '#E69F00', face: '#56B4E9', object: '#009E73' };

export function categoryColor(category: string | null | undefined, all: string[] = []): string {
  if (!category) return '#bbbbbb';
  return KNOWN[category] ?? PALETTE[(3 + Math.max(0, all.indexOf(category))) % PALETTE.length];
}

/** Viridis-like colour map (perceptually uniform, colour-blind safe): 0..255 -> [r, g, b]. */
const STOPS: [number, number, number][] = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];
export function viridis(v: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, v / 255)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const t = x - i;
  const a = STOPS[i];
  const b = STOPS[i + 1];
  return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
}

/** viridis() of every byte 0..255, as CSS colours low to high (for colour bars). */
export const viridisCss = (stops = 11) => Array.from({ length: stops }, (_, i) => `rgb(${viridis((255 * i) / (stops - 1)).map(Math.round).join(',')})`);

const LUT = (() => {
  const t = new Uint8ClampedArray(256 * 3);
  for (let v = 0; v < 256; v++) t.set(viridis(v).map(Math.round), v * 3);
  return t;
})();

/** Paints a size x size map of bytes 0-255 into a canvas with the viridis colour map. */
export function paintMap(canvas: HTMLCanvasElement, map: Uint8Array, size: number): void {
  const ctx = canvas.getContext('2d')!;
  const img = ctx.createImageData(size, size);
  for (let i = 0; i < size * size; i++) {
    const v = map[i] * 3;
    img.data[i * 4] = LUT[v];
    img.data[i * 4 + 1] = LUT[v + 1];
    img.data[i * 4 + 2] = LUT[v + 2];
    img.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}
