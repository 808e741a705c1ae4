// gemm: C = act(alpha * op(A) op(B) + bias) (+ C when acc=1), against PyTorch float64 fixtures and a
// float64 product computed here, on every ISA path (AVX-512, AVX2+FMA, scalar).
//
// Tolerance: relErr (norm-wise) < 1e-5. fp32 accumulation over K terms gives a norm-wise error of
// about sqrt(K) * 2^-24 for zero-mean data (K = 1001: ~2e-6; measured <= 4e-7), so 1e-5 holds with
// margin up to K ~ 3072 and still fails on any indexing, epilogue or blocking mistake (those give
// errors of order 1).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { Engine } from '../../lib/engine/index.js';
import { cpuEngine, dot, finiteDiff, poisoned, randomF32, relErr } from '../helpers/parity.js';
import { erf, fixtureResults, geluTail, isaOf, randomResults, refGemm, type CaseResult } from './gemm_cases.js';

const TOL = 1e-5;
const here = dirname(fileURLToPath(import.meta.url));

function expectAllClose(results: CaseResult[]) {
  expect(results.length).toBeGreaterThan(0);
  for (const r of results) {
    expect(r.errC, `${r.name}: C`).toBeLessThan(TOL);
    if (r.errPre !== undefined) expect(r.errPre, `${r.name}: preact`).toBeLessThan(TOL);
  }
}

describe('gemm parity (default ISA of this machine)', () => {
  it('matches the PyTorch fixtures: 4 transpose combos, bias, GELU + preact, acc, alpha, batched, odd sizes', () => {
    const res = fixtureResults(cpuEngine());
    expect(res.map((r) => r.name)).toEqual(expect.arrayContaining(['nn', 'nt', 'tn', 'tt', 'longk_gelu', 'bat_tt_acc', 'mt_nt']));
    expectAllClose(res);
  });

  it('matches a float64 product on threaded and odd shapes, all transpose combos', () => {
    expectAllClose(randomResults(cpuEngine()));
  });

  it('gives bit-identical results on 1 and 2 threads (the K summation order does not depend on the split): K over 3 slices, both forms of B, bias and GELU', () => {
    const e1 = Engine.create({ device: 'cpu', threads: 1 });
    const e2 = Engine.create({ device: 'cpu', threads: 2 });
    try {
      const [M, N, K] = [250, 131, 700]; // 131 = 4 x 32 + 3: a partial last panel
      const a = randomF32(M * K, 3), b = randomF32(N * K, 4), bias = randomF32(N, 5);
      for (const tb of [1, 0]) {
        const gelu = tb === 0; // the second case: B lanes-contiguous, with the bias + GELU epilogue
        const outs = [e1, e2].map((e) => {
          const A = e.tensor([M, K], 'f32', a), B = e.tensor(tb ? [N, K] : [K, N], 'f32', b);
          const bs = e.tensor([N], 'f32', bias), C = poisoned(e, [M, N]), P = poisoned(e, [M, N]);
          try {
            if (gelu) e.op('gemm', [A, B, bs], [C, P], { trans_b: tb, act: 1 });
            else e.op('gemm', [A, B], [C], { trans_b: tb });
            return [C.read(), P.read()];
          } finally {
            [A, B, bs, C, P].forEach((t) => t.dispose());
          }
        });
        const ref = refGemm(a, b, M, N, K, false, tb === 1);
        if (gelu) for (let i = 0; i < M * N; i++) ref[i] += bias[i % N];
        expect(relErr(gelu ? outs[0][1] : outs[0][0], ref), `trans_b=${tb}`).toBeLessThan(TOL);
        expect(Buffer.from(outs[1][0].buffer).equals(Buffer.from(outs[0][0].buffer)), `trans_b=${tb}: C`).toBe(true);
        if (gelu) expect(Buffer.from(outs[1][1].buffer).equals(Buffer.from(outs[0][1].buffer)), 'preact').toBe(true);
      }
    } finally {
      e1.dispose();
      e2.dispose();
    }
  });

  it('acc=1 twice adds the product twice (beta = 1, no overwrite)', () => {
    const e = cpuEngine();
    const [M, N, K] = [37, 45, 400];
    const a = randomF32(M * K, 5), b = randomF32(K * N, 6), c0 = randomF32(M * N, 7);
    const A = e.tensor([K, M], 'f32', a), B = e.tensor([K, N], 'f32', b), C = e.tensor([M, N], 'f32', c0);
    try {
      e.op('gemm', [A, B], [C], { trans_a: 1, acc: 1 });
      e.op('gemm', [A, B], [C], { trans_a: 1, acc: 1 });
      const ref = refGemm(a, b, M, N, K, true, false).map((v, i) => 2 * v + c0[i]);
      expect(relErr(C.read(), ref)).toBeLessThan(TOL);
    } finally {
      [A, B, C].forEach((t) => t.dispose());
    }
  });
});

