// gemm with bf16 operands / output (ops.h, Precision): against PyTorch bf16 fixtures and float64
// products of the bf16-rounded operands, on the AVX512-BF16 kernel (when this CPU has it) and on the
// fp32 fallback (child process with MEDIC_CPU_ISA=avx512).
//
// Tolerances. Against the float64 contract reference (operands rounded to bf16, exact math): an f32
// C carries only fp32 summation error, relErr < 1e-5 as for the fp32 gemm; a bf16 C is additionally
// rounded once, so every element must be one of the two bf16 neighbours of the exact value (<= 1 ulp;
// measured <= 0.503) and relErr < 4e-3 (2^-9 relative at most per element, ~1.6e-3 measured).
// Against PyTorch's bf16 computation, which rounds to bf16 after the product and again after each
// epilogue step: relErr < 1e-2 (measured <= 3.3e-3).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { Engine, type Tensor } from '../../lib/engine/index.js';
import { bf16ToF32, f32ToBf16 } from '../../lib/io/safetensors.js';
import { cpuEngine, randomF32, relErr } from '../helpers/parity.js';
import { attrAgainstDtype, bf16FixtureResults, type AttrResult, type Bf16CaseResult } from './gemm_bf16_cases.js';
import { refGemm } from './gemm_cases.js';

const here = dirname(fileURLToPath(import.meta.url));
const round = (x: Float32Array) => bf16ToF32(f32ToBf16(x));

function expectAllClose(results: Bf16CaseResult[]) {
  expect(results.length).toBeGreaterThanOrEqual(19);
  for (const r of results) {
    expect(r.errC, `${r.name}: C`).toBeLessThan(r.c16 ? 4e-3 : 1e-5);
    expect(r.ulpC, `${r.name}: C ulps`).toBeLessThanOrEqual(1);
    expect(r.torchC, `${r.name}: C vs torch`).toBeLessThan(1e-2);
    if (r.errPre !== undefined) {
      expect(r.errPre, `${r.name}: preact`).toBeLessThan(r.c16 ? 4e-3 : 1e-5);
      expect(r.ulpPre, `${r.name}: preact ulps`).toBeLessThanOrEqual(1);
      expect(r.torchPre, `${r.name}: preact vs torch`).toBeLessThan(1e-2);
    }
  }
}

