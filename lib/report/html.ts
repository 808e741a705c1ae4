// The run report: report.html (self-contained: inline SVG charts, no script, no network) and
// summary.json in the run folder, built from metrics.jsonl and the kNN results, so that a run can be
// judged without other tools. docs/report.png shows one (test/e2e/report-browser.test.ts lays it out
// in chromium and checks that no chart text overlaps).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { defaultConfig, finalizeConfig, type PretrainConfig } from '../train/config.js';
import { spellDuration } from '../util/duration.js';
import { lineChart } from './svg-chart.js';
import type { FinalEvaluations } from '../eval/protocols.js';

export { lineChart } from './svg-chart.js';

type Row = Record<string, number>;

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** metrics.jsonl, skipping a line cut short by a kill. */
function readMetrics(path: string): Row[] {
  if (!existsSync(path)) return [];
  const rows: Row[] = [];
  for (const l of readFileSync(path, 'utf8').split('\n')) {
    if (!l) continue;
    try {
      rows.push(JSON.parse(l) as Row);
    } catch {
      /* a partial last line */
    }
  }
  return rows;
}

/** The last logged step of each epoch but the final one: where the dashed epoch lines go. */
function epochEnds(rows: Row[]): number[] {
  const out: number[] = [];
  for (let i = 0; i + 1 < rows.length; i++) if (rows[i + 1].epoch !== rows[i].epoch) out.push(rows[i].step);
  return out;
}

/** The linear-probe / fine-tune rows of pretrain --eval, linking each protocol's own report. */
function protocolTable(evals: FinalEvaluations | undefined): string {
  if (!evals || !Object.keys(evals).length) return '';
  const pct = (v?: number) => (v === undefined ? 'n/a' : `${(100 * v).toFixed(2)} %`);
  const rows = Object.entries(evals)
    .map(([name, p]) => {
      const cell = (x?: { top1: number; top5?: number; head: string }) =>
        x ? `${pct(x.top1)}${x.top5 !== undefined ? ` (top-5 ${pct(x.top5)})` : ''}` : 'n/a';
      return `<tr><td><a href="eval/${esc(name)}/report.html">${esc(name)}</a></td><td>${cell(p?.pretrained)}</td><td>${cell(p?.random_init)}</td></tr>`;
    })
    .join('');
  return `<h2>Linear probe and fine-tuning (top-1 on the val split)</h2>\n<table><tr><th></th><th>pretrained</th><th>random init</th></tr>${rows}</table>`;
}

function charts(rows: Row[]): string[] {
  const s = (key: string) => rows.map((m) => [m.step, m[key]] as [number, number]);
  const epochMarks = epochEnds(rows);
  const xTitle = epochMarks.length ? 'training step (dashed: epoch ends)' : 'training step';
  return [
    lineChart(
      'Loss',
      [
        { name: 'total', color: '#111827', points: s('loss') },
        { name: 'token distillation', color: '#2563eb', points: s('l_tok') },
        { name: 'CLS alignment', color: '#dc2626', points: s('l_cls') },
        { name: 'pixel', color: '#16a34a', points: s('l_pix') },
      ],
      { yTitle: 'loss', scale: 'log', xTitle, epochMarks },
    ),
    lineChart(
      'Gradient norm (before clipping)',
      [{ name: 'global L2 norm', color: '#7c3aed', points: s('grad_norm') }],
      { yTitle: 'norm', scale: 'log', xTitle, epochMarks },
    ),
    lineChart('Learning rate', [{ name: 'lr', color: '#ea580c', points: s('lr') }], {
      yTitle: 'learning rate',
      scale: 'linear',
      xTitle,
      epochMarks,
    }),
    lineChart('Throughput', [{ name: 'images per second', color: '#0891b2', points: s('img_s') }], {
      yTitle: 'images / s',
      scale: 'linear',
      xTitle,
      epochMarks,
    }),
    lineChart(
      'Loader wait per step',
      [{ name: 'time the step waited for its batch', color: '#6b7280', points: s('wait_ms') }],
      { yTitle: 'wait (ms)', xTitle, epochMarks },
    ),
  ];
}

const pct = (v?: number) => (v === undefined ? 'n/a' : `${(100 * v).toFixed(2)} %`);

function card(label: string, value: string, sub = ''): string {
  return `<div class="card"><div class="label">${esc(label)}</div><div class="value">${esc(value)}</div><div class="sub">${esc(sub)}</div></div>`;
}

