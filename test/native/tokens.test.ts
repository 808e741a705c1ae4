// Token-row ops against PyTorch float64 fixtures (test/fixtures/gen/tokens.py): copy_rows (slice, batch
// broadcast, batch sum), gather_rows / scatter_rows (overwrite and acc, run-time index validation),
// mask_fill (+ bwd, in place), patchify / unpatchify in both orders, and the patch-embedding identity
// conv2d(img, W, stride p) == patchify(order 1) @ W.reshape(D, -1)^T + bias (the product is done here in
// float64, so this does not depend on the gemm kernel). These ops are linear, so each backward is also
// checked as the adjoint of its forward (<f(x), v> == <x, f^T(v)>) and with finite differences.
import { describe, expect, it } from 'vitest';

import { cpuEngine, dot, f32, finiteDiff, i32, loadFixture, maxAbsErr, randomF32, relErr, runOp, u8, useEngines } from '../helpers/parity.js';

const fx = loadFixture('tokens');
const TOL = 1e-5;


const zeros = (n: number) => new Float32Array(n);
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

const engineOf = useEngines();

const casesOf = (prefix: string) => Object.keys(fx.cases).filter((k) => k.startsWith(prefix));

describe('copy_rows', () => {
  for (const name of casesOf('cr_')) {
    const attrs = fx.cases[name];
    it(`${name} ${JSON.stringify(attrs)}`, () => {
      const xs = fx.shape(`${name}.x`), ys = fx.shape(`${name}.y`);
      const [y] = runOp('copy_rows', [f32(xs, fx.f32(`${name}.x`))], [f32(ys, fx.f32(`${name}.y0`))], attrs);
      expect(relErr(y, fx.f64(`${name}.y`))).toBeLessThan(TOL);
    });
  }

  it('writes every target row (poisoned output, full cover) and nothing else', () => {
    const x = randomF32(2 * 6 * 5, 1);
    const [y] = runOp('copy_rows', [f32([2, 6, 5], x)], [f32([2, 4, 5])], { src: 2, dst: 0, count: 4 });
    for (let b = 0; b < 2; b++)
      for (let i = 0; i < 4; i++)
        for (let c = 0; c < 5; c++) expect(y[(b * 4 + i) * 5 + c]).toBe(x[(b * 6 + 2 + i) * 5 + c]);
    const [z] = runOp('copy_rows', [f32([2, 6, 5], x)], [f32([2, 4, 5])], { src: 0, dst: 1, count: 2 });
    expect(z.slice(0, 5).every(Number.isNaN)).toBe(true); // row 0 of batch 0 not named: left as it was
    expect(z.slice(15, 20).every(Number.isNaN)).toBe(true);
  });

  it('broadcast (Bx = 1) and batch sum (By = 1) are adjoint', () => {
    const x = randomF32(1 * 3 * 7, 2), v = randomF32(4 * 5 * 7, 3);
    const [bx] = runOp('copy_rows', [f32([1, 3, 7], x)], [f32([4, 5, 7], zeros(140))], { src: 0, dst: 2, count: 3 });
    const [st] = runOp('copy_rows', [f32([4, 5, 7], v)], [f32([1, 3, 7], zeros(21))], { src: 2, dst: 0, count: 3, acc: 1 });
    expect(Math.abs(dot(bx, v) - dot(x, st))).toBeLessThan(1e-4);
  });
});