describe('gemm bf16 parity', () => {
  it('matches the PyTorch bf16 fixtures: transposes, odd K, fp32 master weight, bf16 C over several K slices, GELU, acc, batched', () => {
    expectAllClose(bf16FixtureResults(cpuEngine()));
  });

  it('threaded, odd shapes, every transpose: bf16 A and B, f32 C, equals the float64 product of the rounded operands; f32 operands with attr bf16=1 give the same bits', () => {
    const e = cpuEngine();
    let seed = 40;
    // M and N leave partial panels (197 = 16 x 12 + 5, 119 = 3 x 32 + 23, 119 % 4 = 3) and K an odd
    // last pair, in both packing forms (k contiguous, and lanes contiguous: trans_a=1, trans_b=0).
    for (const [M, N, K] of [[197, 119, 1001], [250, 131, 700]] as const)
      for (const ta of [false, true])
        for (const tb of [false, true]) {
          const a0 = randomF32(M * K, seed++), b0 = randomF32(K * N, seed++);
          const a = round(a0), b = round(b0);
          const sa = ta ? [K, M] : [M, K], sb = tb ? [N, K] : [K, N];
          const run = (A: Tensor, B: Tensor, attrs: Record<string, number>) => {
            const C = e.tensor([M, N], 'f32', new Float32Array(M * N).fill(NaN));
            try {
              e.op('gemm', [A, B], [C], { trans_a: +ta, trans_b: +tb, ...attrs });
              return C.read() as Float32Array;
            } finally {
              [A, B, C].forEach((t) => t.dispose());
            }
          };
          const label = `${M}x${N}x${K} ta=${+ta} tb=${+tb}`;
          const viaDtype = run(e.tensor(sa, 'bf16', f32ToBf16(a0)), e.tensor(sb, 'bf16', f32ToBf16(b0)), {});
          expect(relErr(viaDtype, refGemm(a, b, M, N, K, ta, tb)), label).toBeLessThan(1e-5);
          const viaAttr = run(e.tensor(sa, 'f32', a0), e.tensor(sb, 'f32', b0), { bf16: 1 });
          expect(Buffer.from(viaAttr.buffer).equals(Buffer.from(viaDtype.buffer)), `${label}, f32 operands`).toBe(true);
        }
  });

  it('gives bit-identical bf16 results on 1 and 2 threads: K over several slices (fp32 partial sums of a bf16 C), and one slice (the threads pack B together), both forms of B', () => {
    // [250, 131, 3500]: K > 3072, two slices, threads own rectangles. K <= 3072: one slice, so the two
    // threads pack B's panels together (131 = 4 x 32 + 3: the second thread's share ends in a partial
    // panel) and each computes a band of rows; trans_b 1 packs B k-contiguous, trans_b 0 lanes-contiguous.
    const cases = [
      { M: 250, N: 131, K: 3500, tb: 1 },
      { M: 250, N: 131, K: 1001, tb: 1 },
      { M: 197, N: 131, K: 768, tb: 0 },
    ];
    for (const { M, N, K, tb } of cases) {
      const a = f32ToBf16(randomF32(M * K, 3)), b = randomF32(N * K, 4), bias = randomF32(N, 5);
      const outs = [1, 2].map((threads) => {
        const e = Engine.create({ device: 'cpu', threads });
        const ts: Tensor[] = [
          e.tensor([M, K], 'bf16', a),
          e.tensor(tb ? [N, K] : [K, N], 'f32', b),
          e.tensor([N], 'f32', bias),
          e.tensor([M, N], 'bf16'),
        ];
        try {
          e.op('gemm', [ts[0], ts[1], ts[2]], [ts[3]], { trans_b: tb });
          return ts[3].read() as Uint16Array;
        } finally {
          ts.forEach((t) => t.dispose());
          e.dispose();
        }
      });
      const ref = refGemm(bf16ToF32(a), round(b), M, N, K, false, tb === 1);
      for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) ref[i * N + j] += bias[j];
      const label = `${M}x${N}x${K} trans_b=${tb}`;
      expect(relErr(bf16ToF32(outs[0]), ref), label).toBeLessThan(4e-3);
      expect(Buffer.from(outs[1].buffer).equals(Buffer.from(outs[0].buffer)), label).toBe(true);
    }
  });

  it('whole 12 x 32 tiles (epilogue from the accumulators) give the bits of partial tiles (epilogue through the tile buffer): alpha, bias, acc, f32 and bf16 C', () => {
    // N = 32 * 3 makes every tile whole; the same product cut to N = 95 leaves the last column panel
    // partial, N = 31 every panel. An element's sums do not depend on its tile, so only the epilogue
    // differs between the runs, and its arithmetic must not.
    const e = cpuEngine();
    const [M, K, Nf] = [48, 200, 96];
    const a = randomF32(M * K, 71), b = randomF32(Nf * K, 72), bias = randomF32(Nf, 73), c0 = randomF32(M * Nf, 74);
    let tested = 0;
    for (const c16 of [false, true])
      for (const acc of [0, 1]) {
        const run = (N: number) => {
          const B = e.tensor([N, K], 'f32', b.subarray(0, N * K)); // B's first N rows (trans_b)
          const A = e.tensor([M, K], 'bf16', f32ToBf16(a)), bs = e.tensor([N], 'f32', bias.subarray(0, N));
          const init = new Float32Array(M * N);
          for (let i = 0; i < M; i++) init.set(c0.subarray(i * Nf, i * Nf + N), i * N);
          const C = c16 ? e.tensor([M, N], 'bf16', f32ToBf16(init)) : e.tensor([M, N], 'f32', init);
          try {
            e.op('gemm', [A, B, bs], [C], { trans_b: 1, alpha: 0.75, acc });
            const out = C.read();
            return out instanceof Uint16Array ? bf16ToF32(out) : (out as Float32Array);
          } finally {
            [A, B, bs, C].forEach((t) => t.dispose());
          }
        };
        const whole = run(Nf);
        for (const N of [95, 31]) {
          const part = run(N);
          for (let i = 0; i < M; i++)
            for (let j = 0; j < N; j++)
              expect(Object.is(part[i * N + j], whole[i * Nf + j]), `c16=${c16} acc=${acc} N=${N} (${i}, ${j})`).toBe(true);
          tested++;
        }
      }
    expect(tested).toBe(4 * 2);
  });

  it('attr bf16=1 with f32 operands gives the bits of the same gemm on bf16 copies (the graph\'s mixed-precision compute)', () => {
    const e = cpuEngine();
    const r = attrAgainstDtype(e);
    expect(r.sameBits).toBe(true);
    // and it is not the fp32 product: bf16 rounding of the operands shows at ~2^-9 relative
    expect(r.relErrVsFp32).toBeGreaterThan(1e-4);
  });

  it('fp32 fallback (MEDIC_CPU_ISA=avx512: no bf16 dot products) gives the same fixtures results', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, 'gemm_bf16_cases.ts')], {
      env: { ...process.env, MEDIC_CPU_ISA: 'avx512' },
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { describe: string; fixtures: Bf16CaseResult[]; attr: AttrResult };
    expect(out.describe).toContain('avx512f');
    expect(out.describe).not.toContain('avx512bf16');
    expectAllClose(out.fixtures);
    // f32 operands with attr bf16=1 (every product of a --precision bf16 step with an fp32 master weight
    // and f32 activations): the fallback recursed into itself until the stack overflowed (a segfault)
    expect(out.attr.sameBits).toBe(true);
    expect(out.attr.relErrVsFp32).toBeGreaterThan(1e-4);
  });
});

