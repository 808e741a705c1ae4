// Spec strings, RNG, RandomResizedCrop geometry, eval crop, resampling, normalisation and jitter:
// everything of the data pipeline that needs no files.
import { describe, expect, test } from 'vitest';

import { parseDataSpec } from '../../lib/data/spec.js';
import { Rng, Stream, permutation } from '../../lib/util/rng.js';
import { resampleBox, toRGB } from '../../lib/data/resample.js';
import { renderPixels } from '../../lib/data/pixels.js';
import {
  NORMALIZATIONS,
  evalPlan,
  randomResizedCropBox,
  renormalize,
  resolveNormalization,
  resolveTransform,
  roundHalfEven,
  sampleParams,
  writeImage,
} from '../../lib/data/transforms.js';
import { openData } from '../../lib/data/open.js';
import { produceSample } from '../../lib/data/sample.js';

describe('parseDataSpec', () => {
  test('every kind', () => {
    expect(parseDataSpec('mnist')).toEqual({ kind: 'mnist' });
    expect(parseDataSpec('synthetic')).toEqual({ kind: 'synthetic', count: 2000, classes: 10 });
    expect(parseDataSpec('synthetic:300')).toEqual({ kind: 'synthetic', count: 300, classes: 10 });
    expect(parseDataSpec('synthetic:300:4')).toEqual({ kind: 'synthetic', count: 300, classes: 4 });
    expect(parseDataSpec('idx:/data/mnist')).toEqual({ kind: 'idx', dir: '/data/mnist' });
    expect(parseDataSpec('/data/imagenet')).toEqual({ kind: 'folder', root: '/data/imagenet' });
    expect(parseDataSpec('./imgs')).toEqual({ kind: 'folder', root: './imgs' });
    expect(parseDataSpec('C:\\imgs')).toEqual({ kind: 'folder', root: 'C:\\imgs' });
  });
  test('clear errors', () => {
    expect(() => parseDataSpec('')).toThrow(/data spec is empty: expected a folder path, 'idx:<dir>', 'mnist'/);
    expect(() => parseDataSpec('idx:')).toThrow(/'idx:': expected 'idx:<dir>' with a directory/);
    expect(() => parseDataSpec('synthetic:abc')).toThrow(/'synthetic:abc': count must be an integer >= 1, found 'abc'/);
    expect(() => parseDataSpec('synthetic:0')).toThrow(/count must be an integer >= 1, found 0/);
    expect(() => parseDataSpec('synthetic:10:1')).toThrow(/classes must be an integer >= 2, found 1/);
    expect(() => parseDataSpec('synthetic:5:10')).toThrow(/10 classes need at least 10 images, found count 5/);
    expect(() => parseDataSpec('synthetic:1:2:3')).toThrow(/expected 'synthetic\[:<count>\[:<classes>\]\]'/);
    expect(() => parseDataSpec('imagenet:/x')).toThrow(/unknown kind 'imagenet:', expected a folder path, 'idx:<dir>'/);
  });
});

