// The report of an evaluation run (linear probe or fine-tune): summary.json (final and best top-1 /
// top-5, per probed block for the probe) and report.html (result table, training-loss and val-accuracy
// curves, the protocol's settings), beside metrics.jsonl in the run's output folder.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { EpochResult, TopK } from '../eval/protocols.js';
import { writeAtomic } from '../eval/backbone.js';
import { lineChart } from './svg-chart.js';

export interface EvalReportInput {
  protocol: 'linear' | 'finetune';
  backbone: { checkpoint: string; step: number; fromScratch: boolean; config: { model: string; data: string } };
  config: object;
  epochs: EpochResult[];
  metricsPath: string;
  /** Extra files worth naming (the fine-tuned classifier, its timm export). */
  files?: Record<string, string>;
}

export interface EvalSummary {
  protocol: 'linear' | 'finetune';
  checkpoint: string;
  checkpoint_step: number;
  from_scratch: boolean;
  model: string;
  data: string;
  epochs: number;
  /** Final val accuracy per head (probed block, or 'head'). */
  final: Record<string, TopK>;
  /** The best head at the end by top-1. */
  best: { head: string } & TopK;
  config: object;
  files?: Record<string, string>;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const pct = (v?: number): string => (v === undefined ? 'n/a' : `${(100 * v).toFixed(2)} %`);
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#7f7f7f', '#8c564b'];

export function evalSummary(r: EvalReportInput): EvalSummary {
  const final = r.epochs[r.epochs.length - 1]?.val ?? {};
  let best: EvalSummary['best'] = { head: '', top1: 0 };
  for (const [head, v] of Object.entries(final)) if (!best.head || v.top1 > best.top1) best = { head, ...v };
  return {
    protocol: r.protocol,
    checkpoint: r.backbone.checkpoint,
    checkpoint_step: r.backbone.step,
    from_scratch: r.backbone.fromScratch,
    model: r.backbone.config.model,
    data: r.backbone.config.data,
    epochs: r.epochs.length,
    final,
    best,
    config: r.config,
    files: r.files,
  };
}

export function writeEvalReport(out: string, r: EvalReportInput): EvalSummary {
  const summary = evalSummary(r);
  writeAtomic(join(out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  const rows = existsSync(r.metricsPath)
    ? readFileSync(r.metricsPath, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, number>)
    : [];
  const heads = Object.keys(summary.final);
  const stride = Math.max(1, Math.floor(rows.length / 2000)); // keep the SVG small on long runs
  const charts = [
    lineChart(
      'training loss',
      [
        {
          name: 'loss',
          color: '#000',
          points: rows.filter((_, i) => i % stride === 0).map((m) => [m.step, m.loss] as [number, number]),
        },
      ],
      { scale: 'log', yTitle: 'loss' },
    ),
    lineChart(
      'learning rate',
      [
        {
          name: 'lr',
          color: '#ff7f0e',
          points: rows.filter((_, i) => i % stride === 0).map((m) => [m.step, m.lr] as [number, number]),
        },
      ],
      { yTitle: 'learning rate' },
    ),
    lineChart(
      'val top-1 (x: step)',
      heads.map((h, i) => ({
        name: r.protocol === 'linear' ? `block ${h}` : h,
        color: COLORS[i % COLORS.length],
        points: r.epochs.map((e) => [e.step, e.val[h]?.top1 ?? NaN] as [number, number]),
      })),
      { yTitle: 'val top-1' },
    ),
  ];
  const table = heads
    .map(
      (h) =>
        `<tr><td>${esc(r.protocol === 'linear' ? `block ${h}` : h)}</td><td>${pct(summary.final[h].top1)}</td><td>${pct(summary.final[h].top5)}</td></tr>`,
    )
    .join('');
  const cfgRows = Object.entries(r.config)
    .map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(Array.isArray(v) ? v.join(',') : String(v))}</td></tr>`)
    .join('');
  const title = r.protocol === 'linear' ? 'Linear probe' : 'Fine-tuning';
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>medic-native ${esc(title.toLowerCase())}: ${esc(out)}</title>
<style>body{font-family:sans-serif;margin:24px;max-width:1200px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}.charts{display:flex;flex-wrap:wrap;gap:12px}</style></head><body>
<h1>${title} report</h1>
<p>${r.backbone.fromScratch ? 'Random-init twin of ' : ''}${esc(r.backbone.checkpoint)} (step ${r.backbone.step}, student ${esc(r.backbone.config.model)}) on ${esc(r.backbone.config.data)}; ${r.epochs.length} epochs.</p>
<h2>Val accuracy after the last epoch</h2>
<table><tr><th></th><th>top-1</th><th>top-5</th></tr>${table}</table>
<h2>Curves</h2><div class="charts">${charts.join('')}</div>
<h2>Protocol</h2><table>${cfgRows}</table>
${
  summary.files
    ? `<h2>Files</h2><ul>${Object.entries(summary.files)
        .map(([k, v]) => `<li>${esc(k)}: ${esc(v)}</li>`)
        .join('')}</ul>`
    : ''
}
</body></html>`;
  writeAtomic(join(out, 'report.html'), html);
  return summary;
}
