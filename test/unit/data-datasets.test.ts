// Datasets from real files: image folders (JPEG/PNG/WebP, gray, RGBA, nested), IDX (raw, gzip, bad
// headers), the bundled MNIST digits; layouts, labels, splits and every pre-training error message.
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { decoderMessage } from '../../lib/data/folder.js';
import { openData } from '../../lib/data/open.js';
import { parseIdx } from '../../lib/data/idx.js';
import { produceSample } from '../../lib/data/sample.js';
import { resolveTransform, sampleParams } from '../../lib/data/transforms.js';
import { CLASS_RGB, makeImageFolder, tempDir, writeIdx, idxBytes, type FolderFixture } from '../helpers/data.js';

const tmp = tempDir('data-datasets');
let fx: FolderFixture;

beforeAll(async () => {
  fx = await makeImageFolder(join(tmp.dir, 'flat'));
});
afterAll(() => tmp.cleanup());

describe('image folder', () => {
  test('decoder messages: one line, repeats and tile noise dropped, a lost message named', () => {
    const premature = 'VipsJpeg: premature end of JPEG image';
    expect(decoderMessage(new Error(`${premature}\n${premature}\n`))).toBe(premature);
    expect(decoderMessage(new Error(`Input buffer has corrupt header: ${premature}`))).toBe(
      `Input buffer has corrupt header: ${premature}`,
    );
    expect(
      decoderMessage(
        new Error('Warning treated as error due to failOn setting\nerror in tile 0 x 8\nerror in tile 0 x 0'),
      ),
    ).toBe('corrupt or truncated image data (the decoder gave no details)');
    expect(decoderMessage(new Error('Unknown error'))).toBe(
      'corrupt or truncated image data (the decoder gave no details)',
    );
  });

  test('classes sorted, labels, formats, nested files, non-images ignored', async () => {
    const d = await openData(fx.root, { valFraction: 0 });
    expect(d.val).toBeNull();
    expect(d.classNames).toEqual(['ant', 'bee', 'cat']);
    expect(d.train.length).toBe(9);
    expect(d.notes.join('\n')).toMatch(/ignored 1 non-image file/);
    const expected = Object.entries(fx.images).flatMap(([cls, files]) =>
      files.map((f) => [join(fx.root, f), ['ant', 'bee', 'cat'].indexOf(cls)]),
    );
    expect(Array.from({ length: 9 }, (_, i) => [d.train.where(i), d.train.label(i)])).toEqual(expected);
  });

  test('every format decodes to RGB of the right colour; gray replicated, alpha dropped', async () => {
    const d = await openData(fx.root, { valFraction: 0 });
    for (let i = 0; i < d.train.length; i++) {
      const { data, width, height } = await d.train.loadRGB(i);
      expect(data.length).toBe(width * height * 3);
      const mean = [0, 1, 2].map((c) => {
        let s = 0;
        for (let p = 0; p < width * height; p++) s += data[3 * p + c];
        return s / (width * height);
      });
      const path = d.train.where(i);
      const gray = /a2\.PNG|b3\.jpg/.test(path);
      const want = gray ? [128, 128, 128] : CLASS_RGB[d.classNames[d.train.label(i)]];
      for (let c = 0; c < 3; c++) expect(Math.abs(mean[c] - want[c]), `${path} channel ${c}`).toBeLessThan(8);
    }
    const sized = await d.train.loadFloat(0, 8);
    expect(sized.length).toBe(3 * 64);
    for (const v of sized) expect(v >= 0 && v <= 1).toBe(true);
  });

  test('seeded stratified split: deterministic, disjoint, per class, seed-dependent', async () => {
    const root = join(tmp.dir, 'many');
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#336699' } })
      .png()
      .toBuffer();
    for (const cls of ['x', 'y']) {
      mkdirSync(join(root, cls), { recursive: true });
      for (let k = 0; k < 20; k++) writeFileSync(join(root, cls, `${k}.png`), png);
    }
    const a = await openData(root, { valFraction: 0.25 });
    const b = await openData(root, { valFraction: 0.25 });
    const c = await openData(root, { valFraction: 0.25, splitSeed: 5 });
    const names = (ds: typeof a.val) => Array.from({ length: ds!.length }, (_, i) => ds!.where(i));
    expect(a.train.length).toBe(30);
    expect(a.val!.length).toBe(10);
    expect(names(a.val)).toEqual(names(b.val));
    expect(names(a.val)).not.toEqual(names(c.val));
    expect(a.val!.labels().filter((l) => l === 0).length).toBe(5);
    const trainSet = new Set(names(a.train));
    for (const v of names(a.val)) expect(trainSet.has(v)).toBe(false);
    expect(a.train.split).toBe('train');
  });

  test('train/val layout: val mapped onto train classes', async () => {
    const root = join(tmp.dir, 'tv');
    await makeImageFolder(join(root, 'train'));
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#2040e0' } })
      .png()
      .toBuffer();
    mkdirSync(join(root, 'val', 'cat'), { recursive: true });
    writeFileSync(join(root, 'val', 'cat', 'v.png'), png);
    const d = await openData(root);
    expect(d.train.length).toBe(9);
    expect(d.val!.length).toBe(1);
    expect(d.val!.label(0)).toBe(2);
    expect(d.val!.classNames).toEqual(['ant', 'bee', 'cat']);
    mkdirSync(join(root, 'val', 'dog'));
    writeFileSync(join(root, 'val', 'dog', 'v.png'), png);
    await expect(openData(root)).rejects.toThrow(
      `class folder '${join(root, 'val', 'dog')}' has no matching class among the 3 train classes`,
    );
  });

  test('errors name the path and what was expected', async () => {
    const missing = join(tmp.dir, 'nope');
    await expect(openData(missing)).rejects.toThrow(
      `data folder '${missing}' does not exist (expected a folder path, 'idx:<dir>', 'mnist'`,
    );
    const file = join(tmp.dir, 'file.jpg');
    writeFileSync(file, 'x');
    await expect(openData(file)).rejects.toThrow(`data folder '${file}' is not a folder`);
    const flat = join(tmp.dir, 'flatfiles');
    mkdirSync(flat);
    writeFileSync(join(flat, 'a.jpg'), 'x');
    await expect(openData(flat)).rejects.toThrow(
      `data folder '${flat}' has no class subfolders: expected ${join(flat, '<class>', '<image>')} (found 1 file(s) and no folders)`,
    );
    const empty = join(tmp.dir, 'emptyclass');
    mkdirSync(join(empty, 'a'), { recursive: true });
    mkdirSync(join(empty, 'b'), { recursive: true });
    writeFileSync(join(empty, 'a', 'x.png'), 'x');
    writeFileSync(join(empty, 'b', 'readme.txt'), 'x');
    await expect(openData(empty)).rejects.toThrow(
      `class folder '${join(empty, 'b')}' has no images (expected .jpg, .jpeg, .png, .webp; found 1 other file(s))`,
    );
    if (process.getuid?.() !== 0) {
      // Root reads anything, so the unreadable case is only testable as a normal user.
      const locked = join(tmp.dir, 'locked');
      mkdirSync(locked);
      chmodSync(locked, 0o000);
      await expect(openData(locked)).rejects.toThrow(/data folder '.*locked' cannot be read/);
      chmodSync(locked, 0o755);
    }
  });

  test('RandomResizedCrop on a gradient file: geometry as computed, flip mirrors it', async () => {
    const root = join(tmp.dir, 'grad');
    const W = 48; // one source pixel = 5.4 levels: a one-pixel shift fails the check below
    const H = 40;
    const px = Buffer.alloc(W * H * 3);
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++)
        px.set([Math.round((x * 255) / (W - 1)), Math.round((y * 255) / (H - 1)), 90], (y * W + x) * 3);
    mkdirSync(join(root, 'g'), { recursive: true });
    writeFileSync(
      join(root, 'g', 'grad.png'),
      await sharp(px, { raw: { width: W, height: H, channels: 3 } })
        .png()
        .toBuffer(),
    );
    const d = await openData(root, { valFraction: 0 });
    const S = 16;
    const none = { normalize: 'none' as const };
    const noFlip = resolveTransform({ size: S, train: true, hflip: 0, ...none });
    const flip = resolveTransform({ size: S, train: true, hflip: 1, ...none });
    const a = new Float32Array(3 * S * S);
    const b = new Float32Array(3 * S * S);
    await produceSample(d.train, 0, noFlip, 11, 2, a, 0);
    await produceSample(d.train, 0, flip, 11, 2, b, 0);
    const { plan } = sampleParams(noFlip, W, H, 11, 2, 0);
    if (plan.kind !== 'crop') throw new Error('expected a crop');
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        for (let c = 0; c < 3; c++) expect(b[c * S * S + y * S + x]).toBe(a[c * S * S + y * S + (S - 1 - x)]);
        if (x === 0 || x === S - 1 || y === 0 || y === S - 1) continue;
        // Red = source x / (W - 1), green = source y / (H - 1) at the output pixel's center.
        const sx = plan.x + ((x + 0.5) * plan.w) / S - 0.5;
        const sy = plan.y + ((y + 0.5) * plan.h) / S - 0.5;
        expect(Math.abs(a[y * S + x] - sx / (W - 1))).toBeLessThan(2.5 / 255);
        expect(Math.abs(a[S * S + y * S + x] - sy / (H - 1))).toBeLessThan(2.5 / 255);
      }
    }
  });
});

