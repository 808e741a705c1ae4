// Checkpoints: everything a run needs to continue exactly where it stopped.
//
// One safetensors file per checkpoint: tensors "params", "adam.m", "adam.v" (flat f32 buffers laid out
// by the parameter table) and metadata "medic" = JSON of the training state (step, epoch, data position,
// seeds, config, parameter table). Files are written to a temporary name and renamed (writeSafetensors),
// and `latest.json` is replaced the same way, so a crash at any moment leaves the previous checkpoint
// intact and `latest.json` pointing at a complete file. Metadata "crc32c" holds the CRC32C of the
// training state and of each tensor; a load verifies them and names the file and the tensor that
// fails (checkpoints written before checksums load with a note).
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';

import type { CompiledGraph } from '../graph/compile.js';
import { crc32cHex } from './crc32c.js';
import { SafetensorsFile, writeSafetensors } from './safetensors.js';

export interface ParamEntry {
  name: string;
  shape: number[];
  offset: number;
}

/** The parameter table of a compiled graph's group (the trainable one by default), as checkpoints store it. */
export function paramTable(cg: CompiledGraph, group: 'train' | 'frozen' = 'train'): ParamEntry[] {
  return cg.params
    .filter((p) => p.group === group)
    .map((p) => ({ name: p.name, shape: [...p.shape], offset: p.offset }));
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
  /** One-line notes for the user (a checkpoint written before checksums). */
  notes: string[];
}

const FORMAT = 'medic-native/checkpoint@1';
const TENSORS = ['params', 'adam.m', 'adam.v'] as const;
const STEP_FILE = /^step-(\d+)\.safetensors$/;