describe('gather_rows and scatter_rows', () => {
  for (const name of casesOf('gs_')) {
    const { B, T, K, C } = fx.cases[name];
    const idx = i32([B, K], fx.i32(`${name}.idx`));
    it(`${name} (B=${B}, T=${T}, K=${K}, C=${C}): gather overwrite (poisoned) and acc`, () => {
      const x = f32([B, T, C], fx.f32(`${name}.x`));
      const [y] = runOp('gather_rows', [x, idx], [f32([B, K, C])]);
      expect(maxAbsErr(y, fx.f64(`${name}.gather`))).toBe(0);
      const [ya] = runOp('gather_rows', [x, idx], [f32([B, K, C], fx.f32(`${name}.y0`))], { acc: 1 });
      expect(relErr(ya, fx.f64(`${name}.gather_acc`))).toBeLessThan(TOL);
    });
    it(`${name}: scatter overwrite and acc; rows not named keep their values`, () => {
      const ys = f32([B, K, C], fx.f32(`${name}.ys`));
      const x0 = fx.f32(`${name}.x0`);
      const [x] = runOp('scatter_rows', [ys, idx], [f32([B, T, C], x0)]);
      expect(maxAbsErr(x, fx.f64(`${name}.scatter`))).toBe(0);
      const [xa] = runOp('scatter_rows', [ys, idx], [f32([B, T, C], x0)], { acc: 1 });
      expect(relErr(xa, fx.f64(`${name}.scatter_acc`))).toBeLessThan(TOL);
    });
  }

  it('scatter_rows (acc into zeros) is the adjoint of gather_rows, and agrees with finite differences', () => {
    const B = 2, T = 6, K = 4, C = 3;
    const idx = i32([B, K], [5, 0, 3, 2, 1, 4, 0, 5]);
    const x = randomF32(B * T * C, 4), v = randomF32(B * K * C, 5);
    const gather = (xx: Float32Array) => runOp('gather_rows', [f32([B, T, C], xx), idx], [f32([B, K, C])])[0];
    const [gT] = runOp('scatter_rows', [f32([B, K, C], v), idx], [f32([B, T, C], zeros(B * T * C))], { acc: 1 });
    expect(Math.abs(dot(gather(x), v) - dot(x, gT))).toBeLessThan(1e-5);
    expect(finiteDiff(x, gT, (xx) => dot(v, gather(xx)), { samples: 36 })).toBeLessThan(1e-2);
  });

  it('bad indices throw, naming op, batch, position and index, before anything is written', () => {
    const B = 2, T = 5, K = 3, C = 4;
    const x0 = randomF32(B * T * C, 6);
    const ys = f32([B, K, C], randomF32(B * K * C, 7));
    expect(() => runOp('scatter_rows', [ys, i32([B, K], [0, 1, 2, 3, 5, 1])], [f32([B, T, C], x0)])).toThrow(
      /scatter_rows: index out of range at batch 1, position 1: 5 \(rows 0\.\.4\)/,
    );
    expect(() => runOp('scatter_rows', [ys, i32([B, K], [0, -1, 2, 3, 4, 1])], [f32([B, T, C], x0)])).toThrow(/scatter_rows: index out of range at batch 0, position 1: -1/);
    expect(() => runOp('scatter_rows', [ys, i32([B, K], [0, 1, 2, 3, 1, 3])], [f32([B, T, C], x0)])).toThrow(/scatter_rows: duplicate index at batch 1, position 2: 3/);
    expect(() => runOp('gather_rows', [f32([B, T, C], x0), i32([B, K], [0, 1, 7, 0, 0, 0])], [f32([B, K, C])])).toThrow(/gather_rows: index out of range at batch 0, position 2: 7/);
    // The failed scatter left x as it was.
    const e = cpuEngine();
    const xt = e.tensor([B, T, C], 'f32', x0), yt = e.tensor([B, K, C], 'f32', randomF32(B * K * C, 8)), it_ = e.tensor([B, K], 'i32', [0, 1, 2, 3, 4, 9]);
    try {
      expect(() => e.op('scatter_rows', [yt, it_], [xt])).toThrow(/batch 1, position 2: 9/);
      expect(Array.from(xt.read())).toEqual(Array.from(x0));
    } finally {
      xt.dispose();
      yt.dispose();
      it_.dispose();
    }
  });

  it('ViT-Base visible-token gather/scatter [8, 197, 768], K = 119: exact, 1 and 3 threads', () => {
    const B = 8, T = 197, K = 119, C = 768;
    const x = randomF32(B * T * C, 9);
    const idx = new Int32Array(B * K);
    for (let b = 0; b < B; b++) for (let k = 0; k < K; k++) idx[b * K + k] = (k * 37 + b * 11) % T; // distinct: 37 is coprime to 197
    for (const threads of [1, 3]) {
      const e = engineOf(threads);
      const [y] = runOp('gather_rows', [f32([B, T, C], x), i32([B, K], idx)], [f32([B, K, C])], {}, e);
      let bad = 0;
      for (let b = 0; b < B; b++)
        for (let k = 0; k < K; k++)
          for (let c = 0; c < C; c += 97) if (y[(b * K + k) * C + c] !== x[(b * T + idx[b * K + k]) * C + c]) bad++;
      expect(bad).toBe(0);
      const [back] = runOp('scatter_rows', [f32([B, K, C], y), i32([B, K], idx)], [f32([B, T, C], zeros(B * T * C))], {}, e);
      for (let b = 0; b < B; b++)
        for (let k = 0; k < K; k++) {
          const t = idx[b * K + k];
          expect(back[(b * T + t) * C + 5]).toBe(x[(b * T + t) * C + 5]);
        }
    }
  });
});

