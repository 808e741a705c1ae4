// Image folders in the ImageNet layout, decoded with sharp (libvips).
//
//   root/<class>/<image>                 one set; a seeded stratified split makes train/val
//   root/train/<class>/..., root/val/... explicit splits (val classes must exist in train)
//
// Classes are the subfolder names sorted by code point (torchvision's ImageFolder order); images are
// .jpg/.jpeg/.png/.webp in any letter case, found recursively, sorted; other files are ignored and
// counted. Grayscale and alpha are converted to RGB (alpha dropped, like PIL's convert('RGB')); EXIF
// orientation is not applied (PIL does not either). A file that fails to decode, including a
// truncated one (failOn 'truncated', like PIL's refusal of truncated files; benign decoder warnings
// such as "extraneous bytes before marker", which PIL ignores, pass), throws SampleReadError; the
// loader replaces that sample and reports the path once. libvips decodes only the rows a crop needs,
// so a truncated JPEG fails only for crops that reach past its intact rows.
import { readdirSync, statSync, type Dirent } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { isMainThread } from 'node:worker_threads';

import type SharpModule from 'sharp';

import type { ImageSource, Plan, SourceImage, FolderHandle } from './source.js';
import { DataError, SampleReadError, errorMessage } from './errors.js';
import { toRGB } from './resample.js';
import { DATA_SPEC_HELP } from './spec.js';

export type { FolderHandle };

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp'] as const;

export interface FolderScan {
  root: string;
  classNames: string[];
  paths: string[]; // relative to root
  labels: number[];
  /** Files that are not images by extension (skipped silently, counted). */
  ignored: number;
}

function isImageName(name: string): boolean {
  const dot = name.lastIndexOf('.');
  if (dot < 0) return false;
  const ext = name.slice(dot).toLowerCase();
  return (IMAGE_EXTENSIONS as readonly string[]).includes(ext);
}

function readDir(dir: string, what: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new DataError(`${what} '${dir}' does not exist`, dir);
    if (code === 'ENOTDIR') throw new DataError(`${what} '${dir}' is not a folder`, dir);
    throw new DataError(`${what} '${dir}' cannot be read: ${errorMessage(e)}`, dir);
  }
}

function isDir(path: string, entry: Dirent): boolean {
  if (entry.isDirectory()) return true;
  if (!entry.isSymbolicLink()) return false;
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Image files under dir (recursive, sorted by relative path), relative to base. */
function walkImages(dir: string, rel: string, out: string[], counts: { ignored: number }): void {
  const entries = readDir(dir, 'folder').filter((e) => !e.name.startsWith('.'));
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const full = join(dir, e.name);
    const relPath = rel ? `${rel}${sep}${e.name}` : e.name;
    if (isDir(full, e)) walkImages(full, relPath, out, counts);
    else if (isImageName(e.name)) out.push(relPath);
    else counts.ignored++;
  }
}

/**
 * Scan root/<class>/<image>. With `classNames`, the class list is fixed (a val split mapped onto the
 * train classes) and every subfolder must be one of them.
 */
export function scanFolder(root: string, classNames?: readonly string[]): FolderScan {
  let st;
  try {
    st = statSync(root);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new DataError(`data folder '${root}' does not exist (${DATA_SPEC_HELP})`, root);
    throw new DataError(`data folder '${root}' cannot be read: ${errorMessage(e)}`, root);
  }
  if (!st.isDirectory()) throw new DataError(`data folder '${root}' is not a folder (${DATA_SPEC_HELP})`, root);
  const entries = readDir(root, 'data folder').filter((e) => !e.name.startsWith('.'));
  const dirs = entries.filter((e) => isDir(join(root, e.name), e)).map((e) => e.name);
  dirs.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (dirs.length === 0) {
    throw new DataError(
      `data folder '${root}' has no class subfolders: expected ${join(root, '<class>', '<image>')} (found ${entries.length} file(s) and no folders)`,
      root,
    );
  }
  const names = classNames ? [...classNames] : dirs;
  const classIndex = new Map(names.map((n, i) => [n, i]));
  const paths: string[] = [];
  const labels: number[] = [];
  const counts = { ignored: 0 };
  for (const cls of dirs) {
    const label = classIndex.get(cls);
    if (label === undefined) {
      throw new DataError(
        `class folder '${join(root, cls)}' has no matching class among the ${names.length} train classes`,
        join(root, cls),
      );
    }
    const files: string[] = [];
    const before = counts.ignored;
    walkImages(join(root, cls), cls, files, counts);
    if (files.length === 0) {
      const other = counts.ignored - before;
      throw new DataError(
        `class folder '${join(root, cls)}' has no images (expected ${IMAGE_EXTENSIONS.join(', ')}; found ${other} other file(s))`,
        join(root, cls),
      );
    }
    for (const f of files) {
      paths.push(f);
      labels.push(label);
    }
  }
  return { root, classNames: names, paths, labels, ignored: counts.ignored };
}

