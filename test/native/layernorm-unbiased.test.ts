// layernorm with unbiased=1 (the teacher-target normalisation of the official MEDiC code:
// (x - mean) / sqrt(var + 1e-6) with torch's default, unbiased var()) against the float64 fixture
// cases lnu_* of test/fixtures/gen/layernorm.py: forward y, mean, rstd; backward dx, dw, db; finite
// differences; the difference from the biased form; the C >= 2 check.
import { describe, expect, it } from 'vitest';

import { dot, f32, finiteDiff, loadFixture, randomF32, relErr, runOp } from '../helpers/parity.js';

const fx = loadFixture('layernorm_unbiased');
const TOL = 1e-5;
const cases = Object.keys(fx.cases).filter((k) => k.startsWith('lnu_'));

describe('layernorm unbiased=1', () => {
  it('the fixture has the unbiased cases', () => expect(cases.length).toBeGreaterThanOrEqual(4));

  for (const name of cases) {
    const { R, C, affine, eps } = fx.cases[name];
    const x = fx.f32(`${name}.x`);
    const w = affine ? f32([C], fx.f32(`${name}.w`)) : null;
    const b = affine ? f32([C], fx.f32(`${name}.b`)) : null;

    it(`${name} (R=${R}, C=${C}): forward y, mean, rstd`, () => {
      const [y, mean, rstd] = runOp('layernorm', [f32([R, C], x), w, b], [f32([R, C]), f32([R]), f32([R])], { eps, unbiased: 1 });
      expect(relErr(y, fx.f64(`${name}.y`))).toBeLessThan(TOL);
      expect(relErr(mean, fx.f64(`${name}.mean`))).toBeLessThan(TOL);
      expect(relErr(rstd, fx.f64(`${name}.rstd`))).toBeLessThan(TOL);
    });

    it(`${name}: backward dx (and dw, db)`, () => {
      const ins = [f32([R, C], fx.f32(`${name}.dy`)), f32([R, C], x), f32([R], fx.f32(`${name}.mean`)), f32([R], fx.f32(`${name}.rstd`)), w];
      const outs = [f32([R, C]), affine ? f32([C], new Float32Array(C)) : null, affine ? f32([C], new Float32Array(C)) : null];
      const [dx, dw, db] = runOp('layernorm_bwd', ins, outs, { unbiased: 1 });
      expect(relErr(dx, fx.f64(`${name}.dx`))).toBeLessThan(TOL);
      if (affine) {
        expect(relErr(dw, fx.f64(`${name}.dw`))).toBeLessThan(TOL);
        expect(relErr(db, fx.f64(`${name}.db`))).toBeLessThan(TOL);
      }
    });
  }

  it('differs from the biased form by the factor sqrt(C / (C - 1)) on the output (eps aside)', () => {
    const R = 3, C = 128;
    const x = randomF32(R * C, 7, 2);
    const [yu] = runOp('layernorm', [f32([R, C], x)], [f32([R, C]), f32([R]), f32([R])], { eps: 0, unbiased: 1 });
    const [yb] = runOp('layernorm', [f32([R, C], x)], [f32([R, C]), f32([R]), f32([R])], { eps: 0 });
    const k = Math.sqrt((C - 1) / C);
    expect(relErr(yu, Float64Array.from(yb, (v) => v * k))).toBeLessThan(1e-6);
    expect(relErr(yu, yb)).toBeGreaterThan(3e-3); // 1 - sqrt(127/128) = 0.39 %
  });

  it('the backward agrees with finite differences of the unbiased forward', () => {
    const R = 3, C = 6;
    const x = randomF32(R * C, 11, 1.5), up = randomF32(R * C, 12);
    const fwd = (xx: Float32Array) => dot(up, runOp('layernorm', [f32([R, C], xx)], [f32([R, C]), f32([R]), f32([R])], { unbiased: 1 })[0]);
    const [, m, r] = runOp('layernorm', [f32([R, C], x)], [f32([R, C]), f32([R]), f32([R])], { unbiased: 1 });
    const [dx] = runOp('layernorm_bwd', [f32([R, C], up), f32([R, C], x), f32([R], m), f32([R], r)], [f32([R, C])], { unbiased: 1 });
    expect(finiteDiff(x, dx, fwd, { samples: 18 })).toBeLessThan(1e-2);
  });

  it('rejects rows of one feature with a message naming the attr', () => {
    expect(() => runOp('layernorm', [f32([2, 1], [1, 2])], [f32([2, 1]), f32([2]), f32([2])], { unbiased: 1 })).toThrow(/layernorm: unbiased=1 needs at least 2 features per row, found 1/);
  });
});
