import { Chart, registerables, type ChartConfiguration } from 'chart.js';

Chart.register(...registerables);
Chart.defaults.animation = false; // live data: redraw at once, no tweening to fall behind

/** What a chart shows, in words (its title and axis titles with units), for screen readers and tests. */
export function describeChart(config: ChartConfiguration): string {
  const o = config.options as { plugins?: { title?: { text?: string } }; scales?: Record<string, { title?: { text?: string } }> } | undefined;
  const axis = (k: string) => o?.scales?.[k]?.title?.text;
  return [o?.plugins?.title?.text, axis('y') && `y: ${axis('y')}`, axis('x') && `x: ${axis('x')}`].filter(Boolean).join('; ');
}

/**
 * A canvas tooltip is invisible to screen readers (and to tests): what the tooltip shows is mirrored into
 * the canvas' aria-description while it is open (e.g. "face-animal-mouse (face) — 3.10 ± 0.40 spikes/window").
 */
const tooltipText = {
  id: 'tooltipText',
  afterDraw(c: Chart) {
    const t = c.tooltip;
    const text = t && t.opacity > 0 ? [...(t.title ?? []), ...(t.body ?? []).flatMap((b) => b.lines)].join(' — ') : '';
    if ((c.canvas.getAttribute('aria-description') ?? '') !== text) c.canvas.setAttribute('aria-description', text);
  },
};

/** Svelte action: a chart.js chart on a canvas, updated in place when the configuration changes. */
export function chart(canvas: HTMLCanvasElement, config: ChartConfiguration) {
  const c = new Chart(canvas, { ...config, plugins: [...(config.plugins ?? []), tooltipText] });
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', describeChart(config));
  return {
    update(next: ChartConfiguration) {
      c.data = next.data;
      c.options = next.options ?? {};
      c.update('none');
      canvas.setAttribute('aria-label', describeChart(next));
    },
    destroy() {
      c.destroy();
    },
  };
}
