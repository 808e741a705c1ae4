// Small real image folders for the data tests, written with sharp into os.tmpdir().
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

import sharp from 'sharp';

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `medic-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Class colours: a class's images are dominated by its colour, so a label can be checked from pixels. */
export const CLASS_RGB: Record<string, [number, number, number]> = {
  ant: [220, 40, 40],
  bee: [40, 200, 40],
  cat: [40, 60, 220],
};

/** W x H RGB with a horizontal ramp on top of the class colour (so crops and flips are visible). */
export function rampRGB(width: number, height: number, rgb: [number, number, number]): Buffer {
  const px = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      const t = (x / Math.max(width - 1, 1)) * 30 - 15;
      for (let c = 0; c < 3; c++) px[o + c] = Math.max(0, Math.min(255, Math.round(rgb[c] + t)));
    }
  }
  return px;
}

async function encode(
  px: Buffer,
  width: number,
  height: number,
  format: 'jpeg' | 'png' | 'webp',
  mode: 'rgb' | 'gray' | 'rgba' = 'rgb',
): Promise<Buffer> {
  let img = sharp(px, { raw: { width, height, channels: 3 } });
  if (mode === 'gray') img = img.grayscale();
  if (mode === 'rgba') img = img.ensureAlpha(0.6);
  if (format === 'jpeg') return img.jpeg({ quality: 95 }).toBuffer();
  if (format === 'png') return img.png().toBuffer();
  return img.webp({ quality: 95 }).toBuffer();
}

export interface FolderFixture {
  root: string;
  /** Relative paths of the readable images per class, sorted as the scanner sorts them. */
  images: Record<string, string[]>;
  corrupt: string[];
}

/**
 * root/ant: JPEG RGB, grayscale PNG (upper-case .PNG), WebP
 * root/bee: RGBA PNG, .JPEG, grayscale JPEG, notes.txt  (+ truncated.jpg when broken)
 * root/cat: two JPEGs, one PNG in a nested folder        (+ corrupt.jpg of random bytes when broken)
 */
export async function makeImageFolder(root: string, opts: { broken?: boolean } = {}): Promise<FolderFixture> {
  const write = async (
    rel: string,
    cls: string,
    format: 'jpeg' | 'png' | 'webp',
    mode: 'rgb' | 'gray' | 'rgba',
    w: number,
    h: number,
  ) => {
    const full = join(root, rel);
    mkdirSync(join(full, '..'), { recursive: true });
    const rgb = mode === 'gray' ? ([128, 128, 128] as [number, number, number]) : CLASS_RGB[cls];
    writeFileSync(full, await encode(rampRGB(w, h, rgb), w, h, format, mode));
  };
  await Promise.all([
    write('ant/a1.jpg', 'ant', 'jpeg', 'rgb', 40, 30),
    write('ant/a2.PNG', 'ant', 'png', 'gray', 32, 32),
    write('ant/a3.webp', 'ant', 'webp', 'rgb', 30, 44),
    write('bee/b1.png', 'bee', 'png', 'rgba', 36, 36),
    write('bee/b2.JPEG', 'bee', 'jpeg', 'rgb', 50, 32),
    write('bee/b3.jpg', 'bee', 'jpeg', 'gray', 28, 40),
    write('cat/c1.jpg', 'cat', 'jpeg', 'rgb', 48, 36),
    write('cat/c2.jpg', 'cat', 'jpeg', 'rgb', 36, 48),
    write('cat/sub/c3.png', 'cat', 'png', 'rgb', 40, 40),
  ]);
  writeFileSync(join(root, 'bee', 'notes.txt'), 'not an image\n');
  const corrupt: string[] = [];
  if (opts.broken) {
    const jpg = await encode(rampRGB(200, 150, CLASS_RGB.bee), 200, 150, 'jpeg');
    writeFileSync(join(root, 'bee', 'truncated.jpg'), jpg.subarray(0, jpg.length >> 1));
    const junk = Buffer.alloc(600);
    for (let k = 0; k < junk.length; k++) junk[k] = (k * 7919 + 13) & 255;
    writeFileSync(join(root, 'cat', 'corrupt.jpg'), junk);
    corrupt.push(join(root, 'bee', 'truncated.jpg'), join(root, 'cat', 'corrupt.jpg'));
  }
  const images: Record<string, string[]> = {
    ant: ['ant/a1.jpg', 'ant/a2.PNG', 'ant/a3.webp'],
    bee: opts.broken
      ? ['bee/b1.png', 'bee/b2.JPEG', 'bee/b3.jpg', 'bee/truncated.jpg']
      : ['bee/b1.png', 'bee/b2.JPEG', 'bee/b3.jpg'],
    cat: opts.broken
      ? ['cat/c1.jpg', 'cat/c2.jpg', 'cat/corrupt.jpg', 'cat/sub/c3.png']
      : ['cat/c1.jpg', 'cat/c2.jpg', 'cat/sub/c3.png'],
  };
  return { root, images, corrupt };
}

/** An IDX file: 00 00 <dtype> <ndims>, big-endian dims, data. */
export function idxBytes(dims: number[], data: Uint8Array, dtype = 0x08): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = dtype;
  header[3] = dims.length;
  dims.forEach((d, k) => header.writeUInt32BE(d, 4 + 4 * k));
  return Buffer.concat([header, Buffer.from(data)]);
}

export function writeIdx(
  path: string,
  dims: number[],
  data: Uint8Array,
  opts: { gzip?: boolean; dtype?: number } = {},
): void {
  const bytes = idxBytes(dims, data, opts.dtype);
  writeFileSync(path, opts.gzip ? gzipSync(bytes) : bytes);
}
