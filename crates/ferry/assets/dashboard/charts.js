// Small line charts of the service's metric history (SVG, no library).

import { h, s, rate } from './dom.js';

const COLORS = ['#2563eb', '#dc2626', '#059669', '#7c3aed'];
export function labelText(labels) {
  return (labels || '').replace(/^\{|\}$/g, '').replace(/"/g, '') || 'all';
}
// Per-second increase of a counter: every series summed, a reset counted from its new value.
export function rates(series) {
  const byTime = new Map();
  for (const s of series) {
    for (let i = 1; i < s.points.length; i++) {
      const [t0, a] = s.points[i - 1];
      const [t1, b] = s.points[i];
      const inc = b >= a ? b - a : b;
      const dt = (t1 - t0) / 1000;
      if (dt > 0) byTime.set(t1, (byTime.get(t1) || 0) + inc / dt);
    }
  }
  return [{ name: 'per second', points: [...byTime.entries()].sort((x, y) => x[0] - y[0]) }];
}
export function chart(title, series, show) {
  // A summary's quantiles: the median and p99 only.
  const quantiles = series.filter((x) => /quantile="0\.(5|99)"/.test(x.labels));
  const shown = quantiles.length ? quantiles : series;
  const lines = show === 'rate'
    ? rates(shown)
    : shown.slice(0, 4).map((s) => ({ name: labelText(s.labels), points: s.points }));
  const all = lines.flatMap((l) => l.points);
  const W = 300, H = 70;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': title });
  let last = '–';
  if (all.length) {
    const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
    const vmax = Math.max(...all.map((p) => p[1]), 1e-9);
    const x = (t) => (t1 === t0 ? W : ((t - t0) / (t1 - t0)) * W);
    const y = (v) => H - 4 - (v / vmax) * (H - 8);
    lines.forEach((l, i) => {
      if (!l.points.length) return;
      const d = l.points.map((p, j) => `${j ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join('');
      svg.append(s('path', { d, class: 'line', stroke: COLORS[i % COLORS.length] }, s('title', { text: l.name })));
    });
    last = lines.map((l) => (l.points.length ? rate(l.points[l.points.length - 1][1]) : '–')).join(' / ');
  }
  const legend = lines.length > 1 ? ` (${lines.map((l) => l.name).join(' / ')})` : '';
  return h('figure', { class: 'chart' },
    h('figcaption', {}, h('span', { text: title + legend }), h('strong', { text: last })), svg);
}
