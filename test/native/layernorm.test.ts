// layernorm, layernorm_bwd and pixel_norm against PyTorch float64 fixtures (test/fixtures/gen/layernorm.py):
// every forward output (y, mean, rstd) and backward output (dx overwrite and acc, dw and db accumulating),
// with and without the affine parameters; finite differences of the backward; the baseline and AVX2 code
// paths (child processes with MEDIC_CPU_ISA); thread-count independence; bad calls.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { Engine } from '../../lib/engine/index.js';
import { cpuEngine, dot, f32, finiteDiff, loadFixture, maxAbsErr, randomF32, relErr, runOp } from '../helpers/parity.js';

const fx = loadFixture('layernorm');
const TOL = 1e-5;


const addArr = (a: ArrayLike<number>, b: ArrayLike<number>) => Float64Array.from(a, (v, i) => v + b[i]);

const engines: Engine[] = [];
const liveAtStart = cpuEngine().memory().liveTensors;
afterAll(() => {
  expect(cpuEngine().memory().liveTensors).toBe(liveAtStart);
  for (const e of engines) e.dispose();
});

const lnCases = Object.keys(fx.cases).filter((k) => k.startsWith('ln_'));
const pixCases = Object.keys(fx.cases).filter((k) => k.startsWith('pix_'));