describe('IDX', () => {
  const n = 30;
  const rows = 6;
  const cols = 5;
  const images = new Uint8Array(n * rows * cols).map((_, k) => (k * 13) % 256);
  const labels = new Uint8Array(n).map((_, k) => k % 3);

  test('raw and gzipped, dashed and dotted names, t10k as val', async () => {
    const dir = join(tmp.dir, 'idx-a');
    mkdirSync(dir);
    writeIdx(join(dir, 'train-images-idx3-ubyte.gz'), [n, rows, cols], images, { gzip: true });
    writeIdx(join(dir, 'train-labels-idx1-ubyte'), [n], labels);
    writeIdx(join(dir, 't10k-images.idx3-ubyte'), [4, rows, cols], images.subarray(0, 4 * rows * cols));
    writeIdx(join(dir, 't10k-labels.idx1-ubyte.gz'), [4], new Uint8Array([3, 0, 1, 2]), { gzip: true });
    const d = await openData(`idx:${dir}`);
    expect(d.train.length).toBe(n);
    expect(d.val!.length).toBe(4);
    expect(d.classNames).toEqual(['0', '1', '2', '3']);
    expect(d.val!.label(0)).toBe(3);
    expect(d.train.label(7)).toBe(1);
    const img = await d.train.loadRGB(7);
    expect([img.width, img.height]).toEqual([cols, rows]);
    for (let p = 0; p < rows * cols; p++)
      for (let c = 0; c < 3; c++) expect(img.data[3 * p + c]).toBe(images[7 * rows * cols + p]);
    expect(d.train.where(7)).toBe(`${join(dir, 'train-images-idx3-ubyte.gz')}#7`);
  });

  test('no test files: seeded split of train', async () => {
    const dir = join(tmp.dir, 'idx-b');
    mkdirSync(dir);
    writeIdx(join(dir, 'fashion-train-images-idx3-ubyte'), [n, rows, cols], images);
    writeIdx(join(dir, 'fashion-train-labels-idx1-ubyte'), [n], labels);
    const d = await openData(`idx:${dir}`, { valFraction: 0.2 });
    expect(d.train.length + d.val!.length).toBe(n);
    expect(d.val!.length).toBe(6);
  });

  test('bad files: magic, dtype, dims, truncated, count mismatch, missing', async () => {
    const data = new Uint8Array(2 * 2 * 2);
    expect(() => parseIdx(new Uint8Array([1, 2, 8, 1, 0, 0, 0, 0]), 'f')).toThrow(
      "IDX file 'f' has a bad magic number: expected 00 00 <dtype> <ndims>, found 01 02 08 01",
    );
    expect(() => parseIdx(idxBytes([2, 2, 2], new Uint8Array(32), 0x0d), 'f')).toThrow(
      "IDX file 'f' has dtype 0x0d (float): expected 0x08 (unsigned byte)",
    );
    expect(() => parseIdx(idxBytes([2, 2, 2], data.subarray(0, 5)), 'f')).toThrow(
      "IDX file 'f' has dims [2, 2, 2] that need 8 data bytes, found 5 (truncated?)",
    );
    expect(() => parseIdx(new Uint8Array([0, 0]), 'f')).toThrow(
      "IDX file 'f' is too short for a header: expected at least 4 bytes, found 2",
    );
    expect(() => parseIdx(new Uint8Array([0, 0, 8, 3, 0, 0]), 'f')).toThrow(
      "IDX file 'f' is truncated in its header: 3 dims need 16 bytes, found 6",
    );
    expect(() => parseIdx(new Uint8Array([0x1f, 0x8b, 1, 2, 3]), 'f')).toThrow(
      /IDX file 'f' starts like gzip but does not decompress/,
    );

    const dir = join(tmp.dir, 'idx-bad');
    mkdirSync(dir);
    await expect(openData(`idx:${dir}`)).rejects.toThrow(
      `idx folder '${dir}' has no train images file: expected train-images-idx3-ubyte[.gz] (found: nothing)`,
    );
    await expect(openData(`idx:${join(dir, 'nope')}`)).rejects.toThrow(
      `idx folder '${join(dir, 'nope')}' does not exist`,
    );
    writeIdx(join(dir, 'train-images-idx3-ubyte'), [n, rows, cols], images);
    writeIdx(join(dir, 'train-labels-idx1-ubyte'), [n - 1], labels.subarray(1));
    await expect(openData(`idx:${dir}`)).rejects.toThrow(
      `IDX image/label count mismatch: '${join(dir, 'train-images-idx3-ubyte')}' has ${n} images but '${join(dir, 'train-labels-idx1-ubyte')}' has ${n - 1} labels`,
    );
    writeIdx(join(dir, 'train-labels-idx1-ubyte'), [n], labels);
    writeIdx(join(dir, 'train-images-idx3-ubyte'), [n, rows * cols], images);
    await expect(openData(`idx:${dir}`)).rejects.toThrow(
      `has dims [${n}, ${rows * cols}]: expected [count, rows, cols] or [count, rows, cols, 1|3]`,
    );
    writeIdx(join(dir, 'train-images-idx3-ubyte'), [n, rows, cols], images);
    writeIdx(join(dir, 't10k-images-idx3-ubyte'), [n, rows, cols], images);
    await expect(openData(`idx:${dir}`)).rejects.toThrow(
      /has test images '.*t10k-images-idx3-ubyte' but no test labels: expected both t10k-images and t10k-labels, or neither/,
    );
  });
});

describe('bundled MNIST', () => {
  test('10 classes, 90/10 split per class, deterministic, real digits', async () => {
    const a = await openData('mnist');
    const b = await openData('mnist');
    expect(a.classNames).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect(a.train.length + a.val!.length).toBe(10000);
    expect(a.val!.length).toBeGreaterThan(990);
    expect(a.val!.length).toBeLessThan(1010);
    const counts = new Array(10).fill(0);
    for (const l of a.val!.labels()) counts[l]++;
    for (const c of counts) expect(c).toBeGreaterThanOrEqual(86); // digit 5 has 863 images
    expect(Array.from(a.val!.indices!.subarray(0, 50))).toEqual(Array.from(b.val!.indices!.subarray(0, 50)));
    const img = await a.train.loadRGB(0);
    expect([img.width, img.height]).toEqual([28, 28]);
    let ink = 0;
    for (let p = 0; p < 784; p++) {
      expect(img.data[3 * p]).toBe(img.data[3 * p + 1]);
      ink += Number(img.data[3 * p] > 128);
    }
    expect(ink).toBeGreaterThan(40); // a digit, not a blank
    expect(ink).toBeLessThan(400);
  });
});
