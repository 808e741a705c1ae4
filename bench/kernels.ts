// Kernel microbenchmark: every op family at the ViT-Tiny and ViT-Base shapes of a MEDiC step.
//
//   npm run bench                      # all families, both presets, default threads
//   npm run bench -- --family gemm --preset base --threads 2 --json out.json
//   npm run bench -- --family gemm-bf16-step --preset base --threads 1 --clock cpu
//     (the bf16 step's operands: fp32 master weights rounded as packed, bf16 activations and gradients)
//
// Each case is warmed up, then run until --min-ms has passed (at least --min-runs times); the
// median time is reported with GFLOP/s or GB/s. Families: bench/cases/<family>.ts.
//   ... --match 'bf16 fwd': only the cases whose name contains the text
//   ... --clock cpu: process CPU time instead of wall time (a shared machine; meaningful with --threads 1)
import { writeFileSync } from 'node:fs';

import { Engine } from '../lib/engine/index.js';
import type { CaseList } from './cases/types.js';
import { presets, type Preset } from './presets.js';
import { clockName, timeCase } from './timing.js';

const families: Record<string, () => Promise<{ cases: CaseList }>> = {
  gemm: () => import('./cases/gemm.js'),
  'gemm-bf16-step': async () => ({ cases: (await import('./cases/gemm.js')).stepCases }),
  attention: () => import('./cases/attention.js'),
  elementwise: () => import('./cases/elementwise.js'),
  loss: () => import('./cases/loss.js'),
};

// Run only when --family names them.
const optIn = new Set(['gemm-bf16-step']);

function arg(name: string, def?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}

export interface BenchRow {
  preset: string;
  family: string;
  name: string;
  ms: number;
  gflops?: number;
  gbs?: number;
}

async function main(): Promise<void> {
  const threads = Number(arg('threads', '0'));
  const only = arg('family');
  const presetNames = (arg('preset') ?? 'tiny,base').split(',') as Preset['name'][];
  const minMs = Number(arg('min-ms', '300'));
  const minRuns = Number(arg('min-runs', '3'));
  const clock = clockName(arg('clock', 'wall') ?? 'wall');
  const match = arg('match');
  const engine = Engine.create({ device: 'cpu', threads });
  console.log(`engine: ${engine.describe()}`);
  const rows: BenchRow[] = [];
  try {
    for (const p of presetNames) {
      const preset = presets[p];
      if (!preset) throw new Error(`--preset: unknown preset '${p}' (tiny, base)`);
      for (const [fam, load] of Object.entries(families)) {
        if (only ? !only.split(',').includes(fam) : optIn.has(fam)) continue;
        const { cases } = await load();
        for (const c of cases(preset)) {
          if (match && !c.name.includes(match)) continue;
          const ms = timeCase(engine, c, minMs, minRuns, clock);
          const row: BenchRow = { preset: p, family: fam, name: c.name, ms };
          if (c.flops) row.gflops = c.flops / (ms * 1e6);
          if (c.bytes) row.gbs = c.bytes / (ms * 1e6);
          rows.push(row);
          const rate =
            row.gflops !== undefined
              ? `${row.gflops.toFixed(1)} GFLOP/s`
              : row.gbs !== undefined
                ? `${row.gbs.toFixed(2)} GB/s`
                : '';
          console.log(
            `${p.padEnd(5)} ${fam.padEnd(12)} ${c.name.padEnd(58)} ${ms.toFixed(3).padStart(10)} ms  ${rate}`,
          );
        }
      }
    }
  } finally {
    engine.dispose();
  }
  const out = arg('json');
  if (out) writeFileSync(out, JSON.stringify({ engine: 'cpu', threads, clock, rows }, null, 2));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
