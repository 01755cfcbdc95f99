import { Chart, registerables, type ChartConfiguration } from 'chart.js';

Chart.register(...registerables);
Chart.defaults.animation = false; // live data: redraw at once, no tweening to fall behind

/** Svelte action: a chart.js chart on a canvas, updated in place when the configuration changes. */
export function chart(canvas: HTMLCanvasElement, config: ChartConfiguration) {
  const c = new Chart(canvas, config);
  return {
    update(next: ChartConfiguration) {
      c.data = next.data;
      c.options = next.options ?? {};
      c.update('none');
    },
    destroy() {
      c.destroy();
    },
  };
}
