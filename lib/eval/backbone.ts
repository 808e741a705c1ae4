// What an evaluation starts from: a pretraining checkpoint (or run folder) read once, the effective
// pretraining config (with the evaluation's data / device overrides), and either its student weights
// or none (the random-init twin: the same network as the run initialised it, for --from-scratch).
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

import { openData, type OpenedData } from '../data/index.js';
import { loadCheckpoint } from '../io/checkpoint.js';
import { resolveConfig, type PretrainConfig } from '../train/config.js';
import type { FeatureExtractor } from './features.js';

export interface Backbone {
  /** The checkpoint file read. */
  checkpoint: string;
  /** Its run folder (where eval/ results go by default). */
  runDir: string;
  step: number;
  config: PretrainConfig;
  /** Student weights (flat) and their table; null for the random-init twin. */
  params: Float32Array | null;
  table: { name: string; offset: number; shape: number[] }[];
  fromScratch: boolean;
}

export interface BackboneOverrides {
  data?: string;
  device?: string;
  threads?: string | number;
  workers?: string | number;
}

export function openBackbone(path: string, o: BackboneOverrides, fromScratch: boolean): Backbone {
  const ck = loadCheckpoint(path);
  const saved = ck.state.config as Partial<PretrainConfig>;
  const config = resolveConfig(saved, {
    data: o.data,
    device: o.device,
    threads: o.threads,
    workers: o.workers,
  } as never);
  const dir = dirname(ck.path);
  const runDir =
    existsSync(path) && statSync(path).isDirectory() ? path : basename(dir) === 'checkpoints' ? dirname(dir) : dir;
  return {
    checkpoint: ck.path,
    runDir,
    step: ck.state.step,
    config,
    params: fromScratch ? null : ck.params,
    table: ck.state.paramTable,
    fromScratch,
  };
}

/** Loads the backbone's weights into a feature extractor (or its seeded random init). */
export async function loadInto(fx: FeatureExtractor, b: Backbone): Promise<void> {
  if (b.params) fx.load(b.params, b.table);
  else await fx.initRandom(b.config.seed);
}

export async function openEvalData(
  b: Backbone,
  what: string,
): Promise<OpenedData & { val: NonNullable<OpenedData['val']> }> {
  const data = await openData(b.config.data);
  if (!data.val || data.val.length === 0)
    throw new Error(`${what}: the data '${b.config.data}' has no val split to evaluate on`);
  return data as OpenedData & { val: NonNullable<OpenedData['val']> };
}

/** `<run>/eval/<name>[-scratch]` unless --out says otherwise. */
export function defaultOut(b: Backbone, name: string, out?: string): string {
  return out ?? join(b.runDir, 'eval', b.fromScratch ? `${name}-scratch` : name);
}

/** Write text atomically (temp name + rename). */
export function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** Metrics lines up to (and including) `step`: a resumed run continues the file without duplicates. */
export function keepMetricsUpTo(path: string, step: number): void {
  if (!existsSync(path)) return;
  const kept = readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l && (JSON.parse(l) as { step: number }).step <= step);
  writeAtomic(path, kept.map((l) => l + '\n').join(''));
}