describe('Rng', () => {
  test('pure function of keys and counter; uniform', () => {
    const a = new Rng(1, 2, 3);
    const b = new Rng(1, 2, 3);
    const c = new Rng(1, 2, 4);
    const xs = Array.from({ length: 20000 }, () => a.uniform());
    expect(Array.from({ length: 20000 }, () => b.uniform())).toEqual(xs);
    expect(c.uniform()).not.toBe(xs[0]);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    // Buckets of int(10): each within 10 % of 2000.
    const r = new Rng(9);
    const counts = new Array(10).fill(0);
    for (let k = 0; k < 20000; k++) counts[r.int(10)]++;
    for (const n of counts) expect(Math.abs(n - 2000)).toBeLessThan(200);
    // Large keys (above 2^32) still separate streams.
    expect(new Rng(2 ** 40).u32()).not.toBe(new Rng(2 ** 40 + 2 ** 32).u32());
    expect(() => new Rng(-1)).toThrow(/non-negative safe integers, got -1/);
  });
  test('permutation is a permutation and depends on the stream', () => {
    const p = permutation(1000, new Rng(0, Stream.shuffle, 0));
    expect([...p].sort((x, y) => x - y)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(permutation(1000, new Rng(0, Stream.shuffle, 0))).toEqual(p);
    expect(permutation(1000, new Rng(0, Stream.shuffle, 1))).not.toEqual(p);
  });
});

describe('RandomResizedCrop', () => {
  test('roundHalfEven is Python round', () => {
    expect([0.5, 1.5, 2.5, -0.5, 2.4999, 2.5001, 3].map(roundHalfEven)).toEqual([0, 2, 2, 0, 2, 3, 3]);
  });
  test('boxes lie inside the image, area and ratio within range (up to rounding)', () => {
    const W = 500;
    const H = 375;
    for (let i = 0; i < 2000; i++) {
      const b = randomResizedCropBox(new Rng(7, i), W, H, [0.2, 1], [3 / 4, 4 / 3]);
      expect(b.x).toBeGreaterThanOrEqual(0);
      expect(b.y).toBeGreaterThanOrEqual(0);
      expect(b.x + b.w).toBeLessThanOrEqual(W);
      expect(b.y + b.h).toBeLessThanOrEqual(H);
      expect(Number.isInteger(b.x) && Number.isInteger(b.w)).toBe(true);
      const area = (b.w * b.h) / (W * H);
      const ratio = b.w / b.h;
      if (b.w === W && b.h === H) continue; // fallback
      expect(area).toBeGreaterThan(0.19);
      expect(area).toBeLessThan(1.01);
      expect(ratio).toBeGreaterThan(0.74);
      expect(ratio).toBeLessThan(1.345);
    }
  });
  test('fallback: center crop clamped to the ratio range', () => {
    // A 1000x10 strip: no box with ratio <= 4/3 and area >= 20 % fits, so every try fails.
    const b = randomResizedCropBox(new Rng(1), 1000, 10, [0.2, 1], [3 / 4, 4 / 3]);
    expect(b).toEqual({ x: Math.floor((1000 - 13) / 2), y: 0, w: 13, h: 10 });
    const t = randomResizedCropBox(new Rng(1), 10, 1000, [0.2, 1], [3 / 4, 4 / 3]);
    expect(t).toEqual({ x: 0, y: Math.floor((1000 - 13) / 2), w: 10, h: 13 });
    // Ratio inside the range but scale unreachable: the whole image.
    expect(randomResizedCropBox(new Rng(1), 10, 10, [2, 3], [1, 1])).toEqual({ x: 0, y: 0, w: 10, h: 10 });
  });
  test('sampleParams: deterministic per (seed, epoch, index), different across them', () => {
    const spec = resolveTransform({ size: 32, train: true, colorJitter: 0.4 });
    const p = sampleParams(spec, 200, 150, 3, 5, 17);
    expect(sampleParams(spec, 200, 150, 3, 5, 17)).toEqual(p);
    expect(sampleParams(spec, 200, 150, 4, 5, 17)).not.toEqual(p);
    expect(sampleParams(spec, 200, 150, 3, 6, 17)).not.toEqual(p);
    expect(sampleParams(spec, 200, 150, 3, 5, 18)).not.toEqual(p);
    expect(p.jitter!.order.slice().sort()).toEqual([0, 1, 2]);
    for (const f of p.jitter!.factors) expect(Math.abs(f - 1)).toBeLessThanOrEqual(0.4);
    // Flip frequency near 0.5.
    let flips = 0;
    for (let i = 0; i < 2000; i++) flips += Number(sampleParams(spec, 64, 64, 0, 0, i).flip);
    expect(Math.abs(flips - 1000)).toBeLessThan(100);
    expect(resolveTransform({ size: 32, train: true }).jitter).toEqual([0, 0, 0]);
    expect(sampleParams(resolveTransform({ size: 32, train: true }), 64, 64, 0, 0, 0).jitter).toBeNull();
  });
  test('eval: resize shorter side to floor(S / 0.875), center crop', () => {
    expect(evalPlan(500, 375, 224, 0.875)).toEqual({ kind: 'resizeCrop', rw: 341, rh: 256, left: 58, top: 16 });
    expect(evalPlan(375, 500, 224, 0.875)).toEqual({ kind: 'resizeCrop', rw: 256, rh: 341, left: 16, top: 58 });
    expect(evalPlan(28, 28, 28, 1)).toEqual({ kind: 'resizeCrop', rw: 28, rh: 28, left: 0, top: 0 });
  });
  test('option validation', () => {
    expect(() => resolveTransform({ size: 0, train: true })).toThrow(/size must be a positive integer, found 0/);
    expect(() => resolveTransform({ size: 8, train: true, scale: [0.5, 0.2] })).toThrow(/crop scale must satisfy/);
    expect(() => resolveTransform({ size: 8, train: true, hflip: 2 })).toThrow(
      /hflip probability must be in \[0, 1\], found 2/,
    );
    expect(() => resolveTransform({ size: 8, train: true, colorJitter: 1.5 })).toThrow(
      /color jitter must be in \[0, 1\)/,
    );
    expect(() => resolveTransform({ size: 8, train: false, cropPct: 0 })).toThrow(
      /cropPct must be in \(0, 1\], found 0/,
    );
    expect(() => resolveTransform({ size: 8, train: false, normalize: 'foo' })).toThrow(
      /normalisation 'foo': expected imagenet, clip, none/,
    );
  });
});

describe('resampling', () => {
  // A linear ramp v = 4x (+ 5y in G) must come out linear: the filter reproduces linear functions.
  const W = 64;
  const H = 48;
  const src = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) src.set([4 * x, 5 * y, 100], (y * W + x) * 3);

  test('crop box then resize, down and up', () => {
    for (const S of [16, 64]) {
      const out = resampleBox(src, W, H, 3, 10, 6, 42, 30, S, S);
      for (let x = 1; x < S - 1; x++) {
        const expected = 4 * (10 + ((x + 0.5) * 32) / S - 0.5);
        expect(Math.abs(out[(8 * S + x) * 3] - expected)).toBeLessThanOrEqual(1);
      }
      for (let y = 1; y < S - 1; y++) {
        const expected = 5 * (6 + ((y + 0.5) * 24) / S - 0.5);
        expect(Math.abs(out[(y * S + 5) * 3 + 1] - expected)).toBeLessThanOrEqual(1);
      }
      expect(out[(3 * S + 3) * 3 + 2]).toBe(100);
    }
  });
  test('an unscaled plan (a plain copy) gives the bytes the resampler gives', () => {
    const rng = new Rng(7, Stream.shuffle, 0, 0);
    for (const c of [1, 3] as const) {
      const img = Uint8Array.from({ length: 30 * 20 * c }, () => Math.floor(rng.uniform() * 256));
      // eval of 28 px digits at 28 px: the whole image; a centre window of it; a train crop of the output's size
      const cases = [
        [{ kind: 'resizeCrop', rw: 30, rh: 20, left: 0, top: 0 } as const, 30, 20, [0, 0, 30, 20]],
        [{ kind: 'resizeCrop', rw: 30, rh: 20, left: 5, top: 3 } as const, 16, 12, [5, 3, 21, 15]],
        [{ kind: 'crop', x: 7, y: 2, w: 9, h: 9 } as const, 9, 9, [7, 2, 16, 11]],
      ] as const;
      for (const [plan, w, h, box] of cases) {
        const clip = plan.kind === 'crop' ? box : undefined;
        const ref = resampleBox(img, 30, 20, c, box[0], box[1], box[2], box[3], w, h, clip);
        expect(renderPixels(img, 30, 20, c, plan, w, h)).toEqual(ref);
      }
    }
  });
  test('resize then crop equals the matching box', () => {
    const a = renderPixels(src, W, H, 3, { kind: 'resizeCrop', rw: 32, rh: 24, left: 4, top: 2 }, 16, 16);
    const b = resampleBox(src, W, H, 3, 8, 4, 40, 36, 16, 16);
    expect(a).toEqual(b);
  });
  test('identity and grayscale to RGB', () => {
    expect(resampleBox(src, W, H, 3, 0, 0, W, H, W, H)).toEqual(src);
    const g = new Uint8Array([0, 50, 100, 150]);
    expect(Array.from(resampleBox(g, 2, 2, 1, 0, 0, 2, 2, 2, 2))).toEqual([
      0, 0, 0, 50, 50, 50, 100, 100, 100, 150, 150, 150,
    ]);
    expect(Array.from(toRGB(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), 4, 2))).toEqual([1, 2, 3, 5, 6, 7]);
    expect(Array.from(toRGB(new Uint8Array([9, 255, 7, 0]), 2, 2))).toEqual([9, 9, 9, 7, 7, 7]);
  });
  test('crop then resize reads nothing outside the crop (torchvision: img.crop(box).resize())', () => {
    // 100 inside the box, 255 in the frame around it: any tap past the crop's edge shows.
    const framed = new Uint8Array(W * H).fill(255);
    for (let y = 6; y < 30; y++) framed.fill(100, y * W + 10, y * W + 42);
    for (const S of [7, 16, 40]) {
      const out = renderPixels(framed, W, H, 1, { kind: 'crop', x: 10, y: 6, w: 32, h: 24 }, S, S);
      expect(out.every((v) => v === 100)).toBe(true);
    }
  });
  test('matches PIL (Image.crop().resize(BILINEAR), Image.resize() then crop) within 1 level', () => {
    // 12x10 gray image; references from Pillow 9.4, whose horizontal pass rounds to uint8 (hence 1 level).
    // prettier-ignore
    const g = new Uint8Array([0, 37, 74, 111, 148, 185, 222, 3, 40, 77, 114, 151, 71, 117, 163, 209, 255, 45, 91, 137, 183, 229, 19, 65, 142, 197, 252, 51, 106, 161, 216, 154, 209, 8, 63, 118, 213, 21, 85, 149, 213, 160, 224, 32, 96, 43, 107, 171, 28, 101, 174, 247, 203, 20, 93, 49, 122, 195, 151, 224, 99, 181, 7, 228, 54, 136, 101, 183, 148, 230, 56, 21, 170, 5, 96, 70, 161, 135, 226, 200, 35, 9, 100, 74, 241, 85, 68, 168, 151, 251, 234, 78, 61, 161, 144, 244, 56, 165, 157, 10, 2, 250, 103, 95, 204, 196, 188, 41, 127, 245, 246, 247, 109, 110, 111, 229, 230, 231, 93, 94]);
    const crop = { kind: 'crop', x: 2, y: 1, w: 9, h: 8 } as const;
    // prettier-ignore
    const crop5 = [175, 153, 131, 168, 92, 146, 160, 152, 98, 88, 152, 135, 104, 138, 145, 99, 144, 186, 100, 94, 97, 124, 163, 134, 173];
    // prettier-ignore
    const crop13 = [163, 188, 220, 251, 126, 59, 91, 123, 155, 187, 218, 132, 19, 201, 169, 154, 188, 132, 109, 144, 144, 163, 190, 149, 90, 38, 246, 143, 68, 106, 142, 178, 216, 170, 170, 190, 54, 35, 65, 143, 128, 129, 171, 166, 179, 221, 119, 98, 127, 55, 59, 92, 109, 144, 184, 207, 156, 143, 189, 83, 62, 102, 88, 100, 119, 164, 202, 229, 206, 100, 58, 108, 66, 75, 124, 164, 163, 146, 91, 170, 213, 137, 97, 84, 97, 111, 124, 141, 195, 163, 104, 17, 121, 177, 77, 109, 129, 115, 164, 166, 140, 188, 139, 61, 72, 94, 117, 131, 134, 153, 192, 195, 146, 66, 68, 78, 88, 86, 96, 116, 153, 169, 192, 229, 180, 114, 45, 58, 86, 115, 69, 120, 161, 152, 210, 243, 234, 129, 74, 68, 133, 149, 142, 119, 97, 74, 66, 180, 222, 158, 109, 109, 146, 173, 176, 169, 157, 78, 8, 3, 155, 205, 103, 97, 137, 203, 198, 192, 188];
    // prettier-ignore
    const resized = [141, 160, 152, 93, 177, 117, 92, 131, 133, 136, 146, 121, 135, 199, 118, 125]; // resize to 7x6, crop 4x4 at (2, 1)
    const cases: [Uint8Array, number[]][] = [
      [renderPixels(g, 12, 10, 1, crop, 5, 5), crop5],
      [renderPixels(g, 12, 10, 1, crop, 13, 13), crop13],
      [renderPixels(g, 12, 10, 1, { kind: 'resizeCrop', rw: 7, rh: 6, left: 2, top: 1 }, 4, 4), resized],
    ];
    for (const [got, ref] of cases) {
      expect(got.length).toBe(3 * ref.length);
      for (let p = 0; p < ref.length; p++) expect(Math.abs(got[3 * p] - ref[p]), `pixel ${p}`).toBeLessThanOrEqual(1);
    }
  });
  test('downscaling averages (antialias) instead of skipping pixels', () => {
    const stripes = new Uint8Array(64 * 4);
    for (let y = 0; y < 4; y++) for (let x = 0; x < 64; x++) stripes[y * 64 + x] = x % 2 ? 255 : 0;
    const out = resampleBox(stripes, 64, 4, 1, 0, 0, 64, 4, 8, 1);
    for (let x = 1; x < 7; x++) expect(Math.abs(out[x * 3] - 127.5)).toBeLessThan(10);
  });
});

