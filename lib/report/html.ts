// The run report: report.html (self-contained, inline SVG plots) and summary.json in the run folder,
// built from metrics.jsonl and the kNN results, so a run can be judged without other tools.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import type { PretrainConfig } from '../train/config.js';

interface Series {
  name: string;
  color: string;
  points: [number, number][];
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A line chart as an SVG string (x: step). */
export function lineChart(title: string, series: Series[], opts: { log?: boolean; width?: number; height?: number } = {}): string {
  const W = opts.width ?? 560;
  const H = opts.height ?? 220;
  const pad = { l: 56, r: 12, t: 24, b: 28 };
  const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y) && (!opts.log || y > 0));
  if (!all.length) return `<svg width="${W}" height="${H}"><text x="10" y="20">${esc(title)}: no data</text></svg>`;
  const tf = (y: number) => (opts.log ? Math.log10(y) : y);
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => tf(y));
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
  const px = (x: number) => pad.l + ((x - x0) / Math.max(1e-12, x1 - x0)) * (W - pad.l - pad.r);
  const py = (y: number) => H - pad.b - ((tf(y) - y0) / (y1 - y0)) * (H - pad.t - pad.b);
  const fmt = (v: number) => (opts.log ? (10 ** v).toPrecision(2) : Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(1) : v.toPrecision(3));
  const lines = series
    .map((s) => {
      const pts = s.points.filter(([, y]) => Number.isFinite(y) && (!opts.log || y > 0));
      if (!pts.length) return '';
      const d = pts.map(([x, y], i) => `${i ? 'L' : 'M'}${px(x).toFixed(1)},${py(y).toFixed(1)}`).join('');
      return `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.5"/>`;
    })
    .join('');
  const legend = series.map((s, i) => `<text x="${pad.l + 8 + i * 90}" y="${pad.t - 8}" fill="${s.color}" font-size="11">${esc(s.name)}</text>`).join('');
  const ticks = [0, 0.5, 1]
    .map((f) => {
      const v = y0 + f * (y1 - y0);
      const y = H - pad.b - f * (H - pad.t - pad.b);
      return `<text x="${pad.l - 4}" y="${y + 4}" font-size="10" text-anchor="end">${fmt(v)}</text><line x1="${pad.l}" x2="${W - pad.r}" y1="${y}" y2="${y}" stroke="#ddd"/>`;
    })
    .join('');
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">` +
    `<text x="${pad.l}" y="12" font-size="12" font-weight="bold">${esc(title)}</text>${ticks}` +
    `<text x="${pad.l}" y="${H - 8}" font-size="10">step ${x0}</text><text x="${W - pad.r}" y="${H - 8}" font-size="10" text-anchor="end">${x1}</text>` +
    `${lines}${legend}</svg>`
  );
}

export function writeReport(outDir: string, c: PretrainConfig, r: { knn?: Record<number, number>; knnRandom?: Record<number, number> }): void {
  const path = join(outDir, 'metrics.jsonl');
  const rows = existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, number>)
    : [];
  const s = (key: string) => rows.map((m) => [m.step, m[key]] as [number, number]);
  const charts = [
    lineChart('loss', [
      { name: 'total', color: '#000', points: s('loss') },
      { name: 'token', color: '#1f77b4', points: s('l_tok') },
      { name: 'cls', color: '#d62728', points: s('l_cls') },
      { name: 'pixel', color: '#2ca02c', points: s('l_pix') },
    ], { log: true }),
    lineChart('grad norm (before clipping)', [{ name: 'grad norm', color: '#9467bd', points: s('grad_norm') }], { log: true }),
    lineChart('learning rate', [{ name: 'lr', color: '#ff7f0e', points: s('lr') }]),
    lineChart('throughput (img/s) and loader wait (ms)', [
      { name: 'img/s', color: '#17becf', points: s('img_s') },
      { name: 'wait ms', color: '#7f7f7f', points: s('wait_ms') },
    ]),
  ];
  const last = rows[rows.length - 1];
  const summary = {
    steps: last?.step ?? 0,
    final_loss: last?.loss ?? null,
    knn: r.knn ?? null,
    knn_random_init: r.knnRandom ?? null,
    mean_img_s: rows.length ? rows.reduce((a, m) => a + m.img_s, 0) / rows.length : null,
    mean_wait_ms: rows.length ? rows.reduce((a, m) => a + m.wait_ms, 0) / rows.length : null,
  };
  writeFileSync(join(outDir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  const pct = (v?: number) => (v === undefined ? 'n/a' : `${(100 * v).toFixed(2)} %`);
  const knnRows = c.knnK.map((k) => `<tr><td>k = ${k}</td><td>${pct(r.knn?.[k])}</td><td>${pct(r.knnRandom?.[k])}</td></tr>`).join('');
  const cfgRows = Object.entries(c).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(Array.isArray(v) ? v.join(',') : String(v))}</td></tr>`).join('');
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>medic-native run: ${esc(outDir)}</title>
<style>body{font-family:sans-serif;margin:24px;max-width:1200px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}.charts{display:flex;flex-wrap:wrap;gap:12px}</style></head><body>
<h1>MEDiC pretraining report</h1>
<p>${summary.steps} steps; final loss ${last ? last.loss.toFixed(4) : 'n/a'}; mean throughput ${summary.mean_img_s?.toFixed(1) ?? 'n/a'} img/s; mean loader wait ${summary.mean_wait_ms?.toFixed(2) ?? 'n/a'} ms per step.</p>
<h2>kNN accuracy (DINO protocol, CLS after the final LN, T = 0.07)</h2>
<table><tr><th></th><th>pretrained</th><th>random init</th></tr>${knnRows}</table>
<h2>Curves</h2><div class="charts">${charts.join('')}</div>
<h2>Configuration</h2><table>${cfgRows}</table>
</body></html>`;
  writeFileSync(join(outDir, 'report.html'), html);
}