describe('gemm bf16 on AMX tiles (TDPBF16PS emulated: MEDIC_CPU_AMX=emulate)', () => {
  // This CPU has no AMX: the child process runs gemm_amx.inc's path with the tile instructions
  // emulated per the SDM, which checks its tiling, K padding and packing (not the silicon).
  it.skipIf(!cpuEngine().describe().includes('avx512bf16'))(
    'meets the fixtures tolerances, sums in the tile instruction\'s order exactly, and 1 and 2 threads agree bit for bit',
    () => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, 'gemm_amx_cases.ts')], {
        env: { ...process.env, MEDIC_CPU_AMX: 'emulate' },
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').pop() as string) as {
        fixtures: Bf16CaseResult[];
        exact: { name: string; same: boolean }[];
        threads: { name: string; same: boolean }[];
      };
      expectAllClose(out.fixtures);
      expect(out.exact).toHaveLength(8);
      for (const c of out.exact) expect(c.same, `${c.name}: C = the tile-order sum`).toBe(true);
      for (const c of out.threads) expect(c.same, `${c.name}: 1 vs 2 threads`).toBe(true);
    },
  );

  // (on a CPU with AMX the default path is the tiles' own, and the model is what it computes)
  const vdp = cpuEngine().describe();
  it.skipIf(!vdp.includes('avx512bf16') || vdp.includes('amx-bf16') || !!process.env.MEDIC_CPU_AMX)(
    'the tile-order model is not what the vdpbf16ps kernel computes (so the exact match above shows the AMX path ran)',
    async () => {
      const { tileOrderGemm } = await import('./gemm_amx_cases.js');
      const e = cpuEngine();
      const [M, N, K] = [40, 33, 1001];
      const a = round(randomF32(M * K, 90)), b = round(randomF32(K * N, 91));
      const A = e.tensor([M, K], 'bf16', f32ToBf16(a)), B = e.tensor([K, N], 'bf16', f32ToBf16(b));
      const C = e.tensor([M, N], 'f32');
      try {
        e.op('gemm', [A, B], [C]);
        const model = tileOrderGemm(a, b, M, N, K, false, false);
        expect(Buffer.from((C.read() as Float32Array).buffer).equals(Buffer.from(model.buffer))).toBe(false);
        expect(relErr(C.read() as Float32Array, model)).toBeLessThan(1e-5);
      } finally {
        [A, B, C].forEach((t) => t.dispose());
      }
    },
  );
});

describe('gemm bf16 bad calls', () => {
  it('names the slot and the dtypes it takes', () => {
    const e = cpuEngine();
    const A = e.tensor([4, 5], 'i32'), B = e.tensor([5, 3], 'bf16'), C = e.tensor([4, 3], 'bf16'), P = e.tensor([4, 3], 'f32');
    try {
      expect(() => e.op('gemm', [A, B], [C])).toThrow(/gemm: input 0 must be f32 or bf16, got i32\[4, 5\]/);
      expect(() => e.op('gemm', [B, B], [C])).toThrow(/inner dims differ/);
      const A2 = e.tensor([4, 5], 'bf16');
      try {
        expect(() => e.op('gemm', [A2, B], [C, P], { act: 1 })).toThrow(/gemm: output 1 must be bf16, got f32\[4, 3\]/);
      } finally {
        A2.dispose();
      }
    } finally {
      [A, B, C, P].forEach((t) => t.dispose());
    }
  });
});
