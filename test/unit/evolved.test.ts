// Evolved masking's masks (lib/train/evolved.ts) from real attention maps (test/fixtures/cluster):
// exact mask count; the same masks for the same (seed, step) whatever the host threads; spatial noise
// early (whole 2x2-parity classes masked) and whole parts late; the schedules' values; em reads the
// maps, hc their Gram matrices; the clustering on a worker thread (the training loop's lookahead) gives
// the same masks as on the calling thread.
import { describe, expect, it } from 'vitest';

import { loadBinding } from '../../lib/engine/loader.js';
import { evolvedMasks, evolvedMasksAsync, mixAlpha, partCentre, type EvolvedConfig } from '../../lib/train/evolved.js';
import { loadFixture } from '../helpers/parity.js';

const fx = loadFixture('cluster');
const name = 'g8_k12_blobs';
const g = fx.cases[name].grid; // 8 x 8 patches
const N = g * g;
const one = fx.f32(`${name}.attn`);
const B = 3;
const attn = new Float32Array(B * N * N);
for (let b = 0; b < B; b++) attn.set(one, b * N * N);
// hc reads the maps' Gram matrices attn^T attn (the teacher program's gemm; here in float64, rounded once)
const gram = new Float32Array(B * N * N);
for (let b = 0; b < B; b++)
  for (let a = 0; a < N; a++)
    for (let c = 0; c < N; c++) {
      let s = 0;
      for (let i = 0; i < N; i++) s += attn[b * N * N + i * N + a] * attn[b * N * N + i * N + c];
      gram[b * N * N + a * N + c] = s;
    }
const maps = (cluster: 'hc' | 'em') => (cluster === 'hc' ? { gram } : { attn });

const base: EvolvedConfig = { cluster: 'hc', ratio: 0.5, gridH: g, gridW: g, evolveEpochs: 10, gamma: 0.2, lambda: 0 };
const count = (m: Uint8Array, b: number) => m.subarray(b * N, (b + 1) * N).reduce((a, v) => a + v, 0);

describe('evolved masks', () => {
  it('the schedules: parts 40 -> 10 over E epochs, alpha = ((epoch + 1) / E)^gamma capped at 1', () => {
    expect([0, 5, 10, 20].map((e) => partCentre(e, 10))).toEqual([40, 25, 10, 10]);
    expect(mixAlpha(0, 10, 0.2)).toBeCloseTo(0.1 ** 0.2, 12);
    expect(mixAlpha(9, 10, 0.2)).toBe(1);
    expect(mixAlpha(30, 10, 0.2)).toBe(1);
  });

  for (const cluster of ['hc', 'em'] as const) {
    it(`${cluster}: exactly floor(N * ratio) masked per image; a pure function of (seed, step), whatever the threads`, () => {
      const c = { ...base, cluster, evolveEpochs: 1 };
      const a = evolvedMasks({ ...c, threads: 1 }, maps(cluster), B, 7, 4, 1);
      const b = evolvedMasks({ ...c, threads: 3 }, maps(cluster), B, 7, 4, 1);
      expect(Array.from(a.mask)).toEqual(Array.from(b.mask));
      for (let i = 0; i < B; i++) expect(count(a.mask, i)).toBe(N / 2);
      // after E epochs K is drawn in [10, 12)
      for (const k of a.K) expect(k === 10 || k === 11).toBe(true);
      // the same map, different streams per image: different masks
      expect(Array.from(a.mask.subarray(0, N))).not.toEqual(Array.from(a.mask.subarray(N, 2 * N)));
      const other = evolvedMasks(c, maps(cluster), B, 7, 5, 1);
      expect(Array.from(other.mask)).not.toEqual(Array.from(a.mask));
    });
  }

  it('late (alpha = 1): whole parts are masked, only the last one cut to hit M', () => {
    const { mask, parts } = evolvedMasks({ ...base, evolveEpochs: 1 }, { gram }, B, 3, 0, 5);
    for (let b = 0; b < B; b++) {
      const byPart = new Map<number, number[]>();
      for (let i = 0; i < N; i++) {
        const p = parts[b * N + i];
        if (!byPart.has(p)) byPart.set(p, [0, 0]);
        byPart.get(p)![mask[b * N + i]] += 1;
      }
      const mixed = [...byPart.values()].filter(([vis, msk]) => vis > 0 && msk > 0);
      expect(mixed.length).toBeLessThanOrEqual(1);
    }
  });

  it('early (alpha near 0): the 2x2 spatial table decides, so whole parity classes are masked', () => {
    const { mask } = evolvedMasks({ ...base, evolveEpochs: 1e6, gamma: 1 }, { gram }, B, 3, 0, 0);
    for (let b = 0; b < B; b++) {
      const cls = [0, 0, 0, 0];
      for (let i = 0; i < N; i++) cls[(Math.floor(i / g) % 2) * 2 + (i % 2)] += mask[b * N + i];
      expect(cls.sort()).toEqual([0, 0, 16, 16]); // 32 masked = two of the four 16-patch classes
    }
  });

  for (const cluster of ['hc', 'em'] as const) {
    it(`${cluster}: on a worker thread (evolvedMasksAsync), the same parts and masks as in line`, async () => {
      const c = { ...base, cluster, evolveEpochs: 4, threads: 2 };
      for (const epoch of [0, 2]) {
        const sync = evolvedMasks(c, maps(cluster), B, 11, 9, epoch);
        const pending = evolvedMasksAsync(c, maps(cluster), B, 11, 9, epoch);
        const async = await pending;
        expect(Array.from(async.parts)).toEqual(Array.from(sync.parts));
        expect(Array.from(async.mask)).toEqual(Array.from(sync.mask));
        expect(Array.from(async.K)).toEqual(Array.from(sync.K));
      }
    });
  }

  it('the worker-thread clustering rejects bad input with the argument named, as the in-line one throws', async () => {
    const { binding } = loadBinding();
    const K = Int32Array.from([3, 4, N + 1]);
    const args = ['hc', gram, B, N, g, K, {}, null] as const;
    expect(() => binding.clusterParts(...args)).toThrow(`clusterParts: K[2] must be in [1, N=${N}], got ${N + 1}`);
    await expect(async () => binding.clusterPartsAsync(...args)).rejects.toThrow(
      `clusterPartsAsync: K[2] must be in [1, N=${N}], got ${N + 1}`,
    );
    await expect(async () =>
      binding.clusterPartsAsync('em', attn, B, N, g, Int32Array.from([3, 3, 3]), {}, null),
    ).rejects.toThrow(
      `clusterPartsAsync: method 'em' needs init, a Float32Array of B * max(K) * N = ${B * 3 * N} elements`,
    );
  });

  it('bad input names what was wrong', () => {
    expect(() => evolvedMasks(base, { gram: new Float32Array(10) }, B, 0, 0, 0)).toThrow(
      /the gram maps hold 10 values, expected B \* N \* N = 12288/,
    );
    expect(() => evolvedMasks(base, { attn }, B, 0, 0, 0)).toThrow(
      "evolved masking: --mask-cluster hc clusters the attention maps' Gram matrices (gram), was given attn",
    );
    expect(() => evolvedMasks({ ...base, cluster: 'em' }, { gram }, B, 0, 0, 0)).toThrow(
      'evolved masking: --mask-cluster em clusters the attention maps (attn), was given gram',
    );
  });
});