describe('mask_fill', () => {
  for (const name of casesOf('mf_')) {
    const { B, T, C } = fx.cases[name];
    const mask = u8([B, T], fx.u8(`${name}.mask`));
    it(`${name} (B=${B}, T=${T}, C=${C}): forward and backward (dx_out poisoned, dtoken accumulates)`, () => {
      const [x] = runOp('mask_fill', [mask, f32([C], fx.f32(`${name}.token`))], [f32([B, T, C], fx.f32(`${name}.x0`))]);
      expect(maxAbsErr(x, fx.f64(`${name}.x`))).toBe(0);
      const [dxo, dtok] = runOp('mask_fill_bwd', [mask, f32([B, T, C], fx.f32(`${name}.dx`))], [f32([B, T, C]), f32([C], fx.f32(`${name}.dtok0`))]);
      expect(maxAbsErr(dxo, fx.f64(`${name}.dx_out`))).toBe(0);
      expect(relErr(dtok, fx.f64(`${name}.dtok`))).toBeLessThan(TOL);
    });
  }

  it('mask_fill_bwd in place (dx_out aliases dx)', () => {
    const name = 'mf_big';
    const { B, T, C } = fx.cases[name];
    const e = cpuEngine();
    const m = e.tensor([B, T], 'u8', fx.u8(`${name}.mask`)), dx = e.tensor([B, T, C], 'f32', fx.f32(`${name}.dx`));
    const dtok = e.tensor([C], 'f32', fx.f32(`${name}.dtok0`));
    try {
      e.op('mask_fill_bwd', [m, dx], [dx, dtok]);
      expect(maxAbsErr(dx.read(), fx.f64(`${name}.dx_out`))).toBe(0);
      expect(relErr(dtok.read(), fx.f64(`${name}.dtok`))).toBeLessThan(TOL);
    } finally {
      m.dispose();
      dx.dispose();
      dtok.dispose();
    }
  });

  it('mask_fill_bwd agrees with finite differences wrt the token and x', () => {
    const B = 2, T = 3, C = 4;
    const mask = u8([B, T], [1, 0, 1, 0, 0, 1]);
    const x0 = randomF32(B * T * C, 10), token = randomF32(C, 11), w = randomF32(B * T * C, 12);
    const fwd = (xx: Float32Array, tt: Float32Array) => dot(w, runOp('mask_fill', [mask, f32([C], tt)], [f32([B, T, C], xx)])[0]);
    const [dx, dtok] = runOp('mask_fill_bwd', [mask, f32([B, T, C], w)], [f32([B, T, C]), f32([C], zeros(C))]);
    expect(finiteDiff(token, dtok, (tt) => fwd(x0, tt), { samples: 4 })).toBeLessThan(1e-2);
    expect(finiteDiff(x0, dx, (xx) => fwd(xx, token), { samples: 24 })).toBeLessThan(1e-2);
  });
});

describe('patchify and unpatchify', () => {
  for (const name of casesOf('pf_')) {
    const { patch, D } = fx.cases[name];
    const is = fx.shape(`${name}.img`), xs = fx.shape(`${name}.order0`);
    const img = fx.f32(`${name}.img`);
    it(`${name} img ${JSON.stringify(is)}, p=${patch}: both orders match the torch reshapes; unpatchify inverts`, () => {
      for (const order of [0, 1]) {
        const [x] = runOp('patchify', [f32(is, img)], [f32(xs)], { patch, order });
        expect(maxAbsErr(x, fx.f64(`${name}.order${order}`))).toBe(0);
        const [back] = runOp('unpatchify', [f32(xs, x)], [f32(is)], { patch, order });
        expect(Array.from(back)).toEqual(Array.from(img));
      }
    });

    it(`${name}: conv2d(img, W, stride ${patch}) == patchify(order 1) @ W.reshape(${D}, -1)^T + bias`, () => {
      const [x] = runOp('patchify', [f32(is, img)], [f32(xs)], { patch, order: 1 });
      const W = fx.f64(`${name}.W`), bias = fx.f64(`${name}.bias`);
      const [B, N, P] = xs;
      const emb = (xx: ArrayLike<number>) => {
        const out = new Float64Array(B * N * D);
        for (let r = 0; r < B * N; r++)
          for (let d = 0; d < D; d++) {
            let s = bias[d];
            for (let k = 0; k < P; k++) s += xx[r * P + k] * W[d * P + k];
            out[r * D + d] = s;
          }
        return out;
      };
      expect(relErr(emb(x), fx.f64(`${name}.conv`))).toBeLessThan(1e-12);
      if (is[1] > 1) {
        // The MAE order is a different flattening: with channels it does not give the conv.
        const [x0] = runOp('patchify', [f32(is, img)], [f32(xs)], { patch, order: 0 });
        expect(relErr(emb(x0), fx.f64(`${name}.conv`))).toBeGreaterThan(0.1);
      }
    });
  }

  it('unpatchify is the adjoint of patchify (a permutation): <patchify(img), v> == <img, unpatchify(v)>', () => {
    const is = [2, 3, 8, 12], xs = [2, 6, 48];
    const img = randomF32(numel(is), 13), v = randomF32(numel(xs), 14);
    for (const order of [0, 1]) {
      const [x] = runOp('patchify', [f32(is, img)], [f32(xs)], { patch: 4, order });
      const [u] = runOp('unpatchify', [f32(xs, v)], [f32(is)], { patch: 4, order });
      expect(Math.abs(dot(x, v) - dot(img, u))).toBeLessThan(1e-4);
    }
  });

  it('224x224 images, p=16: round trip exact and identical with 1 and 3 threads', () => {
    const is = [4, 3, 224, 224], xs = [4, 196, 768];
    const img = randomF32(numel(is), 15);
    for (const order of [0, 1]) {
      const a = runOp('patchify', [f32(is, img)], [f32(xs)], { patch: 16, order }, engineOf(1))[0];
      const b = runOp('patchify', [f32(is, img)], [f32(xs)], { patch: 16, order }, engineOf(3))[0];
      expect(maxAbsErr(a, b)).toBe(0);
      const [back] = runOp('unpatchify', [f32(xs, b)], [f32(is)], { patch: 16, order });
      expect(maxAbsErr(back, img)).toBe(0);
    }
  });
});

