// Line charts of rates drawn as inline SVG, one line per series.

const NS = 'http://www.w3.org/2000/svg';
const W = 600, H = 150, PAD = { l: 56, r: 8, t: 8, b: 18 };
const COLORS = ['#2563eb', '#db2777', '#059669', '#d97706', '#7c3aed', '#0891b2', '#dc2626', '#65a30d'];

function svg(tag, attrs, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

// si formats a number with an SI suffix: 1234 -> "1.2k".
export function si(v) {
  const units = ['', 'k', 'M', 'G', 'T'];
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return String(Number(v.toPrecision(3))) + units[i];
}

// colorOf gives each series name a stable color for the page's life.
const assigned = new Map();
export function colorOf(name) {
  if (!assigned.has(name)) assigned.set(name, COLORS[assigned.size % COLORS.length]);
  return assigned.get(name);
}

// lineChart returns an <svg> of points [{t, values: {series: rate}}] over the
// last `span` milliseconds ending at `now`, with the y axis labelled in `unit`.
export function lineChart({ title, unit, points, span, now }) {
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title });
  const names = [...new Set(points.flatMap(p => Object.keys(p.values)))].sort();
  const max = Math.max(1, ...points.flatMap(p => Object.values(p.values)));
  const x = t => PAD.l + (W - PAD.l - PAD.r) * (1 - (now - t) / span);
  const y = v => H - PAD.b - (H - PAD.t - PAD.b) * (v / max);
  for (const f of [0, 0.5, 1]) {
    const yy = y(max * f);
    root.append(svg('line', { x1: PAD.l, x2: W - PAD.r, y1: yy, y2: yy, class: 'gridline' }));
    root.append(svg('text', { x: PAD.l - 6, y: yy + 4, 'text-anchor': 'end', class: 'axis' }, si(max * f) + unit));
  }
  const ago = span < 120000 ? `${Math.round(span / 1000)} s` : `${Math.round(span / 60000)} min`;
  root.append(svg('text', { x: PAD.l, y: H - 3, class: 'axis' }, `−${ago}`));
  root.append(svg('text', { x: W - PAD.r, y: H - 3, 'text-anchor': 'end', class: 'axis' }, 'now'));
  for (const name of names) {
    const pts = points.filter(p => name in p.values && now - p.t <= span)
      .map(p => `${x(p.t).toFixed(1)},${y(p.values[name]).toFixed(1)}`);
    if (pts.length) {
      root.append(svg('polyline', { points: pts.join(' '), fill: 'none', stroke: colorOf(name), 'stroke-width': 2 }));
    }
  }
  return root;
}
