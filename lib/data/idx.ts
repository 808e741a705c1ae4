// IDX files (the MNIST format, also Fashion-MNIST, KMNIST, EMNIST), raw or gzipped.
//
// Header: two zero bytes, a dtype byte (0x08 = unsigned byte, the only one images and labels use),
// the number of dimensions, then each dimension as a big-endian uint32; data follows, row-major.
// `idx:<dir>` finds [<prefix>-]train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] (dots
// instead of the dash before idx are accepted too: train-images.idx3-ubyte), and t10k-* or test-*
// for the val split.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

import { DataError, errorMessage } from './errors.js';
import { PixelSource } from './pixels.js';

const DTYPE_NAMES: Record<number, string> = {
  0x08: 'unsigned byte',
  0x09: 'signed byte',
  0x0b: 'short',
  0x0c: 'int',
  0x0d: 'float',
  0x0e: 'double',
};

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}

/** Parse an IDX buffer (gzip detected by its magic bytes, not the file name). Only dtype u8. */
export function parseIdx(input: Uint8Array, path: string): IdxArray {
  let buf = input;
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      buf = gunzipSync(buf);
    } catch (e) {
      throw new DataError(`IDX file '${path}' starts like gzip but does not decompress: ${errorMessage(e)}`, path);
    }
  }
  if (buf.length < 4)
    throw new DataError(
      `IDX file '${path}' is too short for a header: expected at least 4 bytes, found ${buf.length}`,
      path,
    );
  if (buf[0] !== 0 || buf[1] !== 0) {
    throw new DataError(
      `IDX file '${path}' has a bad magic number: expected 00 00 <dtype> <ndims>, found ${hex(buf.subarray(0, 4))}`,
      path,
    );
  }
  const dtype = buf[2];
  if (dtype !== 0x08) {
    const name = DTYPE_NAMES[dtype] ?? 'unknown';
    throw new DataError(
      `IDX file '${path}' has dtype 0x${dtype.toString(16).padStart(2, '0')} (${name}): expected 0x08 (unsigned byte)`,
      path,
    );
  }
  const ndims = buf[3];
  if (ndims === 0) throw new DataError(`IDX file '${path}' has 0 dimensions: expected at least 1`, path);
  const header = 4 + 4 * ndims;
  if (buf.length < header)
    throw new DataError(
      `IDX file '${path}' is truncated in its header: ${ndims} dims need ${header} bytes, found ${buf.length}`,
      path,
    );
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dims: number[] = [];
  for (let d = 0; d < ndims; d++) dims.push(view.getUint32(4 + 4 * d, false));
  const expected = dims.reduce((a, b) => a * b, 1);
  const found = buf.length - header;
  if (found !== expected) {
    throw new DataError(
      `IDX file '${path}' has dims [${dims.join(', ')}] that need ${expected} data bytes, found ${found}${found < expected ? ' (truncated?)' : ''}`,
      path,
    );
  }
  return { dims, data: buf.subarray(header) };
}

export function readIdx(path: string): IdxArray {
  let raw: Uint8Array;
  try {
    raw = readFileSync(path);
  } catch (e) {
    throw new DataError(`IDX file '${path}' cannot be read: ${errorMessage(e)}`, path);
  }
  return parseIdx(raw, path);
}

export interface IdxSet {
  source: PixelSource;
  count: number;
  maxLabel: number;
}

/** An images file and its labels file as one in-memory source. */
export function loadIdxPair(imagesPath: string, labelsPath: string): IdxSet {
  const images = readIdx(imagesPath);
  const labels = readIdx(labelsPath);
  const d = images.dims;
  let channels: 1 | 3;
  if (d.length === 3) channels = 1;
  else if (d.length === 4 && (d[3] === 1 || d[3] === 3)) channels = d[3] as 1 | 3;
  else {
    throw new DataError(
      `IDX images file '${imagesPath}' has dims [${d.join(', ')}]: expected [count, rows, cols] or [count, rows, cols, 1|3]`,
      imagesPath,
    );
  }
  if (d[1] === 0 || d[2] === 0)
    throw new DataError(`IDX images file '${imagesPath}' has empty images: dims [${d.join(', ')}]`, imagesPath);
  const ld = labels.dims;
  if (!(ld.length === 1 || (ld.length === 2 && ld[1] === 1))) {
    throw new DataError(`IDX labels file '${labelsPath}' has dims [${ld.join(', ')}]: expected [count]`, labelsPath);
  }
  if (ld[0] !== d[0]) {
    throw new DataError(
      `IDX image/label count mismatch: '${imagesPath}' has ${d[0]} images but '${labelsPath}' has ${ld[0]} labels`,
      imagesPath,
    );
  }
  if (d[0] === 0) throw new DataError(`IDX images file '${imagesPath}' has no images`, imagesPath);
  let maxLabel = 0;
  for (const v of labels.data) maxLabel = Math.max(maxLabel, v);
  const source = PixelSource.create(images.data, labels.data, d[1], d[2], channels, imagesPath);
  return { source, count: d[0], maxLabel };
}

export interface IdxFiles {
  trainImages: string;
  trainLabels: string;
  valImages?: string;
  valLabels?: string;
}

function pick(
  dir: string,
  names: string[],
  set: string,
  kind: 'images' | 'labels',
  required: boolean,
): string | undefined {
  const rank = kind === 'images' ? '[34]' : '1';
  const re = new RegExp(`^(?:.*[-_.])?${set}-${kind}[-.]idx${rank}-ubyte(\\.gz)?$`, 'i');
  const hits = names.filter((n) => re.test(n));
  // The same file raw and gzipped: take the raw one (no decompression).
  const stems = new Set(hits.map((h) => h.replace(/\.gz$/i, '')));
  if (stems.size > 1) {
    throw new DataError(`idx folder '${dir}' has several ${set} ${kind} files (${hits.join(', ')}): expected one`, dir);
  }
  if (hits.length === 0) {
    if (required) {
      throw new DataError(
        `idx folder '${dir}' has no ${set} ${kind} file: expected ${set}-${kind}-idx${kind === 'images' ? 3 : 1}-ubyte[.gz] (found: ${names.slice(0, 12).join(', ') || 'nothing'}${names.length > 12 ? ', ...' : ''})`,
        dir,
      );
    }
    return undefined;
  }
  hits.sort((a, b) => Number(/\.gz$/i.test(a)) - Number(/\.gz$/i.test(b)));
  return join(dir, hits[0]);
}

export function findIdxFiles(dir: string): IdxFiles {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new DataError(`idx folder '${dir}' does not exist`, dir);
    if (code === 'ENOTDIR') throw new DataError(`idx folder '${dir}' is not a folder`, dir);
    throw new DataError(`idx folder '${dir}' cannot be read: ${errorMessage(e)}`, dir);
  }
  const trainImages = pick(dir, names, 'train', 'images', true)!;
  const trainLabels = pick(dir, names, 'train', 'labels', true)!;
  const valImages = pick(dir, names, '(?:t10k|test)', 'images', false);
  const valLabels = pick(dir, names, '(?:t10k|test)', 'labels', false);
  if ((valImages === undefined) !== (valLabels === undefined)) {
    throw new DataError(
      `idx folder '${dir}' has ${valImages ? `test images '${valImages}' but no test labels` : `test labels '${valLabels}' but no test images`}: expected both t10k-images and t10k-labels, or neither`,
      dir,
    );
  }
  return { trainImages, trainLabels, valImages, valLabels };
}