describe('gemm GELU epilogue', () => {
  const geluGrad = (x: number) => 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);

  it('C is GELU(preact) element by element, also in the tails (|x| up to ~9)', () => {
    const r = geluTail(cpuEngine());
    expect(r.maxAbsPre).toBeGreaterThan(6); // the test reaches the tails
    expect(r.worst).toBeLessThan(2e-5); // per element, relative (float erfc + exp)
  });

  it('finite differences through bias agree with GELU\'(preact): the epilogue and preact are consistent', () => {
    const e = cpuEngine();
    const [M, N, K] = [9, 13, 350];
    const A = e.tensor([M, K], 'f32', randomF32(M * K, 10, 0.1)), B = e.tensor([K, N], 'f32', randomF32(K * N, 11, 0.1));
    const bias = randomF32(N, 12);
    const w = randomF32(M * N, 13);
    const bT = e.tensor([N], 'f32', bias), C = e.tensor([M, N]), P = e.tensor([M, N]);
    try {
      const f = (bv: Float32Array) => {
        bT.write(bv);
        e.op('gemm', [A, B, bT], [C, P], { act: 1 });
        return dot(w, C.read());
      };
      f(bias);
      const p = P.read();
      const grad = new Float64Array(N);
      for (let i = 0; i < M * N; i++) grad[i % N] += w[i] * geluGrad(p[i]);
      expect(finiteDiff(bias, grad, f, { h: 1e-2, samples: N })).toBeLessThan(1e-2);
    } finally {
      [A, B, bT, C, P].forEach((t) => t.dispose());
    }
  });
});

describe('gemm on the other ISA paths (child process with MEDIC_CPU_ISA)', () => {
  for (const isa of ['avx2', 'scalar'] as const) {
    it(`${isa}: fixtures, float64 products and GELU tails match`, () => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, 'gemm_cases.ts')], {
        env: { ...process.env, MEDIC_CPU_ISA: isa },
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').pop() as string) as {
        describe: string;
        fixtures: CaseResult[];
        random: CaseResult[];
        geluTail: { worst: number; maxAbsPre: number };
      };
      expect(isaOf(out.describe)).toBe(isa);
      expectAllClose(out.fixtures);
      expectAllClose(out.random);
      expect(out.geluTail.maxAbsPre).toBeGreaterThan(6);
      expect(out.geluTail.worst).toBeLessThan(2e-5);
    });
  }
});

describe('gemm bad calls', () => {
  const e = cpuEngine();
  const run = (shapes: { a: number[]; b: number[]; c: number[]; bias?: number[]; pre?: number[] }, attrs: Record<string, number> = {}, dtypeA: 'f32' | 'i32' = 'f32') => {
    const A = e.tensor(shapes.a, dtypeA), B = e.tensor(shapes.b), C = e.tensor(shapes.c);
    const bias = shapes.bias ? e.tensor(shapes.bias) : null;
    const P = shapes.pre ? e.tensor(shapes.pre) : null;
    try {
      e.op('gemm', [A, B, bias], [C, P], attrs);
    } finally {
      [A, B, C, bias, P].forEach((t) => t?.dispose());
    }
  };
  it('inner dims that differ', () => {
    expect(() => run({ a: [4, 5], b: [6, 3], c: [4, 3] })).toThrow(/gemm.*inner dims differ/);
    expect(() => run({ a: [4, 5], b: [3, 6], c: [4, 3] }, { trans_b: 1 })).toThrow(/inner dims differ/);
  });
  it('wrong output shape', () => {
    expect(() => run({ a: [4, 5], b: [5, 3], c: [4, 4] })).toThrow(/output 0 must have shape/);
  });
  it('wrong dtype', () => {
    expect(() => run({ a: [4, 5], b: [5, 3], c: [4, 3] }, {}, 'i32')).toThrow(/gemm/);
  });
  it('bias of the wrong length', () => {
    expect(() => run({ a: [4, 5], b: [5, 3], c: [4, 3], bias: [4] })).toThrow(/gemm/);
  });
  it('GELU without preact, or with acc', () => {
    expect(() => run({ a: [4, 5], b: [5, 3], c: [4, 3] }, { act: 1 })).toThrow(/preact/);
    expect(() => run({ a: [4, 5], b: [5, 3], c: [4, 3], pre: [4, 3] }, { act: 1, acc: 1 })).toThrow(/cannot accumulate/);
    expect(() => run({ a: [4, 5], b: [5, 3], c: [4, 3] }, { act: 2 })).toThrow(/act must be 0/);
  });
  it('batched with unequal batch dims', () => {
    expect(() => run({ a: [2, 4, 5], b: [3, 5, 3], c: [2, 4, 3] })).toThrow(/equal batch dims/);
  });
  it('a disposed tensor', () => {
    const A = e.tensor([4, 5]), B = e.tensor([5, 3]), C = e.tensor([4, 3]);
    A.dispose();
    try {
      expect(() => e.op('gemm', [A, B], [C])).toThrow(/dispos/);
    } finally {
      B.dispose();
      C.dispose();
    }
  });
});
