// Line charts as self-contained SVG for report.html: title, legend row, "nice" ticks on both axes,
// axis titles, a log scale that says so, and epoch boundaries as faint dashed lines.
//
// Text is laid out from estimated widths (no font metrics outside a browser), generously: a label is
// given 0.62 em per character, more than sans-serif fonts need, so labels never collide
// (test/e2e/report-browser.test.ts checks the laid-out page in chromium).

export interface Series {
  name: string;
  color: string;
  points: [number, number][];
}

export interface ChartOptions {
  /** y axis title (the unit); " (log scale)" is appended on a log axis. */
  yTitle: string;
  /** x axis title (default "step"). */
  xTitle?: string;
  /** 'log', 'linear', or 'auto': log when all values are positive and span more than two decades. */
  scale?: 'log' | 'linear' | 'auto';
  /** x positions of epoch boundaries (dashed lines). */
  epochMarks?: number[];
  width?: number;
  height?: number;
}

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const textWidth = (s: string, fontPx: number) => s.length * fontPx * 0.62;

const FONT = { title: 13, legend: 11, tick: 10, axis: 11 };

/** Round steps of 1, 2, 2.5 or 5 x 10^k giving about `target` ticks, from the last tick <= a to the first >= b. */
export function niceTicks(a: number, b: number, target: number): number[] {
  if (!(b > a)) return [a];
  const raw = (b - a) / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  const [i0, i1] = [Math.floor(a / step + 1e-9), Math.ceil(b / step - 1e-9)];
  for (let i = i0; i <= i1; i++) out.push(Number((i * step).toPrecision(12)));
  return out;
}

/**
 * Ticks of a log axis over exponents [a, b], and the range widened to its outer ticks: decades over a
 * wide range, else the 1-2-5 (or, if that gives fewer than four, 1-2-3-5) values of each decade.
 */
function logAxis(a: number, b: number): { ticks: number[]; lo: number; hi: number } {
  if (b - a >= 2) {
    const [lo, hi] = [Math.floor(a + 1e-9), Math.ceil(b - 1e-9)];
    const every = Math.ceil((hi - lo + 1) / 7);
    const ticks: number[] = [];
    for (let e = lo; e <= hi; e++) if ((e - lo) % every === 0) ticks.push(10 ** e);
    return { ticks, lo, hi };
  }
  for (const mantissas of [
    [1, 2, 5],
    [1, 2, 3, 5],
  ]) {
    const seq: number[] = [];
    for (let e = Math.floor(a) - 1; e <= Math.ceil(b) + 1; e++) for (const m of mantissas) seq.push(m * 10 ** e);
    const lo = Math.max(...seq.filter((v) => Math.log10(v) <= a + 1e-9));
    const hi = Math.min(...seq.filter((v) => Math.log10(v) >= b - 1e-9));
    const ticks = seq.filter((v) => v >= lo && v <= hi);
    if (ticks.length >= 4 || mantissas.length === 4) return { ticks, lo: Math.log10(lo), hi: Math.log10(hi) };
  }
  throw new Error('unreachable');
}

/** Short tick labels: 0.001 -> 1e-3, 12000 -> 12k, 0.25 -> 0.25. */
export function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-2) {
    const [m, e] = v.toExponential().split('e');
    return `${Number(Number(m).toPrecision(2))}e${Number(e)}`;
  }
  if (a >= 1e4) return `${Number((v / 1e3).toPrecision(3))}k`;
  return String(Number(v.toPrecision(3)));
}

