import { describe, expect, it } from 'vitest';

import { blockMask, makeMasks, maskedCount, randomMask, validateMaskConfig } from '../../lib/train/masking.js';
import { Rng } from '../../lib/util/rng.js';

// Mean number of masked 4-neighbours of a masked patch: block masks are spatially clustered.
function neighbourScore(mask: Uint8Array, H: number, W: number): number {
  let s = 0;
  let n = 0;
  for (let i = 0; i < H; i++)
    for (let j = 0; j < W; j++) {
      if (!mask[i * W + j]) continue;
      n++;
      for (const [di, dj] of [
        [1, 0],
        [-1, 0],
        [0, 1],
        [0, -1],
      ]) {
        const a = i + di;
        const b = j + dj;
        if (a >= 0 && a < H && b >= 0 && b < W) s += mask[a * W + b];
      }
    }
  return s / n;
}

describe('masking', () => {
  it('masks exactly floor(N * ratio) patches per sample, for both kinds and odd grids', () => {
    for (const kind of ['block', 'random'] as const)
      for (const [H, W, ratio] of [
        [14, 14, 0.4],
        [14, 14, 0.75],
        [7, 7, 0.4],
        [8, 8, 0.6],
        [5, 9, 0.3],
      ] as const) {
        const m = makeMasks({ kind, ratio, gridH: H, gridW: W }, 16, 3, 0);
        const N = H * W;
        expect(m.M).toBe(maskedCount(N, ratio));
        for (let b = 0; b < 16; b++) {
          const row = m.mask.subarray(b * N, (b + 1) * N);
          expect(row.reduce((s, v) => s + v, 0)).toBe(m.M);
          const vis = Array.from(m.visible.subarray(b * m.V, (b + 1) * m.V));
          const msk = Array.from(m.masked.subarray(b * m.M, (b + 1) * m.M));
          expect(vis).toEqual([...vis].sort((x, y) => x - y));
          expect(new Set([...vis, ...msk]).size).toBe(N);
          for (const i of msk) expect(row[i]).toBe(1);
          for (const i of vis) expect(row[i]).toBe(0);
        }
      }
    expect(maskedCount(196, 0.4)).toBe(78);
  });

  it('is a pure function of (seed, step, sample)', () => {
    const c = { kind: 'block' as const, ratio: 0.4, gridH: 14, gridW: 14 };
    const a = makeMasks(c, 4, 7, 12);
    expect(makeMasks(c, 4, 7, 12).mask).toEqual(a.mask);
    expect(makeMasks(c, 4, 7, 13).mask).not.toEqual(a.mask);
    expect(makeMasks(c, 4, 8, 12).mask).not.toEqual(a.mask);
    // sample b of a larger batch equals sample b of a smaller one: masks do not depend on batch size
    expect(makeMasks(c, 8, 7, 12).mask.subarray(0, 4 * 196)).toEqual(a.mask);
    const rows = new Set<string>();
    for (let b = 0; b < 4; b++) rows.add(a.mask.subarray(b * 196, (b + 1) * 196).join(''));
    expect(rows.size).toBe(4);
  });

  it('block masks are spatially clustered, random masks are not', () => {
    let block = 0;
    let random = 0;
    for (let s = 0; s < 40; s++) {
      block += neighbourScore(blockMask(new Rng(s), 14, 14, 78), 14, 14);
      random += neighbourScore(randomMask(new Rng(s), 196, 78), 14, 14);
    }
    // random at 40 %: about 4 * 0.4 * (edge factor) ~ 1.5 masked neighbours; blocks: well above 2.5
    expect(random / 40).toBeLessThan(1.8);
    expect(block / 40).toBeGreaterThan(2.5);
  });

  it('random masking is uniform over positions', () => {
    const counts = new Float64Array(196);
    const trials = 2000;
    for (let s = 0; s < trials; s++) {
      const m = randomMask(new Rng(1, s), 196, 78);
      for (let i = 0; i < 196; i++) counts[i] += m[i];
    }
    for (const c of counts) expect(Math.abs(c / trials - 78 / 196)).toBeLessThan(0.06);
  });

  it('rejects bad configurations with the flag name', () => {
    expect(() => validateMaskConfig({ kind: 'grid' as never, ratio: 0.4, gridH: 14, gridW: 14 })).toThrow(
      /--mask: expected block or random/,
    );
    expect(() => validateMaskConfig({ kind: 'block', ratio: 1.2, gridH: 14, gridW: 14 })).toThrow(/--mask-ratio/);
    expect(() => validateMaskConfig({ kind: 'block', ratio: 0.01, gridH: 4, gridW: 4 })).toThrow(/masks 0 of 16/);
  });
});
