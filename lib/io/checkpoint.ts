// Checkpoints: everything a run needs to continue exactly where it stopped.
//
// One safetensors file per checkpoint: tensors "params", "adam.m", "adam.v" (flat f32 buffers laid out
// by the parameter table) and metadata "medic" = JSON of the training state (step, epoch, data position,
// seeds, config, parameter table). Files are written to a temporary name and renamed (writeSafetensors),
// and `latest.json` is replaced the same way, so a crash at any moment leaves the previous checkpoint
// intact and `latest.json` pointing at a complete file.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

import type { CompiledGraph } from '../graph/compile.js';
import { SafetensorsFile, writeSafetensors } from './safetensors.js';

export interface ParamEntry {
  name: string;
  shape: number[];
  offset: number;
}

/** The parameter table of a compiled graph's group (the trainable one by default), as checkpoints store it. */
export function paramTable(cg: CompiledGraph, group: 'train' | 'frozen' = 'train'): ParamEntry[] {
  return cg.params.filter((p) => p.group === group).map((p) => ({ name: p.name, shape: [...p.shape], offset: p.offset }));
}

export interface TrainState {
  step: number;
  epoch: number;
  /** Position of the next batch in the data order. */
  dataPosition: { epoch: number; index: number };
  seed: number;
  config: Record<string, unknown>;
  paramTable: ParamEntry[];
  /** Extra bookkeeping the trainer wants back (best metrics, wall time, ...). */
  extra?: Record<string, unknown>;
}

export interface Checkpoint {
  state: TrainState;
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
  path: string;
}

const FORMAT = 'medic-native/checkpoint@1';

function atomicWriteText(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** Writes checkpoints/<name>.safetensors and points checkpoints/latest.json at it; keeps the newest `keep`. */
export function saveCheckpoint(dir: string, ck: Omit<Checkpoint, 'path'>, opts: { name?: string; keep?: number } = {}): string {
  mkdirSync(dir, { recursive: true });
  const n = ck.params.length;
  if (ck.m.length !== n || ck.v.length !== n) throw new Error(`saveCheckpoint: params (${n}), m (${ck.m.length}) and v (${ck.v.length}) differ in length`);
  const name = opts.name ?? `step-${String(ck.state.step).padStart(8, '0')}`;
  const path = join(dir, `${name}.safetensors`);
  writeSafetensors(
    path,
    {
      params: { dtype: 'F32', shape: [n], data: ck.params },
      'adam.m': { dtype: 'F32', shape: [n], data: ck.m },
      'adam.v': { dtype: 'F32', shape: [n], data: ck.v },
    },
    { format: FORMAT, medic: JSON.stringify(ck.state) },
  );
  atomicWriteText(join(dir, 'latest.json'), JSON.stringify({ file: basename(path), step: ck.state.step }) + '\n');
  const keep = opts.keep ?? 2;
  const old = readdirSync(dir)
    .filter((f) => /^step-\d+\.safetensors$/.test(f))
    .sort()
    .reverse()
    .slice(keep);
  for (const f of old) unlinkSync(join(dir, f));
  return path;
}

/** A checkpoint file, or a run folder / checkpoints folder (its latest.json is followed). */
export function resolveCheckpoint(pathOrDir: string): string {
  if (!existsSync(pathOrDir)) throw new Error(`checkpoint ${pathOrDir}: no such file or folder`);
  if (statSync(pathOrDir).isFile()) return pathOrDir;
  for (const dir of [pathOrDir, join(pathOrDir, 'checkpoints')]) {
    const latest = join(dir, 'latest.json');
    if (existsSync(latest)) {
      let file: string;
      try {
        file = (JSON.parse(readFileSync(latest, 'utf8')) as { file: string }).file;
      } catch (err) {
        throw new Error(`checkpoint ${latest}: not valid JSON (${(err as Error).message})`, { cause: err });
      }
      const p = join(dir, file);
      if (!existsSync(p)) throw new Error(`checkpoint ${latest} points at ${file}, which does not exist`);
      return p;
    }
  }
  throw new Error(`checkpoint ${pathOrDir}: a folder without latest.json (expected a run folder, its checkpoints/ folder, or a .safetensors file)`);
}

/** Only the training state of a checkpoint (reads the header, not the tensors). */
export function readCheckpointState(pathOrDir: string): { path: string; state: TrainState } {
  const path = resolveCheckpoint(pathOrDir);
  const f = new SafetensorsFile(path);
  try {
    if (f.metadata.format !== FORMAT)
      throw new Error(`checkpoint ${path}: not a medic-native checkpoint (metadata format is ${JSON.stringify(f.metadata.format ?? null)}, expected ${FORMAT})`);
    return { path, state: JSON.parse(f.metadata.medic) as TrainState };
  } finally {
    f.close();
  }
}

export function loadCheckpoint(pathOrDir: string): Checkpoint {
  const path = resolveCheckpoint(pathOrDir);
  const f = new SafetensorsFile(path);
  try {
    if (f.metadata.format !== FORMAT)
      throw new Error(`checkpoint ${path}: not a medic-native checkpoint (metadata format is ${JSON.stringify(f.metadata.format ?? null)}, expected ${FORMAT})`);
    for (const k of ['params', 'adam.m', 'adam.v']) if (!f.tensors.has(k)) throw new Error(`checkpoint ${path}: tensor '${k}' is missing`);
    let state: TrainState;
    try {
      state = JSON.parse(f.metadata.medic) as TrainState;
    } catch (err) {
      throw new Error(`checkpoint ${path}: training state is not valid JSON (${(err as Error).message})`, { cause: err });
    }
    const params = f.readF32('params');
    const m = f.readF32('adam.m');
    const v = f.readF32('adam.v');
    if (m.length !== params.length || v.length !== params.length) throw new Error(`checkpoint ${path}: optimizer state and parameters differ in length`);
    return { state, params, m, v, path };
  } finally {
    f.close();
  }
}

/**
 * Checks that a checkpoint's parameter table fits the model built from the current config; the error
 * lists the first differences (missing, unexpected, or differently shaped parameters).
 */
export function checkParamTable(path: string, saved: ParamEntry[], current: ParamEntry[]): void {
  const a = new Map(saved.map((p) => [p.name, p]));
  const b = new Map(current.map((p) => [p.name, p]));
  const problems: string[] = [];
  for (const [name, p] of b) {
    const q = a.get(name);
    if (!q) problems.push(`missing ${name} ${JSON.stringify(p.shape)}`);
    else if (JSON.stringify(q.shape) !== JSON.stringify(p.shape) || q.offset !== p.offset)
      problems.push(`${name}: checkpoint has ${JSON.stringify(q.shape)}, the model needs ${JSON.stringify(p.shape)}`);
  }
  for (const name of a.keys()) if (!b.has(name)) problems.push(`unexpected ${name}`);
  if (problems.length)
    throw new Error(`checkpoint ${path} does not fit this model (${problems.length} difference(s)): ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? '; ...' : ''}`);
}