describe('layernorm', () => {
  for (const name of lnCases) {
    const { R, C, affine, eps } = fx.cases[name];
    const x = fx.f32(`${name}.x`);
    const w = affine >= 1 ? f32([C], fx.f32(`${name}.w`)) : null;
    const b = affine === 2 ? f32([C], fx.f32(`${name}.b`)) : null;
    const label = `${name} (R=${R}, C=${C}, ${['no params', 'weight', 'weight+bias'][affine]}, eps=${eps})`;

    it(`${label}: forward y, mean, rstd`, () => {
      const [y, mean, rstd] = runOp('layernorm', [f32([R, C], x), w, b], [f32([R, C]), f32([R]), f32([R])], { eps });
      expect(relErr(y, fx.f64(`${name}.y`))).toBeLessThan(TOL);
      expect(relErr(mean, fx.f64(`${name}.mean`))).toBeLessThan(TOL);
      expect(relErr(rstd, fx.f64(`${name}.rstd`))).toBeLessThan(TOL);
    });

    it(`${label}: backward dx (overwrite, acc), dw and db accumulate`, () => {
      // The stats come from the fixture (torch's), so the backward is tested on its own.
      const ins = [f32([R, C], fx.f32(`${name}.dy`)), f32([R, C], x), f32([R], fx.f32(`${name}.mean`)), f32([R], fx.f32(`${name}.rstd`)), w];
      const dw0 = affine >= 1 ? fx.f32(`${name}.dw0`) : null;
      const db0 = affine === 2 ? fx.f32(`${name}.db0`) : null;
      const [dx, dw, db] = runOp('layernorm_bwd', ins, [f32([R, C]), dw0 && f32([C], dw0), db0 && f32([C], db0)]);
      expect(relErr(dx, fx.f64(`${name}.dx`))).toBeLessThan(TOL);
      if (dw0) expect(relErr(dw, addArr(fx.f64(`${name}.dw`), dw0))).toBeLessThan(TOL);
      if (db0) expect(relErr(db, addArr(fx.f64(`${name}.db`), db0))).toBeLessThan(TOL);
      const dx0 = fx.f32(`${name}.dx0`);
      const [dxa] = runOp('layernorm_bwd', ins, [f32([R, C], dx0)], { acc: 1 });
      expect(relErr(dxa, addArr(fx.f64(`${name}.dx`), dx0))).toBeLessThan(TOL);
    });
  }

  it('dw without db and db without dw', () => {
    const name = 'ln_7x768';
    const R = 7, C = 768;
    const ins = [f32([R, C], fx.f32(`${name}.dy`)), f32([R, C], fx.f32(`${name}.x`)), f32([R], fx.f32(`${name}.mean`)), f32([R], fx.f32(`${name}.rstd`)), f32([C], fx.f32(`${name}.w`))];
    const [, dw] = runOp('layernorm_bwd', ins, [f32([R, C]), f32([C], new Float32Array(C)), null]);
    expect(relErr(dw, fx.f64(`${name}.dw`))).toBeLessThan(TOL);
    const [, , db] = runOp('layernorm_bwd', ins, [f32([R, C]), null, f32([C], new Float32Array(C))]);
    expect(relErr(db, fx.f64(`${name}.db`))).toBeLessThan(TOL);
  });

  it('layernorm_bwd agrees with finite differences wrt x, w and b', () => {
    const R = 3, C = 7;
    const x = randomF32(R * C, 41, 1.5), w = Float32Array.from(randomF32(C, 42, 0.5), (v) => 1 + v), b = randomF32(C, 43);
    const up = randomF32(R * C, 44);
    const fwd = (xx: Float32Array, ww: Float32Array, bb: Float32Array) =>
      dot(up, runOp('layernorm', [f32([R, C], xx), f32([C], ww), f32([C], bb)], [f32([R, C]), f32([R]), f32([R])])[0]);
    const [, mean, rstd] = runOp('layernorm', [f32([R, C], x), f32([C], w), f32([C], b)], [f32([R, C]), f32([R]), f32([R])]);
    const [dx, dw, db] = runOp('layernorm_bwd', [f32([R, C], up), f32([R, C], x), f32([R], mean), f32([R], rstd), f32([C], w)], [f32([R, C]), f32([C], new Float32Array(C)), f32([C], new Float32Array(C))]);
    expect(finiteDiff(x, dx, (xx) => fwd(xx, w, b), { samples: 21 })).toBeLessThan(1e-2);
    expect(finiteDiff(w, dw, (ww) => fwd(x, ww, b), { samples: 7 })).toBeLessThan(1e-2);
    expect(finiteDiff(b, db, (bb) => fwd(x, w, bb), { samples: 7 })).toBeLessThan(1e-2);
    // Parameter-free: gradient wrt x only.
    const fwd0 = (xx: Float32Array) => dot(up, runOp('layernorm', [f32([R, C], xx)], [f32([R, C]), f32([R]), f32([R])])[0]);
    const [, m0, r0] = runOp('layernorm', [f32([R, C], x)], [f32([R, C]), f32([R]), f32([R])]);
    const [dx0] = runOp('layernorm_bwd', [f32([R, C], up), f32([R, C], x), f32([R], m0), f32([R], r0)], [f32([R, C])]);
    expect(finiteDiff(x, dx0, fwd0, { samples: 21 })).toBeLessThan(1e-2);
  });

  it('eps defaults to 1e-6 (a constant row normalises to 0 with rstd = 1/sqrt(1e-6))', () => {
    const [y, mean, rstd] = runOp('layernorm', [f32([1, 5], [2, 2, 2, 2, 2])], [f32([1, 5]), f32([1]), f32([1])]);
    expect(Array.from(y)).toEqual([0, 0, 0, 0, 0]);
    expect(mean[0]).toBe(2);
    expect(rstd[0]).toBeCloseTo(1000, 2);
  });

  it('ViT-Base rows [8*197, 768]: the same bits with 1 and 3 threads for y, dx; dw/db within f32 rounding', () => {
    const R = 8 * 197, C = 768;
    const x = randomF32(R * C, 51, 2), w = randomF32(C, 52), b = randomF32(C, 53), dy = randomF32(R * C, 54);
    const run = (e: Engine) => {
      const [y, mean, rstd] = runOp('layernorm', [f32([R, C], x), f32([C], w), f32([C], b)], [f32([R, C]), f32([R]), f32([R])], {}, e);
      const [dx, dw, db] = runOp('layernorm_bwd', [f32([R, C], dy), f32([R, C], x), f32([R], mean), f32([R], rstd), f32([C], w)], [f32([R, C]), f32([C], new Float32Array(C)), f32([C], new Float32Array(C))], {}, e);
      return { y, mean, rstd, dx, dw, db };
    };
    const one = run(engineOf(1)), three = run(engineOf(3));
    expect(maxAbsErr(one.y, three.y)).toBe(0);
    expect(maxAbsErr(one.dx, three.dx)).toBe(0);
    expect(relErr(three.dw, one.dw)).toBeLessThan(1e-6);
    expect(relErr(three.db, one.db)).toBeLessThan(1e-6);
    // db = column sums of dy: check against float64.
    const ref = new Float64Array(C);
    for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) ref[c] += dy[r * C + c];
    expect(relErr(three.db, ref)).toBeLessThan(TOL);
  });
});