export function lineChart(title: string, series: Series[], opts: ChartOptions): string {
  const W = opts.width ?? 552;
  const H = opts.height ?? 270;
  const xTitle = opts.xTitle ?? 'step';
  const finite = series.map((s) => ({
    ...s,
    points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)),
  }));
  const all = finite.flatMap((s) => s.points);
  const positive = all.length > 0 && all.every(([, y]) => y > 0);
  const span = positive ? Math.log10(Math.max(...all.map(([, y]) => y)) / Math.min(...all.map(([, y]) => y))) : 0;
  const log = positive && (opts.scale === 'log' || (opts.scale !== 'linear' && span > 2));
  const yTitle = `${opts.yTitle}${log ? ' (log scale)' : ''}`;
  const head =
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}" ` +
    `font-family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif">` +
    `<text x="12" y="20" font-size="${FONT.title}" font-weight="600" fill="#1f2937">${esc(title)}</text>`;
  const pad = { l: 72, r: 18, t: 56, b: 48 };
  const axisTitles =
    `<text data-axis="x" x="${(pad.l + W - pad.r) / 2}" y="${H - 8}" font-size="${FONT.axis}" text-anchor="middle" fill="#4b5563">${esc(xTitle)}</text>` +
    `<text data-axis="y" transform="translate(16 ${(pad.t + H - pad.b) / 2}) rotate(-90)" font-size="${FONT.axis}" text-anchor="middle" fill="#4b5563">${esc(yTitle)}</text>`;
  if (!all.length)
    return `${head}<text x="${W / 2}" y="${H / 2}" font-size="12" text-anchor="middle" fill="#6b7280">no data</text>${axisTitles}</svg>`;

  // Legend: one row under the title, entries placed by their estimated widths.
  let lx = pad.l;
  const legend = finite
    .map((s) => {
      const g =
        `<line x1="${lx}" x2="${lx + 16}" y1="36" y2="36" stroke="${s.color}" stroke-width="2.5"/>` +
        `<text x="${lx + 21}" y="40" font-size="${FONT.legend}" fill="#374151">${esc(s.name)}</text>`;
      lx += 21 + textWidth(s.name, FONT.legend) + 18;
      return g;
    })
    .join('');

  const tf = (y: number) => (log ? Math.log10(y) : y);
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => tf(y));
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1)
    [y0, y1] = log
      ? [y0 - 0.5, y1 + 0.5]
      : [y0 - Math.max(1, Math.abs(y0) * 0.1), y1 + Math.max(1, Math.abs(y1) * 0.1)];
  // the range is widened to the outer ticks, so that the top and bottom lines are labelled
  let yt: number[];
  if (log) {
    const ax = logAxis(y0, y1);
    [yt, y0, y1] = [ax.ticks, ax.lo, ax.hi];
  } else {
    yt = niceTicks(y0, y1, 5);
    [y0, y1] = [Math.min(y0, yt[0]), Math.max(y1, yt[yt.length - 1])];
  }
  const pw = W - pad.l - pad.r;
  const ph = H - pad.t - pad.b;
  const px = (x: number) => pad.l + ((x - x0) / Math.max(1e-12, x1 - x0)) * pw;
  const py = (v: number) => pad.t + ph - ((v - y0) / (y1 - y0)) * ph;

  const yTicks = yt
    .map((v) => {
      const y = py(tf(v)).toFixed(1);
      return (
        `<line x1="${pad.l}" x2="${W - pad.r}" y1="${y}" y2="${y}" stroke="#e5e7eb"/>` +
        `<text data-axis="ytick" x="${pad.l - 6}" y="${(Number(y) + 3.5).toFixed(1)}" font-size="${FONT.tick}" text-anchor="end" fill="#6b7280">${formatTick(v)}</text>`
      );
    })
    .join('');
  // x ticks: as many as fit with room to spare
  const widest = textWidth(formatTick(x1), FONT.tick) + 14;
  const xt = niceTicks(x0, x1, Math.max(2, Math.min(8, Math.floor(pw / widest)))).filter(
    (v) => v >= x0 && v <= x1 && Number.isInteger(v),
  );
  const xTicks = xt
    .map((v) => {
      const x = px(v).toFixed(1);
      return (
        `<line x1="${x}" x2="${x}" y1="${pad.t + ph}" y2="${pad.t + ph + 4}" stroke="#9ca3af"/>` +
        `<text data-axis="xtick" x="${x}" y="${pad.t + ph + 16}" font-size="${FONT.tick}" text-anchor="middle" fill="#6b7280">${formatTick(v)}</text>`
      );
    })
    .join('');
  // epoch boundaries: at most one line per 6 px
  const marks = (opts.epochMarks ?? []).filter((m) => m > x0 && m < x1);
  const every = Math.max(1, Math.ceil((marks.length * 6) / pw));
  const epochLines = marks
    .filter((_, i) => (i + 1) % every === 0)
    .map(
      (m) =>
        `<line x1="${px(m).toFixed(1)}" x2="${px(m).toFixed(1)}" y1="${pad.t}" y2="${pad.t + ph}" stroke="#c7d2fe" stroke-dasharray="3 3"/>`,
    )
    .join('');
  const lines = finite
    .map((s) => {
      const pts = s.points.filter(([, y]) => !log || y > 0);
      if (!pts.length) return '';
      const d = pts.map(([x, y], i) => `${i ? 'L' : 'M'}${px(x).toFixed(1)},${py(tf(y)).toFixed(1)}`).join('');
      return `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.6" stroke-linejoin="round"/>`;
    })
    .join('');
  const frame = `<line x1="${pad.l}" x2="${W - pad.r}" y1="${pad.t + ph}" y2="${pad.t + ph}" stroke="#9ca3af"/><line x1="${pad.l}" x2="${pad.l}" y1="${pad.t}" y2="${pad.t + ph}" stroke="#9ca3af"/>`;
  return `${head}${legend}${yTicks}${epochLines}${frame}${xTicks}${lines}${axisTitles}</svg>`;
}
