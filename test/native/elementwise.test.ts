// Elementwise ops against PyTorch float64 fixtures (test/fixtures/gen/elementwise.py): fill, copy, cast,
// add, sum_to, gelu, quick_gelu, scale_add (+ backward) and drop_path_mask. Also: acc semantics, in-place
// aliasing, finite differences of every backward, results independent of the thread count on inputs
// big enough to be split, drop-path statistics, and bad calls.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import type { Engine } from '../../lib/engine/index.js';
import { cpuEngine, dot, f32, finiteDiff, loadFixture, maxAbsErr, randomF32, relErr, runOp, type OpSpec as Spec, useEngines } from '../helpers/parity.js';

const fx = loadFixture('elementwise');
const TOL = 1e-5;



function addArr(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  return Float64Array.from(a, (v, i) => v + b[i]);
}

/** JS reference of f32 -> bf16 round to nearest even (as tensor.h). */
function f32ToBf16(x: number): number {
  const u = new Uint32Array(Float32Array.of(x).buffer)[0];
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
const bf16ToF32 = (h: number): number => new Float32Array(Uint32Array.of(h << 16).buffer)[0];

const engineWith = useEngines();

const actCases = Object.keys(fx.cases).filter((k) => k.startsWith('act_'));

describe('gelu and quick_gelu', () => {
  for (const name of actCases) {
    const { R, C } = fx.cases[name];
    const shape = [R, C];
    const x = fx.f32(`${name}.x`), dy = fx.f32(`${name}.dy`), dx0 = fx.f32(`${name}.dx0`);
    for (const [op, key] of [['gelu', 'gelu'], ['quick_gelu', 'quick']] as const) {
      it(`${op} ${R}x${C}: forward, backward (overwrite and acc) match torch`, () => {
        const [y] = runOp(op, [f32(shape, x)], [f32(shape)]);
        expect(relErr(y, fx.f64(`${name}.${key}`))).toBeLessThan(TOL);
        const [dx] = runOp(`${op}_bwd`, [f32(shape, x), f32(shape, dy)], [f32(shape)]);
        expect(relErr(dx, fx.f64(`${name}.${key}_dx`))).toBeLessThan(TOL);
        const [dxa] = runOp(`${op}_bwd`, [f32(shape, x), f32(shape, dy)], [f32(shape, dx0)], { acc: 1 });
        expect(relErr(dxa, addArr(fx.f64(`${name}.${key}_dx`), dx0))).toBeLessThan(TOL);
      });
    }
  }

  for (const op of ['gelu', 'quick_gelu'] as const) {
    it(`${op}_bwd agrees with finite differences of ${op}`, () => {
      const shape = [3, 5];
      const x = randomF32(15, 11, 2);
      const w = randomF32(15, 12);
      const [g] = runOp(`${op}_bwd`, [f32(shape, x), f32(shape, w)], [f32(shape)]);
      const err = finiteDiff(x, g, (xx) => dot(w, runOp(op, [f32(shape, xx)], [f32(shape)])[0]), { samples: 15 });
      expect(err).toBeLessThan(1e-2);
    });

    it(`${op} runs in place (y aliases x)`, () => {
      const e = cpuEngine();
      const data = randomF32(50, 3);
      const ref = runOp(op, [f32([5, 10], data)], [f32([5, 10])])[0];
      const t = e.tensor([5, 10], 'f32', data);
      try {
        e.op(op, [t], [t]);
        expect(Array.from(t.read())).toEqual(Array.from(ref));
      } finally {
        t.dispose();
      }
    });
  }

  it('dense sweep over [-14, 14]: every element close, tails accurate in relative terms', () => {
    // The kernels use a vectorised erfc (relative error ~1e-7) and exp; see elementwise.cpp.
    const x = fx.f32('sweep.x');
    const n = x.length;
    const ones = new Float32Array(n).fill(1);
    const worstRel = (y: ArrayLike<number>, ref: ArrayLike<number>, lim: number) => {
      let w = 0;
      for (let i = 0; i < n; i++) if (Math.abs(x[i]) <= lim && ref[i] !== 0) w = Math.max(w, Math.abs(y[i] - ref[i]) / Math.abs(ref[i]));
      return w;
    };
    const [g] = runOp('gelu', [f32([n], x)], [f32([n])]);
    const [gd] = runOp('gelu_bwd', [f32([n], x), f32([n], ones)], [f32([n])]);
    const [q] = runOp('quick_gelu', [f32([n], x)], [f32([n])]);
    const [qd] = runOp('quick_gelu_bwd', [f32([n], x), f32([n], ones)], [f32([n])]);
    expect(maxAbsErr(g, fx.f64('sweep.gelu'))).toBeLessThan(5e-7);
    expect(maxAbsErr(gd, fx.f64('sweep.gelu_dx'))).toBeLessThan(5e-7);
    expect(maxAbsErr(q, fx.f64('sweep.quick'))).toBeLessThan(1e-6);
    expect(maxAbsErr(qd, fx.f64('sweep.quick_dx'))).toBeLessThan(1e-6);
    // x Phi(x) down to x = -12 (Phi = 1.8e-33): no cancellation, the error grows only with x^2 rounding.
    expect(worstRel(g, fx.f64('sweep.gelu'), 4)).toBeLessThan(2e-6);
    expect(worstRel(g, fx.f64('sweep.gelu'), 12)).toBeLessThan(2e-5);
    expect(worstRel(q, fx.f64('sweep.quick'), 14)).toBeLessThan(2e-6);
  });

  it('known values: gelu(0) = 0, gelu(1) = Phi(1), quick_gelu(1) = sigmoid(1.702)', () => {
    const [y] = runOp('gelu', [f32([3], [0, 1, -1])], [f32([3])]);
    expect(y[0]).toBe(0);
    expect(y[1]).toBeCloseTo(0.8413447460685429, 6);
    expect(y[2]).toBeCloseTo(-0.15865525393145707, 6);
    const [q] = runOp('quick_gelu', [f32([1], [1])], [f32([1])]);
    expect(q[0]).toBeCloseTo(1 / (1 + Math.exp(-1.702)), 6);
  });
});

describe('fill, copy, cast', () => {
  it('fill writes every element in every dtype (bf16 rounded, i32/u8 converted)', () => {
    const [a] = runOp('fill', [], [f32([7, 3])], { value: -2.5 });
    expect(Array.from(a)).toEqual(new Array(21).fill(-2.5));
    const [b] = runOp('fill', [], [{ shape: [5], dtype: 'bf16' }], { value: 1.1 });
    expect(Array.from(b)).toEqual(new Array(5).fill(f32ToBf16(1.1)));
    expect(bf16ToF32(b[0])).toBeCloseTo(1.1, 2);
    const [c] = runOp('fill', [], [{ shape: [4], dtype: 'i32', data: [1, 2, 3, 4] }], { value: -7 });
    expect(Array.from(c)).toEqual([-7, -7, -7, -7]);
    const [d] = runOp('fill', [], [{ shape: [3], dtype: 'u8' }], { value: 200 });
    expect(Array.from(d)).toEqual([200, 200, 200]);
    const [z] = runOp('fill', [], [f32([100000])]);
    expect(z.every((v) => v === 0)).toBe(true);
  });

  it('copy: y = alpha x, and y = alpha x + y with acc', () => {
    const { alpha } = fx.cases.copy;
    const x = fx.f32('copy.x'), y0 = fx.f32('copy.y0');
    const [y] = runOp('copy', [f32([7, 33], x)], [f32([7, 33])], { alpha });
    expect(relErr(y, fx.f64('copy.scaled'))).toBeLessThan(TOL);
    const [ya] = runOp('copy', [f32([7, 33], x)], [f32([7, 33], y0)], { alpha, acc: 1 });
    expect(relErr(ya, fx.f64('copy.acc'))).toBeLessThan(TOL);
    // Same numel, another shape; plain copy is exact.
    const [yc] = runOp('copy', [f32([7, 33], x)], [f32([231])]);
    expect(Array.from(yc)).toEqual(Array.from(x));
  });

  it('copy runs in place', () => {
    const e = cpuEngine();
    const t = e.tensor([4], 'f32', [1, 2, 3, 4]);
    try {
      e.op('copy', [t], [t], { alpha: 2 });
      expect(Array.from(t.read())).toEqual([2, 4, 6, 8]);
      e.op('copy', [t], [t], { alpha: 1, acc: 1 });
      expect(Array.from(t.read())).toEqual([4, 8, 12, 16]);
    } finally {
      t.dispose();
    }
  });

  it('cast f32 -> bf16 rounds to nearest even as torch, bf16 -> f32 is exact', () => {
    const x = fx.f32('cast.x');
    const ref = fx.f64('cast.bf16');
    const [h] = runOp('cast', [f32([x.length], x)], [{ shape: [x.length], dtype: 'bf16' }]);
    for (let i = 0; i < x.length; i++) expect(bf16ToF32(h[i])).toBe(ref[i]);
    const [back] = runOp('cast', [{ shape: [x.length], dtype: 'bf16', data: h }], [f32([x.length])]);
    expect(Array.from(back)).toEqual(Array.from(ref));
    const [nan] = runOp('cast', [f32([2], [NaN, -Infinity])], [{ shape: [2], dtype: 'bf16' }]);
    expect(Number.isNaN(bf16ToF32(nan[0]))).toBe(true);
    expect(bf16ToF32(nan[1])).toBe(-Infinity);
    const [same] = runOp('cast', [f32([3], [1.5, -2, 3])], [f32([3])]);
    expect(Array.from(same)).toEqual([1.5, -2, 3]);
  });

  it('cast on a large tensor (split over threads) matches the JS reference bit for bit', () => {
    const x = randomF32(100003, 5, 100);
    const [h] = runOp('cast', [f32([x.length], x)], [{ shape: [x.length], dtype: 'bf16' }]);
    let bad = 0;
    for (let i = 0; i < x.length; i++) if (h[i] !== f32ToBf16(x[i])) bad++;
    expect(bad).toBe(0);
  });
});

describe('add and sum_to', () => {
  for (const name of ['add_c', 'add_tc', 'add_1']) {
    it(`add ${name}: b broadcast over a's leading dims`, () => {
      const as = fx.shape(`${name}.a`), bs = fx.shape(`${name}.b`);
      const [y] = runOp('add', [f32(as, fx.f32(`${name}.a`)), f32(bs, fx.f32(`${name}.b`))], [f32(as)]);
      expect(relErr(y, fx.f64(`${name}.y`))).toBeLessThan(TOL);
    });
  }

  it('add in place (y aliases a)', () => {
    const e = cpuEngine();
    const a = e.tensor([119, 37], 'f32', fx.f32('add_c.a'));
    const b = e.tensor([37], 'f32', fx.f32('add_c.b'));
    try {
      e.op('add', [a, b], [a]);
      expect(relErr(a.read(), fx.f64('add_c.y'))).toBeLessThan(TOL);
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  for (const name of ['sum_c', 'sum_tc', 'sum_wide', 'sum_narrow']) {
    it(`sum_to ${name}: overwrite and acc`, () => {
      const xs = fx.shape(`${name}.x`), ys = fx.shape(`${name}.y`);
      const x = fx.f32(`${name}.x`);
      const [y] = runOp('sum_to', [f32(xs, x)], [f32(ys)]);
      expect(relErr(y, fx.f64(`${name}.y`))).toBeLessThan(TOL);
      const [ya] = runOp('sum_to', [f32(xs, x)], [f32(ys, fx.f32(`${name}.y0`))], { acc: 1 });
      expect(relErr(ya, fx.f64(`${name}.yacc`))).toBeLessThan(TOL);
    });
  }

  it('sum_to on large inputs: f64 reference for wide (column split) and narrow (row split) outputs', () => {
    for (const [R, S] of [[1576, 192], [20011, 5]]) {
      const x = randomF32(R * S, R + S);
      const ref = new Float64Array(S);
      for (let r = 0; r < R; r++) for (let s = 0; s < S; s++) ref[s] += x[r * S + s];
      for (const threads of [1, 3]) {
        const [y] = runOp('sum_to', [f32([R, S], x)], [f32([S])], {}, engineWith(threads));
        expect(relErr(y, ref)).toBeLessThan(TOL);
      }
    }
  });
});

describe('scale_add (LayerScale + DropPath + residual)', () => {
  const saCases = Object.keys(fx.cases).filter((k) => k.startsWith('sa_'));
  for (const name of saCases) {
    const { gamma: useGamma, keep: useKeep } = fx.cases[name];
    const shape = fx.shape(`${name}.x0`);
    const C = shape[shape.length - 1], B = shape[0];
    const gamma = useGamma ? f32([C], fx.f32(`${name}.gamma`)) : null;
    const keep = useKeep ? f32([B], fx.f32(`${name}.keep`)) : null;
    it(`${name} ${JSON.stringify(shape)}: forward x += keep gamma y`, () => {
      const [x] = runOp('scale_add', [f32(shape, fx.f32(`${name}.y`)), gamma, keep], [f32(shape, fx.f32(`${name}.x0`))]);
      expect(relErr(x, fx.f64(`${name}.x`))).toBeLessThan(TOL);
    });
    it(`${name}: backward dy (overwrite, acc) and dgamma (accumulates)`, () => {
      const ins = [f32(shape, fx.f32(`${name}.dx`)), f32(shape, fx.f32(`${name}.y`)), gamma, keep];
      const dg0 = randomF32(C, 9);
      const [dy, dg] = runOp('scale_add_bwd', ins, [f32(shape), useGamma ? f32([C], dg0) : null]);
      expect(relErr(dy, fx.f64(`${name}.dy`))).toBeLessThan(TOL);
      if (useGamma) expect(relErr(dg, addArr(fx.f64(`${name}.dgamma`), dg0))).toBeLessThan(TOL);
      const dy0 = fx.f32(`${name}.dy0`);
      const [dya] = runOp('scale_add_bwd', ins, [f32(shape, dy0)], { acc: 1 });
      expect(relErr(dya, addArr(fx.f64(`${name}.dy`), dy0))).toBeLessThan(TOL);
    });
  }

  it('scale_add_bwd agrees with finite differences (wrt y and gamma)', () => {
    const shape = [3, 2, 5];
    const n = 30;
    const x0 = randomF32(n, 1), y = randomF32(n, 2), w = randomF32(n, 3);
    const gamma = randomF32(5, 4);
    const keep = Float32Array.of(1.25, 0, 1.25);
    const fwd = (yy: Float32Array, gg: Float32Array) =>
      dot(w, runOp('scale_add', [f32(shape, yy), f32([5], gg), f32([3], keep)], [f32(shape, x0)])[0]);
    const [dy, dgamma] = runOp('scale_add_bwd', [f32(shape, w), f32(shape, y), f32([5], gamma), f32([3], keep)], [f32(shape), f32([5], new Float32Array(5))]);
    expect(finiteDiff(y, dy, (yy) => fwd(yy, gamma), { samples: 20 })).toBeLessThan(1e-2);
    expect(finiteDiff(gamma, dgamma, (gg) => fwd(y, gg), { samples: 5 })).toBeLessThan(1e-2);
    // Dropped sample: its rows get exactly zero gradient.
    for (let i = 10; i < 20; i++) expect(Math.abs(dy[i])).toBe(0);
  });

  it('large inputs give the same bits with 1 and 3 threads (dgamma is summed per column in row order)', () => {
    const shape = [8, 197, 192];
    const n = 8 * 197 * 192;
    const y = randomF32(n, 21), dx = randomF32(n, 22), x0 = randomF32(n, 23), gamma = randomF32(192, 24);
    const keep = Float32Array.from({ length: 8 }, (_, i) => (i % 4 === 2 ? 0 : 1.1));
    const outs = [1, 3].map((threads) => {
      const e = engineWith(threads);
      const [x] = runOp('scale_add', [f32(shape, y), f32([192], gamma), f32([8], keep)], [f32(shape, x0)], {}, e);
      const [dy, dg] = runOp('scale_add_bwd', [f32(shape, dx), f32(shape, y), f32([192], gamma), f32([8], keep)], [f32(shape), f32([192], new Float32Array(192))], {}, e);
      const [dyNoG] = runOp('scale_add_bwd', [f32(shape, dx), f32(shape, y), null, f32([8], keep)], [f32(shape)], {}, e);
      return [x, dy, dg, dyNoG];
    });
    for (let k = 0; k < 4; k++) expect(maxAbsErr(outs[0][k], outs[1][k])).toBe(0);
    // Spot-check against a direct computation.
    const i = 3 * 197 * 192 + 57 * 192 + 11;
    expect(outs[0][0][i]).toBeCloseTo(x0[i] + 1.1 * gamma[11] * y[i], 5);
    expect(outs[0][3][i]).toBeCloseTo(1.1 * dx[i], 5);
  });
});

describe('drop_path_mask', () => {
  const seedSpec = (s: ArrayLike<number>): Spec => ({ shape: [2], dtype: 'i32', data: s });
  const mask = (seed: number[], B: number, p: number, stream: number) =>
    runOp('drop_path_mask', [seedSpec(seed)], [f32([B])], { p, stream })[0] as Float32Array;

  for (const name of ['dp_a', 'dp_b', 'dp_zero']) {
    it(`${name}: keep equals the reference built from rng_uniform(seed64, stream, b)`, () => {
      const { stream, p, B } = fx.cases[name];
      const k = runOp('drop_path_mask', [seedSpec(fx.i32(`${name}.seed`))], [f32([B])], { p, stream })[0];
      expect(Array.from(k)).toEqual(Array.from(fx.f64(`${name}.keep`)));
    });
  }

  it('p = 0 keeps everything with weight 1', () => {
    expect(Array.from(mask([3, 4], 33, 0, 2))).toEqual(new Array(33).fill(1));
  });

  it('drops a fraction ~p, keeps with 1/(1-p), so E[keep] = 1', () => {
    const p = 0.25, B = 4096;
    let dropped = 0, total = 0;
    for (let s = 0; s < 8; s++) {
      const k = mask([s, 1000 + s], B, p, s);
      for (const v of k) {
        if (v === 0) dropped++;
        else expect(v).toBeCloseTo(1 / (1 - p), 6);
        total += v;
      }
    }
    const n = 8 * B;
    const sigma = Math.sqrt((p * (1 - p)) / n);
    expect(Math.abs(dropped / n - p)).toBeLessThan(4 * sigma);
    expect(Math.abs(total / n - 1)).toBeLessThan(4 * sigma / (1 - p));
  });

  it('is deterministic for a seed, and differs across seeds, seed words and streams', () => {
    const base = mask([17, 99], 256, 0.5, 1);
    expect(Array.from(mask([17, 99], 256, 0.5, 1))).toEqual(Array.from(base));
    const differs = (k: Float32Array) => k.some((v, i) => v !== base[i]);
    expect(differs(mask([17, 99], 256, 0.5, 2))).toBe(true); // stream
    expect(differs(mask([18, 99], 256, 0.5, 1))).toBe(true); // low word
    expect(differs(mask([17, 98], 256, 0.5, 1))).toBe(true); // high word
  });

  it('rejects p outside [0, 1) and a malformed seed', () => {
    expect(() => mask([1, 2], 4, 1, 0)).toThrow(/drop_path_mask: attr p must be in \[0, 1\)/);
    expect(() => runOp('drop_path_mask', [seedSpec([1, 2])], [f32([4])], { p: -0.1 })).toThrow(/attr p/);
    expect(() => runOp('drop_path_mask', [f32([2], [1, 2])], [f32([4])], { p: 0.1 })).toThrow(/drop_path_mask: input 0 must be i32/);
    expect(() => runOp('drop_path_mask', [{ shape: [3], dtype: 'i32', data: [1, 2, 3] }], [f32([4])], { p: 0.1 })).toThrow(/input 0 must have 2 elements/);
  });
});

describe('parallel splits', () => {
  it('elementwise ops on 1.2M elements give identical bits with 1 and 3 threads', () => {
    const R = 1576, C = 768, n = R * C;
    const x = randomF32(n, 31, 2), dy = randomF32(n, 32), b = randomF32(C, 33);
    const shape = [R, C];
    const run = (e: Engine) => [
      runOp('gelu', [f32(shape, x)], [f32(shape)], {}, e)[0],
      runOp('gelu_bwd', [f32(shape, x), f32(shape, dy)], [f32(shape)], {}, e)[0],
      runOp('quick_gelu_bwd', [f32(shape, x), f32(shape, dy)], [f32(shape, dy)], { acc: 1 }, e)[0],
      runOp('add', [f32(shape, x), f32([C], b)], [f32(shape)], {}, e)[0],
      runOp('copy', [f32(shape, x)], [f32(shape, dy)], { alpha: 0.5, acc: 1 }, e)[0],
      runOp('sum_to', [f32(shape, x)], [f32([C])], {}, e)[0],
    ];
    const one = run(engineWith(1)), three = run(engineWith(3));
    for (let k = 0; k < one.length; k++) {
      expect(one[k].every((v) => Number.isFinite(v))).toBe(true);
      expect(maxAbsErr(one[k], three[k])).toBe(0);
    }
    // The add and copy results are exact float ops: check a few elements against JS.
    for (const i of [0, 12345, n - 1]) {
      expect(one[3][i]).toBe(Math.fround(x[i] + b[i % C]));
      expect(one[4][i]).toBe(Math.fround(Math.fround(0.5 * x[i]) + dy[i]));
    }
  });
});

describe('code paths', () => {
  const here = dirname(fileURLToPath(import.meta.url));
  const tsx = join(here, '..', '..', 'node_modules', '.bin', 'tsx');
  for (const isa of ['scalar', 'avx2']) {
    it(`MEDIC_CPU_ISA=${isa}: the ${isa === 'scalar' ? 'baseline' : 'AVX2'} GELU kernels match the sweep`, () => {
      const r = spawnSync(tsx, [join(here, 'isa.child.ts'), 'elementwise'], { env: { ...process.env, MEDIC_CPU_ISA: isa }, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { describe: string; worst: number };
      if (isa === 'scalar') expect(out.describe).toMatch(/scalar/);
      else expect(out.describe).not.toMatch(/avx512/);
      expect(out.worst).toBeLessThan(1e-6);
    });
  }
});

describe('bad calls', () => {
  it('wrong shapes and dtypes throw errors naming the op and slot', () => {
    expect(() => runOp('gelu', [f32([3, 4], new Float32Array(12))], [f32([4, 3])])).toThrow(/gelu: output 0 must have the shape of input 0 \[3, 4\]/);
    expect(() => runOp('gelu_bwd', [f32([3], [1, 2, 3]), f32([4], [1, 2, 3, 4])], [f32([3])])).toThrow(/gelu_bwd: input 1/);
    expect(() => runOp('add', [f32([3, 4], new Float32Array(12)), f32([3], [1, 2, 3])], [f32([3, 4])])).toThrow(/add: input 1 \[3\] must equal the trailing dims/);
    expect(() => runOp('sum_to', [f32([3, 4], new Float32Array(12))], [f32([3])])).toThrow(/sum_to: output 0 \[3\] must equal the trailing dims/);
    expect(() => runOp('copy', [f32([3], [1, 2, 3])], [f32([4])])).toThrow(/copy: output 0 must have 3 elements/);
    expect(() => runOp('copy', [f32([3], [1, 2, 3])], [f32([3])], { acc: 2 })).toThrow(/attr acc must be 0 or 1/);
    expect(() => runOp('cast', [{ shape: [2], dtype: 'i32', data: [1, 2] }], [f32([2])])).toThrow(/cast: casts between f32 and bf16 only/);
    // bf16 activations are allowed where ops.h says so (Precision); a gradient norm is not one of them
    expect(() => runOp('grad_norm', [{ shape: [2], dtype: 'bf16', data: [1, 2] }], [f32([1])])).toThrow(/grad_norm: input 0 must be f32/);
    expect(() => runOp('scale_add', [f32([2, 3], new Float32Array(6)), f32([2], [1, 1])], [f32([2, 3], new Float32Array(6))])).toThrow(/scale_add: input 1 must have 3 elements/);
    expect(() => runOp('scale_add', [f32([2, 3], new Float32Array(6)), null, f32([3], [1, 1, 1])], [f32([2, 3], new Float32Array(6))])).toThrow(/scale_add: input 2 must have 2 elements/);
    expect(() => runOp('scale_add_bwd', [f32([2, 3], new Float32Array(6)), f32([2, 3], new Float32Array(6))], [f32([2, 3]), f32([3])])).toThrow(/dgamma\) needs gamma/);
  });

  it('a disposed tensor is refused', () => {
    const e = cpuEngine();
    const x = e.tensor([4], 'f32', [1, 2, 3, 4]);
    const y = e.tensor([4]);
    x.dispose();
    try {
      expect(() => e.op('gelu', [x], [y])).toThrow(/disposed/);
    } finally {
      y.dispose();
    }
  });
});