function engineOf(threads: number): Engine {
  const e = Engine.create({ device: 'cpu', threads });
  engines.push(e);
  return e;
}

describe('pixel_norm', () => {
  for (const name of pixCases) {
    const { R, P } = fx.cases[name];
    it(`${name} (R=${R}, P=${P}): (x - mean) / sqrt(unbiased var + 1e-6)`, () => {
      const [y] = runOp('pixel_norm', [f32([R, P], fx.f32(`${name}.x`))], [f32([R, P])]);
      expect(relErr(y, fx.f64(`${name}.y`))).toBeLessThan(TOL);
    });
  }
  it('leading dims are rows: [2, 3, 8] equals [6, 8]', () => {
    const x = randomF32(48, 61);
    const [a] = runOp('pixel_norm', [f32([2, 3, 8], x)], [f32([2, 3, 8])]);
    const [b] = runOp('pixel_norm', [f32([6, 8], x)], [f32([6, 8])]);
    expect(Array.from(a)).toEqual(Array.from(b));
  });
});

describe('code paths', () => {
  const here = dirname(fileURLToPath(import.meta.url));
  const tsx = join(here, '..', '..', 'node_modules', '.bin', 'tsx');
  for (const isa of ['scalar', 'avx2']) {
    it(`MEDIC_CPU_ISA=${isa}: the ${isa === 'scalar' ? 'baseline' : 'AVX2'} kernels match torch`, () => {
      const r = spawnSync(tsx, [join(here, 'isa.child.ts'), 'layernorm'], { env: { ...process.env, MEDIC_CPU_ISA: isa }, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { describe: string; worst: number };
      if (isa === 'scalar') expect(out.describe).toMatch(/scalar/);
      else expect(out.describe).not.toMatch(/avx512/);
      expect(out.worst).toBeLessThan(TOL);
    });
  }
});

describe('bad calls', () => {
  it('wrong shapes, dtypes and slots throw clear errors', () => {
    const x = f32([2, 4], new Float32Array(8));
    expect(() => runOp('layernorm', [x, f32([3], [1, 1, 1])], [f32([2, 4]), f32([2]), f32([2])])).toThrow(/layernorm: input 1 must have 4 elements/);
    expect(() => runOp('layernorm', [x, null, f32([4], new Float32Array(4))], [f32([2, 4]), f32([2]), f32([2])])).toThrow(/bias \(input 2\) without a weight/);
    expect(() => runOp('layernorm', [x], [f32([2, 4]), f32([4]), f32([2])])).toThrow(/layernorm: output 1 must have 2 elements/);
    expect(() => runOp('layernorm', [{ shape: [2, 4], dtype: 'i32', data: new Int32Array(8) }], [f32([2, 4]), f32([2]), f32([2])])).toThrow(/layernorm: input 0 must be f32/);
    expect(() => runOp('layernorm_bwd', [x, f32([2, 5], new Float32Array(10)), f32([2], [0, 0]), f32([2], [1, 1])], [f32([2, 4])])).toThrow(/layernorm_bwd: input 0 must have the shape of input 1/);
    expect(() => runOp('layernorm_bwd', [x, x, f32([2], [0, 0]), f32([2], [1, 1])], [f32([2, 4]), f32([4])])).toThrow(/needs the weight/);
    expect(() => runOp('pixel_norm', [f32([3, 1], [1, 2, 3])], [f32([3, 1])])).toThrow(/pixel_norm: needs at least 2 values per row/);
    expect(() => runOp('layernorm', [x], [f32([2, 4]), f32([2])])).toThrow(/layernorm/);
  });
});