export function writeReport(
  outDir: string,
  c: PretrainConfig,
  r: {
    knn?: Record<number, number>;
    knnRandom?: Record<number, number>;
    evals?: FinalEvaluations;
    /** The precision the steps ran in, and this invocation's steps and their wall seconds. */
    precision?: string;
    trained?: { steps: number; seconds: number };
  },
): void {
  const rows = readMetrics(join(outDir, 'metrics.jsonl'));
  const last = rows[rows.length - 1];
  const mean = (k: string) => (rows.length ? rows.reduce((a, m) => a + m[k], 0) / rows.length : null);
  const summary = {
    steps: last?.step ?? 0,
    final_loss: last?.loss ?? null,
    knn: r.knn ?? null,
    knn_random_init: r.knnRandom ?? null,
    ...(r.evals && Object.keys(r.evals).length ? { evaluations: r.evals } : {}),
    mean_img_s: mean('img_s'),
    mean_wait_ms: mean('wait_ms'),
    ...(r.precision ? { precision: r.precision } : {}),
    ...(r.trained ? { train_steps: r.trained.steps, train_seconds: r.trained.seconds } : {}),
  };
  writeFileSync(join(outDir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');

  const k = Math.max(...c.knnK);
  const gain =
    r.knn && r.knnRandom
      ? `${(100 * (r.knn[k] - r.knnRandom[k])).toFixed(2)} points over random init`
      : 'kNN was not run';
  const cards = [
    card('steps', `${summary.steps}`, `${c.epochs} epochs of ${c.batchSize} images per step`),
    card(
      'final loss',
      last ? last.loss.toFixed(4) : 'n/a',
      last ? `token ${last.l_tok.toFixed(3)}, CLS ${last.l_cls.toFixed(3)}, pixel ${last.l_pix.toFixed(3)}` : '',
    ),
    card(`kNN k=${k}, pretrained`, pct(r.knn?.[k]), gain),
    card(`kNN k=${k}, random init`, pct(r.knnRandom?.[k]), 'the same network before training'),
    card(
      'throughput',
      summary.mean_img_s === null ? 'n/a' : `${summary.mean_img_s.toFixed(1)} img/s`,
      [
        r.precision ? `precision ${r.precision}` : '',
        // (no line break inside the duration: non-breaking spaces)
        r.trained ? `${r.trained.steps} steps in ${spellDuration(r.trained.seconds).replace(/ /g, '\u00a0')}` : '',
        summary.mean_wait_ms === null ? '' : `mean loader wait ${summary.mean_wait_ms.toFixed(2)} ms per step`,
      ]
        .filter(Boolean)
        .join('; '),
    ),
  ].join('');
  const knnRows = c.knnK
    .map((kk) => `<tr><td>k = ${kk}</td><td>${pct(r.knn?.[kk])}</td><td>${pct(r.knnRandom?.[kk])}</td></tr>`)
    .join('');
  const base = finalizeConfig({ ...defaultConfig, data: c.data }) as unknown as Record<string, unknown>;
  const show = (v: unknown) => (Array.isArray(v) ? v.join(',') : String(v));
  const cfgRows = Object.entries(c).map(
    ([key, v]) =>
      `<tr${show(v) !== show(base[key]) ? ' class="set"' : ''}><td>${esc(key)}</td><td>${esc(show(v))}</td></tr>`,
  );
  const third = Math.ceil(cfgRows.length / 3);
  const cfgTables = [0, 1, 2]
    .map((i) => `<table>${cfgRows.slice(i * third, (i + 1) * third).join('')}</table>`)
    .join('');
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>MEDiC pretraining report: ${esc(outDir)}</title>
<style>
:root { --fg: #111827; --muted: #6b7280; --line: #e5e7eb; --bg: #f8fafc; --card: #fff; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 22px; margin: 0; }
.where { color: var(--muted); margin: 2px 0 0; word-break: break-all; }
h2 { font-size: 15px; margin: 30px 0 10px; color: #374151; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 12px; margin-top: 20px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.card .label { font-size: 12px; color: var(--muted); }
.card .value { font-size: 22px; font-weight: 600; margin: 2px 0; font-variant-numeric: tabular-nums; }
.card .sub { font-size: 12px; color: var(--muted); }
.charts { display: grid; grid-template-columns: repeat(auto-fill, 566px); gap: 14px; justify-content: start; }
figure { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 6px; width: 566px; }
figure svg { display: block; }
table { border-collapse: collapse; background: var(--card); border: 1px solid var(--line); font-variant-numeric: tabular-nums; }
td, th { padding: 5px 12px; border-bottom: 1px solid var(--line); text-align: left; font-size: 13px; }
th { background: #f3f4f6; font-weight: 600; }
.config { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 12px; align-items: start; }
.config table { width: 100%; }
.config td:first-child { color: var(--muted); width: 45%; }
tr.set td { font-weight: 600; color: var(--fg); }
.note { color: var(--muted); font-size: 12px; }
</style></head><body><main>
<h1>MEDiC pretraining report</h1>
<p class="where">${esc(outDir)}</p>
<div class="cards">${cards}</div>
<h2>kNN accuracy</h2>
<table><tr><th></th><th>pretrained</th><th>random init</th></tr>${knnRows}</table>
<p class="note">DINO protocol: CLS after the final LayerNorm, cosine top-k, votes weighted exp(sim / 0.07); n/a where kNN was not run (no val split, or fewer than two classes).</p>
${protocolTable(r.evals)}
<h2>Training curves</h2>
<div class="charts">${charts(rows)
    .map((svg) => `<figure>${svg}</figure>`)
    .join('')}</div>
<h2>Configuration</h2>
<p class="note">Settings that differ from the defaults are in bold. The same values are in config.json.</p>
<div class="config">${cfgTables}</div>
</main></body></html>
`;
  writeFileSync(join(outDir, 'report.html'), html);
}