// sharp is loaded on first use, so that importing the data module costs nothing for in-memory data.
type Sharp = typeof SharpModule;
let sharpPromise: Promise<Sharp> | undefined;
function loadSharp(): Promise<Sharp> {
  sharpPromise ??= import('sharp').then((m) => {
    const sharp = ((m as unknown as { default?: Sharp }).default ?? m) as Sharp;
    sharp.cache(false); // every file is read once per epoch: caching only costs memory
    // Loader workers are the parallelism; libvips threads per image would oversubscribe the cores.
    if (!isMainThread) sharp.concurrency(1);
    return sharp;
  });
  return sharpPromise;
}

const GENERIC_VIPS_LINE = /^(Unknown error|Warning treated as error due to failOn setting|error in tile \d+ x \d+)$/;

/**
 * One line from a sharp/libvips error. libvips keeps one error buffer for all threads, so with several
 * decodes in flight a message comes back repeated, mixed with 'error in tile' lines, or lost (sharp
 * then has only its generic 'Unknown error').
 */
export function decoderMessage(e: unknown): string {
  const lines = new Set(
    errorMessage(e)
      .split('\n')
      .map((l) => l.trim()),
  );
  const useful = [...lines].filter((l) => l !== '' && !GENERIC_VIPS_LINE.test(l));
  return useful.length > 0 ? useful.join('; ') : 'corrupt or truncated image data (the decoder gave no details)';
}

export class FolderSource implements ImageSource {
  private constructor(private readonly h: FolderHandle) {}

  static create(scan: FolderScan): FolderSource {
    const count = scan.paths.length;
    let total = 0;
    for (const p of scan.paths) total += Buffer.byteLength(p, 'utf8');
    const bytes = new Uint8Array(new SharedArrayBuffer(Math.max(total, 1)), 0, total);
    const offsets = new Float64Array(new SharedArrayBuffer((count + 1) * 8));
    const labels = new Int32Array(new SharedArrayBuffer(Math.max(count, 1) * 4), 0, count);
    const view = Buffer.from(bytes.buffer, 0, total);
    let off = 0;
    for (let j = 0; j < count; j++) {
      offsets[j] = off;
      off += view.write(scan.paths[j], off, 'utf8');
      labels[j] = scan.labels[j];
    }
    offsets[count] = off;
    return new FolderSource({ kind: 'folder', root: scan.root, bytes, offsets, labels, count });
  }

  static fromHandle(h: FolderHandle): FolderSource {
    return new FolderSource(h);
  }

  handle(): FolderHandle {
    return this.h;
  }

  get count(): number {
    return this.h.count;
  }

  labelOf(j: number): number {
    return this.h.labels[j];
  }

  whereOf(j: number): string {
    const { bytes, offsets } = this.h;
    const rel = Buffer.from(bytes.buffer, bytes.byteOffset + offsets[j], offsets[j + 1] - offsets[j]).toString('utf8');
    return join(this.h.root, rel);
  }

  async open(j: number): Promise<SourceImage> {
    const path = this.whereOf(j);
    const sharp = await loadSharp();
    let buf: Buffer;
    let width: number | undefined;
    let height: number | undefined;
    try {
      buf = await readFile(path);
      const meta = await sharp(buf).metadata();
      width = meta.width;
      height = meta.height;
    } catch (e) {
      throw new SampleReadError(`${path}: ${decoderMessage(e)}`, path);
    }
    if (!width || !height) throw new SampleReadError(`${path}: no image size in the header`, path);
    return {
      width,
      height,
      render: async (plan: Plan, outW: number, outH: number) => {
        try {
          let p = sharp(buf, { failOn: 'truncated' });
          if (plan.kind === 'crop') {
            p = p
              .extract({ left: plan.x, top: plan.y, width: plan.w, height: plan.h })
              .resize(outW, outH, { fit: 'fill', kernel: 'linear' });
          } else {
            p = p
              .resize(plan.rw, plan.rh, { fit: 'fill', kernel: 'linear' })
              .extract({ left: plan.left, top: plan.top, width: outW, height: outH });
          }
          const { data, info } = await p.raw().toBuffer({ resolveWithObject: true });
          if (info.width !== outW || info.height !== outH)
            throw new Error(`decoded ${info.width}x${info.height}, expected ${outW}x${outH}`);
          return toRGB(new Uint8Array(data.buffer, data.byteOffset, data.length), info.channels, outW * outH);
        } catch (e) {
          throw new SampleReadError(`${path}: ${decoderMessage(e)}`, path);
        }
      },
    };
  }
}

/** Synchronous existence check used by openData to pick the layout. */
export function hasSubfolder(root: string, name: string): boolean {
  try {
    return statSync(join(root, name)).isDirectory();
  } catch {
    return false;
  }
}
