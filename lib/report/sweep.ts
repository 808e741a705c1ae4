// The sweep report: sweep.html (self-contained, inline SVG), beside sweep.json and sweep.md.
// Bars (one per cell, mean kNN with a +-1 std whisker, the random-init twin as a tick) for
// comparisons such as the loss ablation; curves (kNN against one weight, log-scaled axis) for
// sensitivity sweeps. Every chart has axis titles; labels are laid out so that none overlap.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** What the report reads of a sweep's summary (lib/sweep/summary.ts produces it). */
export interface CellSummary {
  cell: string;
  overrides: Record<string, unknown>;
  n: number;
  diverged: number;
  knnMean: number | null;
  knnStd: number | null;
  knnRandomMean: number | null;
  linearMean: number | null;
  linearStd: number | null;
  linearRandomMean: number | null;
}
export interface SweepSummary {
  source: string;
  k: number;
  seeds: number;
  cells: CellSummary[];
  spread: number | null;
  best: string | null;
}
export type SweepPlot = { kind: 'bars' } | { kind: 'curves'; keys: string[] };

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const FONT = 'font-family="sans-serif" font-size="12"';

export function writeSweepReport(
  dir: string,
  s: SweepSummary,
  plot: SweepPlot,
  center: Record<string, unknown>,
  markdown: string,
): void {
  const charts = plot.kind === 'curves' ? plot.keys.map((k) => curveChart(s, String(k), center)) : [barChart(s)];
  const lin = hasLinear(s);
  const probe = (c: CellSummary) =>
    lin ? `<td>${meanStdText(c.linearMean, c.linearStd)}</td><td>${pct(c.linearRandomMean)}</td>` : '';
  const rows = s.cells
    .map(
      (c) =>
        `<tr><td>${esc(c.cell)}</td><td>${fmt(c)}</td><td>${pct(c.knnRandomMean)}</td>${probe(c)}<td>${c.n}</td><td>${c.diverged}</td></tr>`,
    )
    .join('');
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>medic-native sweep: ${esc(s.source)}</title>
<style>body{font-family:sans-serif;margin:24px;max-width:1100px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}.charts{display:flex;flex-wrap:wrap;gap:16px}</style></head><body>
<h1>Sweep: ${esc(s.source)}</h1>
<p>${s.seeds} seed(s) per cell. kNN top-1 at k = ${s.k} (DINO protocol), mean ± sample standard deviation over seeds; the random-init twin of each cell is the baseline.${s.spread === null ? '' : ` Spread of the cell means: ${pct(s.spread)} points; best: ${esc(s.best ?? '')}.`}</p>
<div class="charts">${charts.join('')}</div>
<h2>Table</h2>
<table><tr><th>cell</th><th>kNN (%)</th><th>random init (%)</th>${lin ? '<th>linear probe (%)</th><th>random init (%)</th>' : ''}<th>runs</th><th>diverged</th></tr>${rows}</table>
<h2>Markdown</h2><pre>${esc(markdown)}</pre>
</body></html>`;
  writeFileSync(join(dir, 'sweep.html'), html);
}

const pct = (x: number | null) => (x === null ? 'n/a' : (100 * x).toFixed(2));
const fmt = (c: CellSummary) => meanStdText(c.knnMean, c.knnStd);

/** A linear axis range over the values (percent), padded, with round ticks. */
function axis(values: number[]): { lo: number; hi: number; ticks: number[] } {
  const lo0 = Math.min(...values, 100);
  const hi0 = Math.max(...values, 0);
  const span = Math.max(hi0 - lo0, 1);
  const step = [1, 2, 5, 10, 20, 25, 50].find((s) => span / s <= 6) ?? 50;
  const lo = Math.max(0, Math.floor((lo0 - span * 0.05) / step) * step);
  const hi = Math.min(100, Math.ceil((hi0 + span * 0.05) / step) * step);
  const ticks: number[] = [];
  for (let t = lo; t <= hi + 1e-9; t += step) ticks.push(t);
  return { lo, hi: hi > lo ? hi : lo + step, ticks };
}

/** Horizontal bars: cell names on the left (one row each, so they never overlap). */
function barChart(s: SweepSummary): string {
  const rowH = 28;
  const left = 10 + 7 * Math.max(...s.cells.map((c) => c.cell.length), 4);
  const width = left + 420;
  const height = 60 + rowH * s.cells.length + 40;
  const vals = s.cells
    .flatMap((c) => [c.knnMean, c.knnRandomMean, c.knnMean !== null && c.knnStd !== null ? c.knnMean + c.knnStd : null])
    .flatMap((v) => (v === null ? [] : [100 * v]));
  const ax = axis(vals.length ? vals : [0, 100]);
  const x = (v: number) => left + ((v - ax.lo) / (ax.hi - ax.lo)) * 380;
  const top = 40;
  const parts: string[] = [
    `<text x="${width / 2}" y="18" text-anchor="middle" ${FONT} font-weight="bold">kNN top-1 by cell (k = ${s.k})</text>`,
  ];
  s.cells.forEach((c, i) => {
    const y = top + i * rowH;
    parts.push(`<text x="${left - 6}" y="${y + 17}" text-anchor="end" ${FONT} data-axis="ytick">${esc(c.cell)}</text>`);
    if (c.knnMean !== null) {
      const m = 100 * c.knnMean;
      parts.push(
        `<rect x="${x(ax.lo)}" y="${y + 5}" width="${Math.max(0, x(m) - x(ax.lo))}" height="${rowH - 10}" fill="#1f77b4"/>`,
      );
      if (c.knnStd !== null)
        parts.push(
          `<line x1="${x(m - 100 * c.knnStd)}" x2="${x(m + 100 * c.knnStd)}" y1="${y + rowH / 2}" y2="${y + rowH / 2}" stroke="#000"/>`,
        );
    }
    if (c.knnRandomMean !== null)
      parts.push(
        `<line x1="${x(100 * c.knnRandomMean)}" x2="${x(100 * c.knnRandomMean)}" y1="${y + 2}" y2="${y + rowH - 2}" stroke="#d62728" stroke-width="2"/>`,
      );
  });
  const axisY = top + rowH * s.cells.length + 4;
  parts.push(`<line x1="${x(ax.lo)}" x2="${x(ax.hi)}" y1="${axisY}" y2="${axisY}" stroke="#333"/>`);
  for (const t of ax.ticks)
    parts.push(`<text x="${x(t)}" y="${axisY + 14}" text-anchor="middle" ${FONT} data-axis="xtick">${t}</text>`);
  parts.push(
    `<text x="${x((ax.lo + ax.hi) / 2)}" y="${axisY + 32}" text-anchor="middle" ${FONT} data-axis="x">kNN top-1 (%): bar = mean, whisker = ±1 std, red tick = random init</text>`,
  );
  parts.push(
    `<text transform="translate(12 ${top + (rowH * s.cells.length) / 2}) rotate(-90)" text-anchor="middle" ${FONT} data-axis="y">cell</text>`,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width + 20}" height="${height}" class="chart" role="img" aria-label="kNN top-1 by cell">${parts.join('')}</svg>`;
}