function atomicWriteText(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

const bytesOf = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/**
 * Writes <dir>/<name>.safetensors and points <dir>/latest.json at it. Keeps the newest `keep` of this
 * run's step files: only files of lower steps are pruned, so the file latest.json names, and any
 * higher step this run did not write, are never removed.
 */
export function saveCheckpoint(
  dir: string,
  ck: Omit<Checkpoint, 'path' | 'notes'>,
  opts: { name?: string; keep?: number } = {},
): string {
  mkdirSync(dir, { recursive: true });
  const n = ck.params.length;
  if (ck.m.length !== n || ck.v.length !== n)
    throw new Error(`saveCheckpoint: params (${n}), m (${ck.m.length}) and v (${ck.v.length}) differ in length`);
  const name = opts.name ?? `step-${String(ck.state.step).padStart(8, '0')}`;
  const path = join(dir, `${name}.safetensors`);
  const medic = JSON.stringify(ck.state);
  // CRC32C of the training state and of each tensor's bytes: a flipped bit anywhere is found at load.
  const crc = {
    medic: crc32cHex(Buffer.from(medic, 'utf8')),
    params: crc32cHex(bytesOf(ck.params)),
    'adam.m': crc32cHex(bytesOf(ck.m)),
    'adam.v': crc32cHex(bytesOf(ck.v)),
  };
  writeSafetensors(
    path,
    {
      params: { dtype: 'F32', shape: [n], data: ck.params },
      'adam.m': { dtype: 'F32', shape: [n], data: ck.m },
      'adam.v': { dtype: 'F32', shape: [n], data: ck.v },
    },
    { format: FORMAT, medic, crc32c: JSON.stringify(crc) },
  );
  atomicWriteText(join(dir, 'latest.json'), JSON.stringify({ file: basename(path), step: ck.state.step }) + '\n');
  const keep = opts.keep ?? 2;
  const older = readdirSync(dir)
    .map((f) => ({ f, m: STEP_FILE.exec(f) }))
    .filter((x) => x.m && Number(x.m[1]) < ck.state.step && x.f !== basename(path))
    .sort((a, b) => Number(b.m![1]) - Number(a.m![1]))
    .slice(Math.max(0, keep - 1));
  for (const { f } of older) unlinkSync(join(dir, f));
  return path;
}

/** A checkpoint file, or a run folder / checkpoints folder (its latest.json is followed). */
export function resolveCheckpoint(pathOrDir: string): string {
  if (!existsSync(pathOrDir)) throw new Error(`checkpoint ${pathOrDir}: no such file or folder`);
  if (statSync(pathOrDir).isFile()) return pathOrDir;
  for (const dir of [pathOrDir, join(pathOrDir, 'checkpoints')]) {
    const latest = join(dir, 'latest.json');
    if (existsSync(latest)) {
      let file: unknown;
      try {
        file = (JSON.parse(readFileSync(latest, 'utf8')) as { file?: unknown } | null)?.file;
      } catch (err) {
        throw new Error(`checkpoint ${latest}: not valid JSON (${(err as Error).message})`, { cause: err });
      }
      if (typeof file !== 'string' || (!STEP_FILE.test(file) && !/^[\w.-]+\.safetensors$/.test(file)))
        throw new Error(
          `checkpoint ${latest}: field 'file' is ${JSON.stringify(file)}, expected the name of a .safetensors file in ${dir}`,
        );
      const p = join(dir, file);
      if (!existsSync(p)) throw new Error(`checkpoint ${latest} points at ${file}, which does not exist`);
      return p;
    }
  }
  throw new Error(
    `checkpoint ${pathOrDir}: a folder without latest.json (expected a run folder, its checkpoints/ folder, or a .safetensors file)`,
  );
}

type Header = { path: string; state: TrainState; crc: Record<string, string> | null };

/** Opens a checkpoint's header: format, checksums, and the verified and validated training state. */
function readHeader(f: SafetensorsFile, path: string): Header {
  const meta = f.metadata;
  if (meta.format !== FORMAT)
    throw new Error(
      `checkpoint ${path}: not a medic-native checkpoint (metadata format is ${JSON.stringify(meta.format ?? null)}, expected ${FORMAT})`,
    );
  let crc: Record<string, string> | null = null;
  if (meta.crc32c !== undefined) {
    try {
      crc = JSON.parse(meta.crc32c) as Record<string, string>;
    } catch {
      crc = null;
    }
    const keys = ['medic', ...TENSORS];
    if (
      !crc ||
      typeof crc !== 'object' ||
      !keys.every((k) => typeof crc![k] === 'string' && /^[0-9a-f]{8}$/.test(crc![k]))
    )
      throw new Error(
        `checkpoint ${path}: metadata field 'crc32c' is ${JSON.stringify(meta.crc32c)}, expected 8-hex-digit CRC32C values of ${keys.join(', ')}`,
      );
  }
  if (typeof meta.medic !== 'string')
    throw new Error(`checkpoint ${path}: metadata field 'medic' (the training state) is missing`);
  if (crc) {
    const got = crc32cHex(Buffer.from(meta.medic, 'utf8'));
    if (got !== crc.medic)
      throw new Error(
        `checkpoint ${path}: the training state (metadata 'medic') fails its CRC32C check (stored ${crc.medic}, computed ${got}): the file is corrupted`,
      );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(meta.medic);
  } catch (err) {
    throw new Error(`checkpoint ${path}: training state is not valid JSON (${(err as Error).message})`, { cause: err });
  }
  return { path, state: validateTrainState(path, raw), crc };
}

/** Only the training state of a checkpoint (reads the header, not the tensors). */
export function readCheckpointState(pathOrDir: string): { path: string; state: TrainState } {
  const path = resolveCheckpoint(pathOrDir);
  const f = new SafetensorsFile(path);
  try {
    const { state } = readHeader(f, path);
    return { path, state };
  } finally {
    f.close();
  }
}

export function loadCheckpoint(pathOrDir: string): Checkpoint {
  const path = resolveCheckpoint(pathOrDir);
  const f = new SafetensorsFile(path);
  try {
    const { state, crc } = readHeader(f, path);
    const read: Record<string, Float32Array> = {};
    for (const k of TENSORS) {
      const t = f.tensors.get(k);
      if (!t) throw new Error(`checkpoint ${path}: tensor '${k}' is missing`);
      if (t.dtype !== 'F32' || t.shape.length !== 1)
        throw new Error(
          `checkpoint ${path}: tensor '${k}' is ${t.dtype}${JSON.stringify(t.shape)}, expected a flat F32 tensor`,
        );
      const data = f.read(k) as Float32Array;
      if (crc) {
        const got = crc32cHex(bytesOf(data));
        if (got !== crc[k])
          throw new Error(
            `checkpoint ${path}: tensor '${k}' fails its CRC32C check (stored ${crc[k]}, computed ${got}): the file is corrupted`,
          );
      }
      read[k] = data;
    }
    const { params, 'adam.m': m, 'adam.v': v } = read;
    if (m.length !== params.length || v.length !== params.length)
      throw new Error(`checkpoint ${path}: optimizer state and parameters differ in length`);
    const end = state.paramTable.reduce((a, p) => Math.max(a, p.offset + p.shape.reduce((x, y) => x * y, 1)), 0);
    if (end > params.length)
      throw new Error(
        `checkpoint ${path}: the parameter table spans ${end} values, tensor 'params' holds ${params.length}`,
      );
    const notes = crc
      ? []
      : [`checkpoint ${path} has no checksums (written before they were added): its data cannot be verified`];
    return { state, params, m, v, path, notes };
  } finally {
    f.close();
  }
}

/** The training state's fields, checked so that a damaged one is named here rather than failing later. */
export function validateTrainState(path: string, raw: unknown): TrainState {
  const bad = (field: string, v: unknown, expected: string): never => {
    throw new Error(
      `checkpoint ${path}: training state field '${field}' is ${JSON.stringify(v) ?? 'missing'}, expected ${expected}`,
    );
  };
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const count = (field: string, v: unknown) => {
    if (!Number.isSafeInteger(v) || (v as number) < 0) bad(field, v, 'a non-negative integer');
  };
  if (!isObj(raw)) return bad('(root)', raw, 'an object');
  const s = raw;
  count('step', s.step);
  count('epoch', s.epoch);
  if (!isObj(s.dataPosition)) bad('dataPosition', s.dataPosition, 'an object {epoch, index}');
  const dp = s.dataPosition as Record<string, unknown>;
  count('dataPosition.epoch', dp.epoch);
  count('dataPosition.index', dp.index);
  count('seed', s.seed);
  if (!isObj(s.config)) bad('config', s.config, 'an object of settings');
  if (!Array.isArray(s.paramTable) || s.paramTable.length === 0)
    bad('paramTable', s.paramTable, 'a non-empty list of {name, shape, offset}');
  const names = new Set<string>();
  (s.paramTable as unknown[]).forEach((p, i) => {
    if (!isObj(p)) bad(`paramTable[${i}]`, p, 'an object {name, shape, offset}');
    const e = p as Record<string, unknown>;
    if (typeof e.name !== 'string' || e.name === '' || names.has(e.name))
      bad(`paramTable[${i}].name`, e.name, 'a unique parameter name');
    names.add(e.name as string);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      bad(`paramTable[${i}].shape`, e.shape, 'a list of non-negative integers');
    count(`paramTable[${i}].offset`, e.offset);
  });
  if (s.extra !== undefined && !isObj(s.extra)) bad('extra', s.extra, 'an object');
  for (const k of ['knn', 'knnRandom']) {
    const v = (s.extra as Record<string, unknown> | undefined)?.[k];
    if (v !== undefined && (!isObj(v) || !Object.values(v).every((x) => typeof x === 'number' && x >= 0 && x <= 1)))
      bad(`extra.${k}`, v, 'an object of accuracies in [0, 1]');
  }
  return s as unknown as TrainState;
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
    throw new Error(
      `checkpoint ${path} does not fit this model (${problems.length} difference(s)): ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? '; ...' : ''}`,
    );
}