describe('bad calls', () => {
  it('wrong shapes, dtypes and attrs throw clear errors', () => {
    const x = f32([2, 5, 4], zeros(40));
    expect(() => runOp('copy_rows', [x], [f32([2, 3, 4])], { src: 3, dst: 0, count: 3 })).toThrow(/copy_rows: rows out of range: src=3 dst=0 count=3/);
    expect(() => runOp('copy_rows', [x], [f32([2, 3, 4])], { src: 0, dst: 0 })).toThrow(/copy_rows: rows out of range/);
    expect(() => runOp('copy_rows', [x], [f32([1, 5, 4])], { count: 5 })).toThrow(/copy_rows: batch sizes 2 -> 1/);
    expect(() => runOp('copy_rows', [x], [f32([2, 5, 3])], { count: 5 })).toThrow(/copy_rows: row widths differ/);
    expect(() => runOp('gather_rows', [x, f32([2, 3], zeros(6))], [f32([2, 3, 4])])).toThrow(/gather_rows: input 1 must be i32/);
    expect(() => runOp('gather_rows', [x, i32([3, 3], new Int32Array(9))], [f32([3, 3, 4])])).toThrow(/gather_rows: input 1 \(indices\) must have batch 2/);
    expect(() => runOp('gather_rows', [x, i32([2, 3], new Int32Array(6))], [f32([2, 3, 5])])).toThrow(/gather_rows: output 0 must have shape \[2, 3, 4\]/);
    expect(() => runOp('scatter_rows', [f32([2, 3, 4], zeros(24)), i32([2, 2], new Int32Array(4))], [x])).toThrow(/scatter_rows: input 1 \(indices\) must have shape \[2, 3\]/);
    expect(() => runOp('mask_fill', [f32([2, 5], zeros(10)), f32([4], zeros(4))], [x])).toThrow(/mask_fill: input 0 must be u8/);
    expect(() => runOp('mask_fill', [u8([2, 5], new Uint8Array(10)), f32([3], zeros(3))], [x])).toThrow(/mask_fill: input 1 must have 4 elements/);
    expect(() => runOp('mask_fill_bwd', [u8([2, 4], new Uint8Array(8)), x], [f32([2, 5, 4]), f32([4])])).toThrow(/mask_fill_bwd: input 0 must have shape \[2, 5\]/);
    const img = f32([1, 3, 10, 12], zeros(360));
    expect(() => runOp('patchify', [img], [f32([1, 6, 48])], { patch: 4 })).toThrow(/patchify: image 10x12 is not divisible by patch 4/);
    expect(() => runOp('patchify', [img], [f32([1, 30, 12])])).toThrow(/patchify: attr patch is required/);
    expect(() => runOp('patchify', [img], [f32([1, 30, 12])], { patch: 2, order: 2 })).toThrow(/attr order must be 0 \(py, px, ch\) or 1/);
    expect(() => runOp('patchify', [img], [f32([1, 30, 11])], { patch: 2 })).toThrow(/patchify: output 0 must have shape \[1, 30, 12\]/);
    expect(() => runOp('unpatchify', [f32([1, 30, 12], zeros(360))], [f32([1, 3, 10, 11])], { patch: 2 })).toThrow(/unpatchify: image 10x11 is not divisible/);
  });
});