/** kNN against one varied setting, the other plotted settings at their centre values. */
function curveChart(s: SweepSummary, key: string, center: Record<string, unknown>): string {
  const pts = s.cells
    .filter(
      (c) =>
        key in c.overrides &&
        Object.entries(c.overrides).every(([k, v]) => k === key || center[k] === undefined || center[k] === v),
    )
    .flatMap((c) =>
      c.knnMean === null
        ? []
        : [
            {
              w: Number(c.overrides[key]),
              m: 100 * c.knnMean,
              sd: c.knnStd === null ? 0 : 100 * c.knnStd,
              r: c.knnRandomMean,
            },
          ],
    )
    .sort((a, b) => a.w - b.w);
  const W = 460,
    H = 300,
    L = 60,
    R = 20,
    T = 36,
    B = 56;
  const ws = pts.length ? pts.map((p) => p.w) : [1];
  const lx0 = Math.log10(Math.min(...ws)),
    lx1 = Math.log10(Math.max(...ws));
  const xr = lx1 > lx0 ? [lx0 - 0.1, lx1 + 0.1] : [lx0 - 0.5, lx0 + 0.5];
  const ax = axis(
    pts.length ? pts.flatMap((p) => [p.m - p.sd, p.m + p.sd, ...(p.r === null ? [] : [100 * p.r])]) : [0, 100],
  );
  const x = (w: number) => L + ((Math.log10(w) - xr[0]) / (xr[1] - xr[0])) * (W - L - R);
  const y = (v: number) => T + (1 - (v - ax.lo) / (ax.hi - ax.lo)) * (H - T - B);
  const parts = [
    `<text x="${W / 2}" y="18" text-anchor="middle" ${FONT} font-weight="bold">kNN top-1 against ${esc(key)} (k = ${s.k})</text>`,
  ];
  parts.push(
    `<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#333"/><line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#333"/>`,
  );
  for (const t of ax.ticks)
    parts.push(`<text x="${L - 6}" y="${y(t) + 4}" text-anchor="end" ${FONT} data-axis="ytick">${t}</text>`);
  for (const p of pts)
    parts.push(`<text x="${x(p.w)}" y="${H - B + 16}" text-anchor="middle" ${FONT} data-axis="xtick">${p.w}</text>`);
  if (pts.length)
    parts.push(
      `<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="${pts.map((p) => `${x(p.w)},${y(p.m)}`).join(' ')}"/>`,
    );
  for (const p of pts) {
    parts.push(`<circle cx="${x(p.w)}" cy="${y(p.m)}" r="3" fill="#1f77b4"/>`);
    if (p.sd > 0)
      parts.push(`<line x1="${x(p.w)}" x2="${x(p.w)}" y1="${y(p.m - p.sd)}" y2="${y(p.m + p.sd)}" stroke="#1f77b4"/>`);
    if (p.r !== null)
      parts.push(
        `<line x1="${x(p.w) - 6}" x2="${x(p.w) + 6}" y1="${y(100 * p.r)}" y2="${y(100 * p.r)}" stroke="#d62728" stroke-width="2"/>`,
      );
  }
  parts.push(
    `<text x="${(L + W - R) / 2}" y="${H - 14}" text-anchor="middle" ${FONT} data-axis="x">${esc(key)} (log scale); red = random init</text>`,
  );
  parts.push(
    `<text transform="translate(16 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle" ${FONT} data-axis="y">kNN top-1 (%)</text>`,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" class="chart" role="img" aria-label="kNN top-1 against ${esc(key)}">${parts.join('')}</svg>`;
}

/** Whether any cell has linear-probe results (the tables then show them). */
export function hasLinear(s: Pick<SweepSummary, 'cells'>): boolean {
  return s.cells.some((c) => c.linearMean !== null);
}

/** "mean ± std" in percent, the mean alone for one value, n/a for none. */
export function meanStdText(mean: number | null, std: number | null): string {
  return mean === null ? 'n/a' : std === null ? pct(mean) : `${pct(mean)} ± ${pct(std)}`;
}
