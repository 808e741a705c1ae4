// `medic-native sweep`: many pretraining runs from a grid file or a preset, each evaluated (kNN),
// repeated over seeds, summarised as mean +- std in sweep.md / sweep.html. Re-running the same
// command resumes: finished runs are skipped, an interrupted one continues from its checkpoint.
import { type Command, Option } from 'commander';

import {
  presetNames,
  presetSpec,
  readGridFile,
  sweep,
  type Overrides,
  type SweepEvents,
  type SweepSpec,
} from '../sweep/index.js';
import { defaultConfig } from '../train/config.js';
import { Progress } from './progress.js';

export interface SweepCliOptions {
  preset?: string;
  seeds?: string;
  out: string;
  set: string[];
  json?: boolean;
}

/** --set key=value (repeatable): settings of every run, in config.json's keys; values as JSON where they parse. */
export function parseSets(sets: string[]): Overrides {
  const out: Record<string, unknown> = {};
  for (const s of sets) {
    const eq = s.indexOf('=');
    if (eq < 1) throw new Error(`--set ${s}: expected key=value (a config key as in config.json, e.g. epochs=10)`);
    const key = s.slice(0, eq);
    const raw = s.slice(eq + 1);
    if (!(key in defaultConfig)) throw new Error(`--set ${s}: unknown setting '${key}'`);
    if (key === 'out') throw new Error(`--set ${s}: the sweep places each run under --out`);
    const def = (defaultConfig as unknown as Record<string, unknown>)[key];
    out[key] = typeof def === 'number' ? Number(raw) : Array.isArray(def) ? raw.split(',').map(Number) : raw;
    if (typeof def === 'number' && !Number.isFinite(out[key]))
      throw new Error(`--set ${s}: '${key}' expects a number, got '${raw}'`);
  }
  return out as Overrides;
}

function specOf(grid: string | undefined, o: SweepCliOptions): SweepSpec {
  if (grid && o.preset) throw new Error('sweep: give a grid file or --preset, not both');
  if (!grid && !o.preset) throw new Error(`sweep: give a grid file or --preset (${presetNames.join(', ')})`);
  const seeds = o.seeds === undefined ? undefined : Number(o.seeds);
  if (seeds !== undefined && (!Number.isInteger(seeds) || seeds < 1))
    throw new Error(`--seeds: expected a positive integer, got '${o.seeds}'`);
  const spec = grid ? readGridFile(grid) : presetSpec(o.preset!, 3);
  return seeds === undefined ? spec : { ...spec, seeds };
}

function sweepEvents(json: boolean): SweepEvents {
  const progress = new Progress(process.stderr);
  const out = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
  const say = (line: string) => {
    progress.clear();
    console.log(line);
  };
  return {
    start: (i, n, cell, seed, how) =>
      json
        ? out({ event: 'run', index: i + 1, of: n, cell, seed, how })
        : say(`[${i + 1}/${n}] ${cell} seed ${seed}: ${how}`),
    done: (r) => {
      const k = r.knn ? Math.max(...Object.keys(r.knn).map(Number)) : 0;
      if (json) out({ event: 'result', ...r });
      else
        say(
          `  ${r.status}${r.knn ? `: kNN k=${k} ${(100 * r.knn[k]).toFixed(2)}% (random init ${r.knnRandom ? (100 * r.knnRandom[k]).toFixed(2) : 'n/a'}%)` : ''} in ${r.seconds.toFixed(0)} s`,
        );
    },
    run: {
      info: () => {},
      warn: (line) => (json ? out({ event: 'warning', message: line }) : say(`  warning: ${line}`)),
      progress: (p) => (json ? undefined : progress.update(p)),
      metrics: () => {},
      eval: () => {},
    },
  };
}

export async function runSweepCli(grid: string | undefined, o: SweepCliOptions): Promise<number> {
  const spec = specOf(grid, o);
  let stop = false;
  const onSigint = () => {
    if (stop) process.exit(130);
    stop = true;
  };
  process.on('SIGINT', onSigint);
  try {
    const r = await sweep(spec, {
      out: o.out,
      fixed: parseSets(o.set),
      events: sweepEvents(!!o.json),
      interrupted: () => stop,
    });
    if (o.json)
      process.stdout.write(JSON.stringify({ event: 'summary', complete: r.complete, summary: r.summary }) + '\n');
    else
      console.log(
        `\n${r.summary.cells.length} cells x ${spec.seeds} seed(s)${r.complete ? '' : ' (stopped early: run the same command to resume)'}: ${o.out}/sweep.md, sweep.html, sweep.json`,
      );
    return r.complete ? 0 : 130;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

export function registerSweep(program: Command): void {
  program
    .command('sweep [grid]')
    .description(
      "run a grid of pretraining configs (or a preset of the paper's comparisons) over seeds, with kNN, as a table with mean +- std",
    )
    .addOption(new Option('--preset <name>', 'a built-in sweep instead of a grid file').choices([...presetNames]))
    .option(
      '--seeds <n>',
      "repetitions of each cell with seeds seed, seed+1, ... (default: the grid file's, 3 for presets)",
    )
    .option(
      '--out <dir>',
      'sweep folder: one run folder per cell and seed, sweep.json, sweep.md, sweep.html',
      'runs/sweep',
    )
    .option(
      '--set <key=value>',
      'a setting of every run, as in config.json (repeatable)',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option('--json', 'print JSON lines (run, result, summary) instead of text')
    .addHelpText(
      'after',
      `
A grid file: {"base": {settings}, "grid": {"key": [values, ...], ...}, "seeds": 3}  (the cartesian product)
         or: {"base": {settings}, "runs": [{"name": "a", settings}, ...]}
Presets: ablation (token / token+pixel / token+CLS / all three), masking (block, random 0.4 and 0.75,
evolved em and hc), weights (w_cls in 0.1..2, w_pix in 0.5..2, one at a time). Budget on the bundled
digits at the default 40 epochs: about 2.5 min per run on 2 cores (see README, Science).

Examples:
  $ medic-native sweep --preset ablation --out runs/ablation
  $ medic-native sweep --preset weights --set lossBalance=ema --out runs/weights-ema
  $ medic-native sweep my-grid.json --seeds 3 --set epochs=10 --set data=idx:./fashion`,
    )
    .action(async (grid: string | undefined, o: SweepCliOptions) => {
      const code = await runSweepCli(grid, o);
      if (code !== 0) process.exitCode = code;
    });
}