describe('normalisation', () => {
  test('presets and custom', () => {
    expect(resolveNormalization('imagenet')).toEqual({ mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
    expect(resolveNormalization('clip')).toEqual({
      mean: [0.48145466, 0.4578275, 0.40821073],
      std: [0.26862954, 0.26130258, 0.27577711],
    });
    expect(resolveNormalization('0.5,0.5,0.5/0.25,0.25,0.25')).toEqual({
      mean: [0.5, 0.5, 0.5],
      std: [0.25, 0.25, 0.25],
    });
    expect(() => resolveNormalization('0.5,0.5/1,1,1')).toThrow(/expected 3 finite numbers, found \[0.5, 0.5\]/);
    expect(() => resolveNormalization({ mean: [0, 0, 0], std: [1, 0, 1] })).toThrow(/std: expected 3 positive numbers/);
  });
  test('writeImage: CHW layout, exact values, flip mirrors, range', () => {
    const S = 4;
    const rgb = new Uint8Array(S * S * 3);
    for (let p = 0; p < S * S; p++) rgb.set([p * 16, 255 - p * 16, (p * 37) % 256], 3 * p);
    const spec = { mean: [...NORMALIZATIONS.imagenet.mean], std: [...NORMALIZATIONS.imagenet.std] } as never;
    const out = new Float32Array(2 + 3 * S * S).fill(NaN);
    writeImage(rgb, S, false, null, spec, out, 2);
    expect(Number.isNaN(out[0]) && Number.isNaN(out[1])).toBe(true);
    for (let p = 0; p < S * S; p++) {
      for (let c = 0; c < 3; c++) {
        const m = NORMALIZATIONS.imagenet.mean[c];
        const s = NORMALIZATIONS.imagenet.std[c];
        expect(out[2 + c * S * S + p]).toBeCloseTo((rgb[3 * p + c] / 255 - m) / s, 5);
      }
    }
    const flipped = new Float32Array(3 * S * S);
    writeImage(rgb, S, true, null, spec, flipped, 0);
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < S; y++)
        for (let x = 0; x < S; x++) {
          expect(flipped[c * S * S + y * S + x]).toBe(out[2 + c * S * S + y * S + (S - 1 - x)]);
        }
    const lo = (0 - 0.485) / 0.229;
    const hi = (1 - 0.406) / 0.225;
    for (const v of out.subarray(2)) expect(v >= lo - 1e-6 && v <= hi + 1e-6).toBe(true);
  });
  test('jitter: identity at factor 1, brightness scales, saturation 0 gives gray', () => {
    const S = 2;
    const rgb = new Uint8Array([200, 100, 50, 10, 20, 30, 0, 0, 0, 255, 255, 255]);
    const none = { mean: [0, 0, 0], std: [1, 1, 1] } as never;
    const plain = new Float32Array(12);
    writeImage(rgb, S, false, null, none, plain, 0);
    const same = new Float32Array(12);
    writeImage(rgb, S, false, { order: [2, 0, 1], factors: [1, 1, 1] }, none, same, 0);
    for (let k = 0; k < 12; k++) expect(same[k]).toBeCloseTo(plain[k], 6);
    const bright = new Float32Array(12);
    writeImage(rgb, S, false, { order: [0, 1, 2], factors: [0.5, 1, 1] }, none, bright, 0);
    expect(bright[0]).toBeCloseTo(100 / 255, 6); // R of pixel 0
    const gray = new Float32Array(12);
    writeImage(rgb, S, false, { order: [2, 0, 1], factors: [1, 1, 1e-9] }, none, gray, 0);
    const g0 = (0.2989 * 200 + 0.587 * 100 + 0.114 * 50) / 255;
    for (let c = 0; c < 3; c++) expect(gray[c * 4]).toBeCloseTo(g0, 5);
  });
  test('renormalize imagenet -> clip equals normalising with clip', () => {
    const rgb = new Uint8Array(3 * 9).map((_, k) => (k * 29) % 256);
    const a = new Float32Array(27);
    const b = new Float32Array(27);
    writeImage(rgb, 3, false, null, resolveNormalization('imagenet'), a, 0);
    writeImage(rgb, 3, false, null, resolveNormalization('clip'), b, 0);
    renormalize(a, 3, resolveNormalization('imagenet'), resolveNormalization('clip'));
    for (let k = 0; k < 27; k++) expect(a[k]).toBeCloseTo(b[k], 5);
  });
});

describe('synthetic samples through the transform', () => {
  test('same bytes for the same (seed, epoch, index); different across seeds and epochs; eval fixed', async () => {
    const { train } = await openData('synthetic:60:3', { syntheticSize: 48 });
    const spec = resolveTransform({ size: 24, train: true });
    const S = 24;
    const get = async (seed: number, epoch: number, i: number, s = spec) => {
      const out = new Float32Array(3 * S * S);
      const r = await produceSample(train, i, s, seed, epoch, out, 0);
      expect(r.index).toBe(i);
      expect(r.label).toBe(train.label(i));
      return out;
    };
    const a = await get(1, 0, 5);
    expect(await get(1, 0, 5)).toEqual(a);
    expect(await get(2, 0, 5)).not.toEqual(a);
    expect(await get(1, 1, 5)).not.toEqual(a);
    const evalSpec = resolveTransform({ size: S, train: false });
    expect(await get(1, 0, 5, evalSpec)).toEqual(await get(2, 3, 5, evalSpec));
    for (const v of a) expect(Number.isFinite(v) && v > -2.2 && v < 2.7).toBe(true);
  });
  test('classes are separable by colour (the structure a model can learn)', async () => {
    const { train } = await openData('synthetic:40:4', { syntheticSize: 32, valFraction: 0 });
    expect(train.length).toBe(40);
    expect(train.numClasses).toBe(4);
    // Nearest-class-mean on the raw 16x16 images classifies the training images well above chance.
    const feats = await Promise.all(Array.from({ length: 40 }, (_, i) => train.loadFloat(i, 16)));
    const means = Array.from({ length: 4 }, () => new Float64Array(3 * 256));
    for (let i = 0; i < 40; i++) feats[i].forEach((v, k) => (means[train.label(i)][k] += v / 10));
    let correct = 0;
    for (let i = 0; i < 40; i++) {
      let best = -1;
      let bestD = Infinity;
      means.forEach((m, c) => {
        let d = 0;
        for (let k = 0; k < m.length; k++) d += (feats[i][k] - m[k]) ** 2;
        if (d < bestD) [bestD, best] = [d, c];
      });
      correct += Number(best === train.label(i));
    }
    expect(correct).toBeGreaterThanOrEqual(30);
  });
});
