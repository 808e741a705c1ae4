// Runs a sweep's cells one after another, each repetition in its own run folder
// (<out>/<cell>/seed-<s>), and collects their results. Resumable: a finished repetition (its
// cell.json says done or diverged) is skipped, an interrupted one continues from its checkpoint, so re-running
// the same command finishes the sweep. Every cell's config is validated before the first run.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { pretrain, type PretrainEvents, type RunStatus } from '../train/run.js';
import { resolveConfig, type PretrainConfig } from '../train/config.js';
import type { Overrides, SweepCell, SweepSpec } from './grid.js';

/** One repetition's outcome, as cell.json stores it. */
export interface RepResult {
  cell: string;
  seed: number;
  status: RunStatus;
  /** kNN top-1 by k, after pretraining and for the same network at random init. */
  knn: Record<string, number> | null;
  knnRandom: Record<string, number> | null;
  /** Linear-probe top-1 (with --set eval=knn,linear), of the student and of its random-init twin. */
  linear?: number | null;
  linearRandom?: number | null;
  seconds: number;
  folder: string;
}

export interface SweepOptions {
  out: string;
  /** Overrides of every cell (the command line's --set): base < cell < these. */
  fixed: Overrides;
  events: SweepEvents;
  interrupted?: () => boolean;
}

export interface SweepEvents {
  /** Before each repetition: its index, the total, and whether it is skipped or resumed. */
  start(i: number, n: number, cell: string, seed: number, how: 'new' | 'resumed' | 'skipped'): void;
  /** The events of the repetition's pretraining run. */
  run: PretrainEvents;
  done(r: RepResult): void;
}

/** A diverged repetition is a result (the weights may be what makes it diverge), not a failure. */
const FINAL = new Set<RunStatus>(['done', 'diverged']);

interface Rep {
  cell: SweepCell;
  seed: number;
  config: PretrainConfig;
  folder: string;
}

/** Every repetition's config, resolved and validated up front (an error names the cell). */
export function planSweep(spec: SweepSpec, opts: Pick<SweepOptions, 'out' | 'fixed'>): Rep[] {
  const seed0 = (opts.fixed.seed ?? spec.base.seed ?? 0) as number;
  const reps: Rep[] = [];
  for (const cell of spec.cells) {
    for (let s = 0; s < spec.seeds; s++) {
      const seed = seed0 + s;
      const folder = join(opts.out, cell.name, `seed-${seed}`);
      let config: PretrainConfig;
      try {
        config = resolveConfig({ ...spec.base, ...cell.overrides, ...opts.fixed, seed, out: folder }, {});
      } catch (err) {
        throw new Error(`sweep ${spec.source}, cell '${cell.name}': ${(err as Error).message}`, { cause: err });
      }
      reps.push({ cell, seed, config, folder });
    }
  }
  return reps;
}

/** Runs (or skips, or resumes) every repetition; stops early on an interrupt. */
export async function runSweep(
  spec: SweepSpec,
  opts: SweepOptions,
): Promise<{ results: RepResult[]; complete: boolean }> {
  const reps = planSweep(spec, opts);
  const results: RepResult[] = [];
  for (let i = 0; i < reps.length; i++) {
    const r = await runRep(reps[i], i, reps.length, opts);
    results.push(r);
    if (!FINAL.has(r.status)) return { results, complete: false };
  }
  return { results, complete: true };
}

async function runRep(rep: Rep, i: number, n: number, opts: SweepOptions): Promise<RepResult> {
  const recordPath = join(rep.folder, 'cell.json');
  const previous = readRecord(recordPath);
  if (previous && FINAL.has(previous.status)) {
    opts.events.start(i, n, rep.cell.name, rep.seed, 'skipped');
    return previous;
  }
  const resume = existsSync(join(rep.folder, 'checkpoints', 'latest.json')) ? rep.folder : undefined;
  opts.events.start(i, n, rep.cell.name, rep.seed, resume ? 'resumed' : 'new');
  mkdirSync(rep.folder, { recursive: true });
  const t0 = performance.now();
  const r = await pretrain(rep.config, { events: opts.events.run, resume, interrupted: opts.interrupted });
  const seconds = (performance.now() - t0) / 1000 + (previous?.seconds ?? 0);
  const result: RepResult = {
    cell: rep.cell.name,
    seed: rep.seed,
    status: r.status,
    knn: r.knn ?? null,
    knnRandom: r.knnRandom ?? null,
    linear: r.evals?.linear?.pretrained?.top1 ?? null,
    linearRandom: r.evals?.linear?.random_init?.top1 ?? null,
    seconds,
    folder: rep.folder,
  };
  writeFileSync(recordPath, JSON.stringify(result, null, 2) + '\n');
  opts.events.done(result);
  return result;
}

function readRecord(path: string): RepResult | null {
  if (!existsSync(path)) return null;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as RepResult;
  } catch {
    return null; // a record cut short by a kill: the repetition runs (or resumes) again
  }
}
