// The one string that selects a dataset (the --data flag):
//
//   <path>                  image folder, ImageNet layout: <path>/<class>/<image>, or <path>/{train,val}/<class>/<image>
//   idx:<dir>               IDX files (MNIST format) in <dir>: train-images-idx3-ubyte[.gz] + labels, t10k-* for val
//   mnist                   the 10,000 MNIST digits shipped in assets/mnist
//   synthetic[:<n>[:<k>]]   n seeded procedural images (default 2000) in k classes (default 10)
import { DataError } from './errors.js';

export type DataSpec =
  | { kind: 'folder'; root: string }
  | { kind: 'idx'; dir: string }
  | { kind: 'mnist' }
  | { kind: 'synthetic'; count: number; classes: number };

export const DATA_SPEC_HELP = "expected a folder path, 'idx:<dir>', 'mnist' or 'synthetic[:<count>[:<classes>]]'";

function positiveInt(text: string, what: string, spec: string, min: number): number {
  if (!/^\d+$/.test(text))
    throw new DataError(`data spec '${spec}': ${what} must be an integer >= ${min}, found '${text}'`);
  const v = Number(text);
  if (!Number.isSafeInteger(v) || v < min)
    throw new DataError(`data spec '${spec}': ${what} must be an integer >= ${min}, found ${text}`);
  return v;
}

export function parseDataSpec(spec: string): DataSpec {
  if (typeof spec !== 'string' || spec.trim() === '') throw new DataError(`data spec is empty: ${DATA_SPEC_HELP}`);
  const s = spec.trim();
  if (s === 'mnist') return { kind: 'mnist' };
  if (s === 'synthetic' || s.startsWith('synthetic:')) {
    const parts = s.split(':').slice(1);
    if (parts.length > 2) throw new DataError(`data spec '${spec}': expected 'synthetic[:<count>[:<classes>]]'`);
    const count = parts[0] !== undefined ? positiveInt(parts[0], 'count', spec, 1) : 2000;
    const classes = parts[1] !== undefined ? positiveInt(parts[1], 'classes', spec, 2) : 10;
    if (classes > count)
      throw new DataError(
        `data spec '${spec}': ${classes} classes need at least ${classes} images, found count ${count}`,
      );
    return { kind: 'synthetic', count, classes };
  }
  if (s.startsWith('idx:')) {
    const dir = s.slice(4);
    if (dir === '') throw new DataError(`data spec '${spec}': expected 'idx:<dir>' with a directory`);
    return { kind: 'idx', dir };
  }
  // Anything else with a scheme-like prefix is a typo of a known kind rather than a folder name
  // (single letters are Windows drives: C:\data).
  const m = /^([a-z]+):/i.exec(s);
  if (m && m[1].length > 1) throw new DataError(`data spec '${spec}': unknown kind '${m[1]}:', ${DATA_SPEC_HELP}`);
  return { kind: 'folder', root: s };
}
