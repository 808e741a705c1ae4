// Sweeps: cells from a grid file or a preset, run one after another (resumable), summarised as a
// paper's table and a report.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { writeSweepReport } from '../report/sweep.js';
import { defaultConfig } from '../train/config.js';
import type { SweepSpec } from './grid.js';
import { runSweep, type RepResult, type SweepOptions } from './run.js';
import { summarize, sweepMarkdown, type SweepSummary } from './summary.js';

export { parseGrid, readGridFile, type Overrides, type SweepCell, type SweepSpec } from './grid.js';
export { presetNames, presetSpec } from './presets.js';
export { planSweep, type RepResult, type SweepEvents, type SweepOptions } from './run.js';
export { meanStd, summarize, sweepMarkdown, type CellSummary, type SweepSummary } from './summary.js';

export interface SweepOutcome {
  complete: boolean;
  results: RepResult[];
  summary: SweepSummary;
}

/** Runs the sweep and writes sweep.json, sweep.md and sweep.html into opts.out (also when stopped early). */
export async function sweep(spec: SweepSpec, opts: SweepOptions): Promise<SweepOutcome> {
  mkdirSync(opts.out, { recursive: true });
  const { results, complete } = await runSweep(spec, opts);
  const k = Math.max(...((opts.fixed.knnK ?? spec.base.knnK ?? defaultConfig.knnK) as number[]));
  const summary = summarize(spec, results, k);
  const md = sweepMarkdown(summary);
  writeFileSync(
    join(opts.out, 'sweep.json'),
    JSON.stringify({ spec, fixed: opts.fixed, complete, summary, results }, null, 2) + '\n',
  );
  writeFileSync(join(opts.out, 'sweep.md'), md);
  const center = { ...defaultConfig, ...spec.base, ...opts.fixed } as Record<string, unknown>;
  writeSweepReport(opts.out, summary, spec.plot, center, md);
  return { complete, results, summary };
}
