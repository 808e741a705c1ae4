// A sweep's cells: from a grid file (the cartesian product of flag lists, or an explicit list of
// configs) or a preset. Every cell is a set of config overrides on a common base; seeds are added by
// the runner. Keys are checked against the pretraining config here, before any run starts.
import { existsSync, readFileSync } from 'node:fs';

import { defaultConfig, type PretrainConfig } from '../train/config.js';

export type Overrides = Partial<PretrainConfig>;

export interface SweepCell {
  /** A readable, folder-safe name: "wCls=0.4,wPix=1" or the name a runs list gives. */
  name: string;
  overrides: Overrides;
}

/** How the report draws the cells: bars (one per cell) or kNN against one varied key per curve. */
export type SweepPlot = { kind: 'bars' } | { kind: 'curves'; keys: (keyof PretrainConfig & string)[] };

export interface SweepSpec {
  /** Where the cells came from (a file path or "preset <name>"), for errors and the report. */
  source: string;
  base: Overrides;
  cells: SweepCell[];
  seeds: number;
  plot: SweepPlot;
}

/** Keys a cell may not set: the runner owns the run folder and the seed of each repetition. */
const RUNNER_KEYS = new Set<string>(['out', 'seed']);

export function readGridFile(path: string): SweepSpec {
  if (!existsSync(path)) throw new Error(`sweep ${path}: no such file`);
  let obj: unknown;
  try {
    obj = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`sweep ${path}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  return parseGrid(obj, path);
}

/** { base?, grid?: {key: [values]}, runs?: [{name?, ...keys}], seeds? } -> cells. */
export function parseGrid(obj: unknown, source: string): SweepSpec {
  if (!isObject(obj)) throw new Error(`sweep ${source}: expected a JSON object with "grid" or "runs"`);
  for (const k of Object.keys(obj))
    if (!['base', 'grid', 'runs', 'seeds'].includes(k))
      throw new Error(`sweep ${source}: unknown field '${k}' (known: base, grid, runs, seeds)`);
  const base = checkOverrides(obj.base ?? {}, `${source}: base`, true);
  const seeds = obj.seeds ?? 1;
  if (!Number.isInteger(seeds) || (seeds as number) < 1)
    throw new Error(`sweep ${source}: "seeds" must be a positive integer, found ${JSON.stringify(seeds)}`);
  if ((obj.grid === undefined) === (obj.runs === undefined))
    throw new Error(
      `sweep ${source}: give exactly one of "grid" (lists of values to combine) or "runs" (a list of configs)`,
    );
  const cells = obj.grid !== undefined ? gridCells(obj.grid, source) : listCells(obj.runs, source);
  const varied = obj.grid !== undefined ? (Object.keys(obj.grid as object) as (keyof PretrainConfig & string)[]) : [];
  const plot: SweepPlot =
    varied.length === 1 && typeof (obj.grid as Record<string, unknown[]>)[varied[0]][0] === 'number'
      ? { kind: 'curves', keys: varied }
      : { kind: 'bars' };
  return { source, base, cells, seeds: seeds as number, plot };
}

function gridCells(grid: unknown, source: string): SweepCell[] {
  if (!isObject(grid) || !Object.keys(grid).length)
    throw new Error(`sweep ${source}: "grid" must be an object of key: [values]`);
  let cells: Overrides[] = [{}];
  for (const [k, values] of Object.entries(grid)) {
    if (!Array.isArray(values) || !values.length)
      throw new Error(
        `sweep ${source}: grid key '${k}' needs a non-empty list of values, found ${JSON.stringify(values)}`,
      );
    checkOverrides(Object.fromEntries(values.map((v) => [k, v]).slice(0, 1)), `${source}: grid`, false);
    cells = cells.flatMap((c) => values.map((v) => ({ ...c, [k]: v })));
  }
  return cells.map((o) => ({ name: cellName(o), overrides: o }));
}

function listCells(runs: unknown, source: string): SweepCell[] {
  if (!Array.isArray(runs) || !runs.length)
    throw new Error(`sweep ${source}: "runs" must be a non-empty list of configs`);
  const cells = runs.map((r, i) => {
    if (!isObject(r)) throw new Error(`sweep ${source}: runs[${i}] must be an object of settings`);
    const { name, ...rest } = r;
    if (name !== undefined && (typeof name !== 'string' || !/^[\w.,=+-]+$/.test(name)))
      throw new Error(
        `sweep ${source}: runs[${i}].name must use letters, digits and . , = + - _ only, found ${JSON.stringify(name)}`,
      );
    const overrides = checkOverrides(rest, `${source}: runs[${i}]`, false);
    return { name: (name as string | undefined) ?? cellName(overrides), overrides };
  });
  const seen = new Set<string>();
  for (const c of cells) {
    if (seen.has(c.name))
      throw new Error(`sweep ${source}: two runs are named '${c.name}' (each needs its own folder)`);
    seen.add(c.name);
  }
  return cells;
}

function checkOverrides(o: unknown, where: string, allowSeed: boolean): Overrides {
  if (!isObject(o)) throw new Error(`sweep ${where}: expected an object of settings, found ${JSON.stringify(o)}`);
  for (const k of Object.keys(o)) {
    if (!(k in defaultConfig))
      throw new Error(`sweep ${where}: unknown setting '${k}' (a pretrain config key, as in config.json)`);
    if (RUNNER_KEYS.has(k) && !(allowSeed && k === 'seed'))
      throw new Error(`sweep ${where}: '${k}' is set by the sweep for each run (use --out and --seeds)`);
  }
  return o as Overrides;
}

/** "wCls=0.4,wPix=1"; an empty override set is "base". */
export function cellName(o: Overrides): string {
  const parts = Object.entries(o).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : String(v)}`);
  return parts.length ? parts.join(',').replace(/[^\w.,=+-]/g, '_') : 'base';
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
