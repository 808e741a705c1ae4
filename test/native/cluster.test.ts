// Evolved masking's clustering (native/include/medic/cluster.h, addon function clusterParts) against
// the float64 PyTorch references of test/fixtures/gen/cluster.py: em (soft spherical k-means from a
// given init, on the maps) and hc (greedy agglomerative, lambda 0 and 0.5, on the maps' Gram matrices
// computed as the teacher program does, by the engine's f32 batched gemm) give the reference's labels
// exactly (the reference clusters float64 features; hc's cosines come from an f32 Gram, relative error
// ~1e-7, which decides no merge in these cases); part counts; thread-count independence; a map with
// planted parts is recovered; bad arguments.
import { describe, expect, it } from 'vitest';

import { loadBinding } from '../../lib/engine/loader.js';
import { cpuEngine, loadFixture } from '../helpers/parity.js';

type ClusterFn = (method: string, attn: Float32Array, B: number, N: number, gridW: number, K: Int32Array, opts: object, init: Float32Array | null) => Int32Array;
const clusterParts = (loadBinding().binding as unknown as { clusterParts: ClusterFn }).clusterParts;
const fx = loadFixture('cluster');
const names = Object.keys(fx.cases);

const parts = (labels: ArrayLike<number>) => new Set(Array.from(labels)).size;

/** attn^T attn per image [B, N, N], by the engine's batched gemm (what buildTeacherStep's 'gram' output runs). */
function gramOf(attn: Float32Array, B: number, N: number): Float32Array {
  const e = cpuEngine();
  const a = e.tensor([B, N, N], 'f32', attn), g = e.tensor([B, N, N], 'f32');
  try {
    e.op('gemm', [a, a], [g], { trans_a: 1 });
    return g.read() as Float32Array;
  } finally {
    a.dispose();
    g.dispose();
  }
}

describe('clusterParts', () => {
  it('the fixture has its cases', () => expect(names.length).toBeGreaterThanOrEqual(4));

  for (const name of names) {
    const { grid, K, rounds, kappa } = fx.cases[name];
    const N = grid * grid;
    const attn = fx.f32(`${name}.attn`);
    it(`${name}: em labels equal the float64 reference`, () => {
      const got = clusterParts('em', attn, 1, N, grid, Int32Array.of(K), { rounds, kappa }, fx.f32(`${name}.init`));
      expect(Array.from(got)).toEqual(Array.from(fx.i32(`${name}.em`)));
      expect(parts(got)).toBeLessThanOrEqual(K);
    });
    for (const lambda of [0, 0.5]) {
      it(`${name}: hc (lambda ${lambda}) labels equal the float64 reference, exactly K parts`, () => {
        const got = clusterParts('hc', gramOf(attn, 1, N), 1, N, grid, Int32Array.of(K), { lambda }, null);
        expect(Array.from(got)).toEqual(Array.from(fx.i32(`${name}.hc${lambda}`)));
        expect(parts(got)).toBe(K);
      });
    }
  }

  it('a batch gives each image its own K and init; 1 and 3 threads agree', () => {
    const [a, b] = [names[1], names[2]];
    const { grid } = fx.cases[a];
    expect(fx.cases[b].grid).toBe(grid);
    const N = grid * grid;
    const attn = new Float32Array(2 * N * N);
    attn.set(fx.f32(`${a}.attn`), 0);
    attn.set(fx.f32(`${b}.attn`), N * N);
    const K = Int32Array.of(fx.cases[a].K, fx.cases[b].K);
    const kmax = Math.max(K[0], K[1]);
    const init = new Float32Array(2 * kmax * N);
    init.set(fx.f32(`${a}.init`), 0);
    init.set(fx.f32(`${b}.init`), kmax * N);
    for (const threads of [1, 3]) {
      const em = clusterParts('em', attn, 2, N, grid, K, { threads }, init);
      expect(Array.from(em)).toEqual([...fx.i32(`${a}.em`), ...fx.i32(`${b}.em`)]);
      const hc = clusterParts('hc', gramOf(attn, 2, N), 2, N, grid, K, { threads, lambda: 0.5 }, null);
      expect(Array.from(hc)).toEqual([...fx.i32(`${a}.hc0.5`), ...fx.i32(`${b}.hc0.5`)]);
    }
  });

  it('recovers planted parts: patches that attend only within their quadrant', () => {
    const g = 6, N = g * g;
    const quad = (j: number) => (Math.floor(j / g) < g / 2 ? 0 : 2) + (j % g < g / 2 ? 0 : 1);
    const attn = new Float32Array(N * N);
    for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) attn[i * N + j] = quad(i) === quad(j) ? 1 / 9 + 0.001 * ((i * 7 + j * 13) % 5) : 0;
    const expected = Array.from({ length: N }, (_, j) => [0, 1, 2, 3].indexOf(quad(j)));
    const hc = clusterParts('hc', gramOf(attn, 1, N), 1, N, g, Int32Array.of(4), {}, null);
    expect(Array.from(hc)).toEqual(expected);
    const init = new Float32Array(4 * N);
    for (let k = 0; k < 4; k++) for (let i = 0; i < N; i++) init[k * N + i] = quad(i) === k ? 1 : 0.1; // one seed per quadrant
    expect(Array.from(clusterParts('em', attn, 1, N, g, Int32Array.of(4), {}, init))).toEqual(expected);
  });

  it('bad arguments name the argument, what was expected and found', () => {
    const attn = new Float32Array(16 * 16);
    expect(() => clusterParts('kmeans', attn, 1, 16, 4, Int32Array.of(2), {}, null)).toThrow(/clusterParts: method must be 'em' or 'hc', got 'kmeans'/);
    expect(() => clusterParts('hc', attn, 1, 16, 5, Int32Array.of(2), {}, null)).toThrow(/N = 16 is not a grid of width 5/);
    expect(() => clusterParts('hc', attn, 1, 16, 4, Int32Array.of(17), {}, null)).toThrow(/K\[0\] must be in \[1, N=16\], got 17/);
    expect(() => clusterParts('hc', new Float32Array(10), 1, 16, 4, Int32Array.of(2), {}, null)).toThrow(/clusterParts gram: expected 256 elements, got 10/);
    expect(() => clusterParts('em', new Float32Array(10), 1, 16, 4, Int32Array.of(2), {}, new Float32Array(32))).toThrow(/clusterParts attn: expected 256 elements, got 10/);
    expect(() => clusterParts('em', attn, 1, 16, 4, Int32Array.of(2), {}, null)).toThrow(/method 'em' needs init, a Float32Array of B \* max\(K\) \* N = 32 elements/);
  });
});
