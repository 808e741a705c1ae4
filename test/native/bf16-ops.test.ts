// Storage-only bf16 ops (ops.h, Precision): every op with bf16 activation slots runs its fp32 kernel
// on the bf16 values and rounds its bf16 outputs once. Checked two ways:
//   - exactly: the op on bf16 tensors equals, bit for bit, the same op on f32 copies of the bf16
//     values with its outputs rounded to bf16 afterwards (the contract's definition);
//   - against PyTorch (test/fixtures/bf16_ops.safetensors): the float64 op on the bf16 inputs
//     (bf16 outputs within 1 bf16 ulp, f32 statistics within fp32 error) and PyTorch's own bf16
//     computation, which rounds after each step (attention: scores and probabilities in bf16), so
//     it is looser: relErr < 2e-2 for attention, < 1e-2 for layernorm and GELU (measured below).
// The exception is attention on a CPU with AVX512-BF16 (ops.h, "attention"): its tile products take
// bf16 operands on vdpbf16ps, P and dS rounded to bf16, so it is held to tolerances instead of bits:
// ATTN_TOL against the fp32 kernel on the same values and against float64, while the bit-exact
// check of its fp32-product fallback runs in a child process under MEDIC_CPU_ISA=avx512.
// No finite-difference checks here: the gradients are the fp32 ops' (checked in their own tests)
// and bf16's 8-bit mantissa is too coarse for differences.
import { describe, expect, it } from 'vitest';

import { Engine, type Tensor } from '../../lib/engine/index.js';
import type { OpName } from '../../lib/engine/ops.js';
import { SafetensorsFile, bf16ToF32, f32ToBf16 } from '../../lib/io/safetensors.js';
import { cpuEngine, loadFixture, randomF32, relErr } from '../helpers/parity.js';
import { bf16Ulps } from './gemm_bf16_cases.js';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

type Spec = { shape: number[]; bf16?: boolean; data?: Float32Array | Int32Array | Uint8Array; dtype?: 'f32' | 'i32' | 'u8' };
const round = (x: Float32Array) => bf16ToF32(f32ToBf16(x));
const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer).equals(Buffer.from(b.buffer));

// Whether bf16 attention takes the AVX512-BF16 path here (cpu_features(), capped by MEDIC_CPU_ISA).
const DPBF16 = /avx512bf16/.test(cpuEngine().describe());
// relErr bound of that path's o and dqkv against the fp32 kernel on the same bf16 values (measured
// 2.1e-3 .. 2.8e-3 on the random inputs below) and against float64 (1.8e-3 .. 2.5e-3, where the
// fp32-product path is at 1.6e-3 .. 1.8e-3 from its bf16 output rounding alone): rounding P or dS to
// bf16 costs about as much as rounding the output, 2^-9 relative. lse, from fp32 probabilities: 1e-6
// (measured 1e-8 .. 5e-8).
const ATTN_TOL = 5e-3;
const LSE_TOL = 1e-6;

/** o / dqkv (lse: f32) of bf16 attention against the reference: the bits, or ATTN_TOL on AVX512-BF16. */
function expectAttention(out: Float32Array, ref: Float32Array, what: string, tol = ATTN_TOL): void {
  expect(out.some((x) => x !== 0), `${what} is not all zeros`).toBe(true);
  if (DPBF16) expect(relErr(out, ref), what).toBeLessThan(tol);
  else expect(same(out, ref), what).toBe(true);
}

/** Runs op twice (bf16 slots as bf16, then as f32 copies of the same values) and returns both outputs as bf16 bits / f32. */
function twin(e: Engine, op: OpName, ins: (Spec | null)[], outs: (Spec | null)[], attrs: Record<string, number>) {
  const runOnce = (asBf16: boolean) => {
    const make = (s: Spec | null, i: number, isOut: boolean) => {
      if (!s) return null;
      const n = s.shape.reduce((a, b) => a * b, 1);
      if (s.dtype && s.dtype !== 'f32') return e.tensor(s.shape, s.dtype, s.data as Int32Array);
      const v = round((s.data as Float32Array | undefined) ?? randomF32(n, 100 + i + (isOut ? 50 : 0)));
      return s.bf16 && asBf16 ? e.tensor(s.shape, 'bf16', f32ToBf16(v)) : e.tensor(s.shape, 'f32', v);
    };
    const ti = ins.map((s, i) => make(s, i, false)), to = outs.map((s, i) => make(s, i, true));
    try {
      e.op(op, ti, to, attrs);
      return to.map((t, i) => {
        if (!t) return null;
        const v = t.read();
        // the f32 run's bf16-slot outputs are rounded here, as the contract rounds them
        return v instanceof Uint16Array ? bf16ToF32(v) : outs[i]!.bf16 ? round(v as Float32Array) : (v as Float32Array);
      });
    } finally {
      [...ti, ...to].forEach((t) => t?.dispose());
    }
  };
  return { bf: runOnce(true), ref: runOnce(false) };
}

describe('bf16 storage: bit-exact with the fp32 op on the bf16 values', () => {
  const e = cpuEngine();
  const [B, T, H, Hd] = [2, 37, 2, 16];
  const D = H * Hd;
  const cases: [OpName, (Spec | null)[], (Spec | null)[], Record<string, number>][] = [
    ['gelu', [{ shape: [300], bf16: true }], [{ shape: [300], bf16: true }], {}],
    ['gelu_bwd', [{ shape: [300], bf16: true }, { shape: [300], bf16: true }], [{ shape: [300], bf16: true }], { acc: 1 }],
    ['add', [{ shape: [5, 40], bf16: true }, { shape: [40], bf16: true }], [{ shape: [5, 40], bf16: true }], {}],
    ['sum_to', [{ shape: [5, 40], bf16: true }], [{ shape: [40] }], { acc: 1 }],
    ['layernorm', [{ shape: [6, 70], bf16: true }, { shape: [70] }, { shape: [70] }], [{ shape: [6, 70], bf16: true }, { shape: [6] }, { shape: [6] }], {}],
    ['scale_add', [{ shape: [B, T, D], bf16: true }, { shape: [D] }], [{ shape: [B, T, D] }], {}],
    ['scale_add_bwd', [{ shape: [B, T, D] }, { shape: [B, T, D], bf16: true }, { shape: [D] }], [{ shape: [B, T, D] }, { shape: [D] }], { acc: 1 }],
    ['softmax', [{ shape: [4, 33], bf16: true }], [{ shape: [4, 33], bf16: true }], { scale: 0.5 }],
    ['copy_rows', [{ shape: [2, 5, 8], bf16: true }], [{ shape: [2, 7, 8], bf16: true }], { src: 1, dst: 2, count: 3, acc: 1 }],
    // the ops with bf16 kernels of their own (bf16_native): vector bodies and tails, acc and not
    ['gelu', [{ shape: [1037], bf16: true }], [{ shape: [1037], bf16: true }], {}],
    ['gelu_bwd', [{ shape: [1037], bf16: true }, { shape: [1037], bf16: true }], [{ shape: [1037], bf16: true }], {}],
    ['quick_gelu', [{ shape: [1037], bf16: true }], [{ shape: [1037], bf16: true }], {}],
    ['quick_gelu_bwd', [{ shape: [1037], bf16: true }, { shape: [1037], bf16: true }], [{ shape: [1037], bf16: true }], {}],
    ['quick_gelu_bwd', [{ shape: [1037], bf16: true }, { shape: [1037], bf16: true }], [{ shape: [1037], bf16: true }], { acc: 1 }],
    ['copy', [{ shape: [531], bf16: true }], [{ shape: [531], bf16: true }], {}],
    ['copy', [{ shape: [531], bf16: true }], [{ shape: [531], bf16: true }], { alpha: -0.3, acc: 1 }],
    ['add', [{ shape: [3, 7, 77], bf16: true }, { shape: [7, 77], bf16: true }], [{ shape: [3, 7, 77], bf16: true }], {}],
    ['sum_to', [{ shape: [300, 40], bf16: true }], [{ shape: [40] }], {}],
    ['scale_add', [{ shape: [B, T, D], bf16: true }, { shape: [D] }, { shape: [B] }], [{ shape: [B, T, D], bf16: true }], {}],
    ['scale_add', [{ shape: [B, T, D], bf16: true }], [{ shape: [B, T, D], bf16: true }], {}],
    ['scale_add_bwd', [{ shape: [B, T, D], bf16: true }, { shape: [B, T, D], bf16: true }, { shape: [D] }, { shape: [B] }], [{ shape: [B, T, D], bf16: true }, { shape: [D] }], { acc: 1 }],
    ['scale_add_bwd', [{ shape: [B, T, D], bf16: true }, { shape: [B, T, D], bf16: true }, { shape: [D] }], [{ shape: [B, T, D], bf16: true }], {}],
    ['layernorm', [{ shape: [9, 771], bf16: true }], [{ shape: [9, 771], bf16: true }, { shape: [9] }, { shape: [9] }], { unbiased: 1 }],
    ['layernorm_bwd', [{ shape: [6, 70], bf16: true }, { shape: [6, 70], bf16: true }, { shape: [6] }, { shape: [6] }, { shape: [70] }], [{ shape: [6, 70], bf16: true }, { shape: [70] }, { shape: [70] }], { acc: 1 }],
    ['layernorm_bwd', [{ shape: [9, 771], bf16: true }, { shape: [9, 771], bf16: true }, { shape: [9] }, { shape: [9] }], [{ shape: [9, 771], bf16: true }], {}],
    ['copy_rows', [{ shape: [3, 5, 40], bf16: true }], [{ shape: [3, 7, 40], bf16: true }], { src: 0, dst: 1, count: 5 }],
    ['copy_rows', [{ shape: [1, 1, 40], bf16: true }], [{ shape: [3, 7, 40], bf16: true }], { src: 0, dst: 0, count: 1 }],
    ['copy_rows', [{ shape: [3, 5, 40], bf16: true }], [{ shape: [1, 5, 40], bf16: true }], { src: 0, dst: 0, count: 5, acc: 1 }],
    ['gather_rows', [{ shape: [2, 6, 40], bf16: true }, { shape: [2, 3], dtype: 'i32', data: new Int32Array([5, 0, 2, 1, 1, 4]) }], [{ shape: [2, 3, 40], bf16: true }], {}],
    ['gather_rows', [{ shape: [2, 6, 40], bf16: true }, { shape: [2, 3], dtype: 'i32', data: new Int32Array([5, 0, 2, 1, 1, 4]) }], [{ shape: [2, 3, 40], bf16: true }], { acc: 1 }],
    ['scatter_rows', [{ shape: [2, 3, 40], bf16: true }, { shape: [2, 3], dtype: 'i32', data: new Int32Array([5, 0, 2, 1, 3, 4]) }], [{ shape: [2, 6, 40], bf16: true }], {}],
    ['scatter_rows', [{ shape: [2, 3, 40], bf16: true }, { shape: [2, 3], dtype: 'i32', data: new Int32Array([5, 0, 2, 1, 3, 4]) }], [{ shape: [2, 6, 40], bf16: true }], { acc: 1 }],
    // mixed storage (an f32 activation beside bf16 ones): widened copies ...
    ['gelu_bwd', [{ shape: [300] }, { shape: [300], bf16: true }], [{ shape: [300], bf16: true }], {}],
    ['scale_add', [{ shape: [B, T, D] }, { shape: [D] }], [{ shape: [B, T, D], bf16: true }], {}],
    ['scale_add_bwd', [{ shape: [B, T, D], bf16: true }, { shape: [B, T, D] }, { shape: [D] }], [{ shape: [B, T, D] }], {}],
    // ... except the mixed-precision step's forms, which have kernels of their own (vector bodies and
    // tails, acc and not, keep and not, dgamma and not)
    ['layernorm', [{ shape: [9, 771] }, { shape: [771] }, { shape: [771] }], [{ shape: [9, 771], bf16: true }, { shape: [9] }, { shape: [9] }], {}],
    ['scale_add', [{ shape: [B, T, D], bf16: true }, { shape: [D] }, { shape: [B] }], [{ shape: [B, T, D] }], {}],
    ['scale_add_bwd', [{ shape: [B, T, D] }, { shape: [B, T, D], bf16: true }, { shape: [D] }, { shape: [B] }], [{ shape: [B, T, D] }, { shape: [D] }], {}],
    ['scale_add_bwd', [{ shape: [B, T, D] }, { shape: [B, T, D], bf16: true }, { shape: [D] }], [{ shape: [B, T, D] }], { acc: 1 }],
    ['gelu_bwd', [{ shape: [1037], bf16: true }, { shape: [1037] }], [{ shape: [1037] }], {}],
    ['gelu_bwd', [{ shape: [1037], bf16: true }, { shape: [1037] }], [{ shape: [1037] }], { acc: 1 }],
    ['quick_gelu_bwd', [{ shape: [1037], bf16: true }, { shape: [1037] }], [{ shape: [1037] }], { acc: 1 }],
    // the bf16 gradients that only bf16 gemms and a bias sum read: dz of a GELU's pre-activation, dy of a branch
    ['gelu_bwd', [{ shape: [1037], bf16: true }, { shape: [1037] }], [{ shape: [1037], bf16: true }], {}],
    ['gelu_bwd', [{ shape: [1037], bf16: true }, { shape: [1037] }], [{ shape: [1037], bf16: true }], { acc: 1 }],
    ['quick_gelu_bwd', [{ shape: [1037], bf16: true }, { shape: [1037] }], [{ shape: [1037], bf16: true }], {}],
    ['scale_add_bwd', [{ shape: [B, T, D] }, { shape: [B, T, D], bf16: true }, { shape: [D] }, { shape: [B] }], [{ shape: [B, T, D], bf16: true }, { shape: [D] }], {}],
    ['scale_add_bwd', [{ shape: [B, T, D] }, { shape: [B, T, D], bf16: true }, { shape: [D] }], [{ shape: [B, T, D], bf16: true }], { acc: 1 }],
    ['scale_add_bwd', [{ shape: [B, T, D] }, { shape: [B, T, D], bf16: true }], [{ shape: [B, T, D], bf16: true }], {}],
  ];
  for (const [op, ins, outs, attrs] of cases)
    it(op, () => {
      const { bf, ref } = twin(e, op, ins, outs, attrs);
      for (let i = 0; i < bf.length; i++) {
        if (!bf[i]) continue;
        expect(bf[i]!.some((x) => x !== 0), `${op} output ${i} is not all zeros`).toBe(true);
        expect(Buffer.from(bf[i]!.buffer).equals(Buffer.from(ref[i]!.buffer)), `${op} output ${i}`).toBe(true);
      }
    });

  it('attention and attention_bwd with bf16 do, qkv, o into a bf16 dqkv', () => {
    const qkv = round(randomF32(B * T * 3 * D, 7));
    const fwd = twin(e, 'attention', [{ shape: [B, T, 3 * D], bf16: true, data: qkv }], [{ shape: [B, T, D], bf16: true }, { shape: [B, H, T] }], { heads: H });
    expectAttention(fwd.bf[0]!, fwd.ref[0]!, 'attention o');
    expectAttention(fwd.bf[1]!, fwd.ref[1]!, 'attention lse', LSE_TOL);
    const { bf, ref } = twin(
      e,
      'attention_bwd',
      [{ shape: [B, T, D], bf16: true }, { shape: [B, T, 3 * D], bf16: true, data: qkv }, { shape: [B, T, D], bf16: true, data: fwd.bf[0]! }, { shape: [B, H, T], data: fwd.bf[1]! }],
      [{ shape: [B, T, 3 * D], bf16: true }],
      { heads: H },
    );
    expectAttention(bf[0]!, ref[0]!, 'attention_bwd dqkv');
  });

  // The bf16 attention kernels widen a head's rows into f32 buffers: several key/query blocks with a
  // tail (T = 197), ViT's head dim, acc, and a head's key blocks split over threads (B * H < threads).
  for (const [B2, T2, H2, threads] of [
    [2, 197, 2, 1],
    [1, 150, 1, 3],
  ])
    it(`attention and attention_bwd, B ${B2} T ${T2} H ${H2} Hd 64, ${threads} thread(s)`, () => {
      const e2 = Engine.create({ device: 'cpu', threads });
      try {
        const D2 = H2 * 64;
        const qkv = round(randomF32(B2 * T2 * 3 * D2, 11));
        const fwd = twin(e2, 'attention', [{ shape: [B2, T2, 3 * D2], bf16: true, data: qkv }], [{ shape: [B2, T2, D2], bf16: true }, { shape: [B2, H2, T2] }], { heads: H2 });
        expectAttention(fwd.bf[0]!, fwd.ref[0]!, 'attention o');
        expectAttention(fwd.bf[1]!, fwd.ref[1]!, 'attention lse', LSE_TOL);
        for (const acc of [0, 1]) {
          const { bf, ref } = twin(
            e2,
            'attention_bwd',
            [{ shape: [B2, T2, D2], bf16: true }, { shape: [B2, T2, 3 * D2], bf16: true, data: qkv }, { shape: [B2, T2, D2], bf16: true, data: fwd.bf[0]! }, { shape: [B2, H2, T2], data: fwd.bf[1]! }],
            [{ shape: [B2, T2, 3 * D2], bf16: true }],
            { heads: H2, acc },
          );
          expectAttention(bf[0]!, ref[0]!, `attention_bwd acc ${acc}`);
          // the mixed-precision graph's form: f32 do and dqkv beside bf16 qkv and o
          const mixed = twin(
            e2,
            'attention_bwd',
            [{ shape: [B2, T2, D2] }, { shape: [B2, T2, 3 * D2], bf16: true, data: qkv }, { shape: [B2, T2, D2], bf16: true, data: fwd.bf[0]! }, { shape: [B2, H2, T2], data: fwd.bf[1]! }],
            [{ shape: [B2, T2, 3 * D2] }],
            { heads: H2, acc },
          );
          expectAttention(mixed.bf[0]!, mixed.ref[0]!, `attention_bwd, f32 do and dqkv, acc ${acc}`);
        }
      } finally {
        e2.dispose();
      }
    });
});

/**
 * float64 attention (o, lse) and attention_bwd (dqkv) on the values given, timm's qkv layout; the
 * backward takes oIn (the op's own bf16 o) for D_t = dO_t . O_t, as the op does.
 */
function attentionF64(qkv: Float32Array, dout: Float32Array, oIn: Float32Array, B: number, T: number, H: number, Hd: number) {
  const D = H * Hd, ld = 3 * D, scale = 1 / Math.sqrt(Hd);
  const o = new Float64Array(B * T * D), lse = new Float64Array(B * H * T), dqkv = new Float64Array(B * T * ld);
  const P = new Float64Array(T * T), dS = new Float64Array(T * T);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const q = (t: number, e: number) => qkv[(b * T + t) * ld + h * Hd + e];
      const k = (t: number, e: number) => qkv[(b * T + t) * ld + D + h * Hd + e];
      const v = (t: number, e: number) => qkv[(b * T + t) * ld + 2 * D + h * Hd + e];
      const at = (t: number, e: number) => (b * T + t) * D + h * Hd + e;
      for (let i = 0; i < T; i++) {
        let mx = -Infinity;
        for (let j = 0; j < T; j++) {
          let sij = 0;
          for (let e = 0; e < Hd; e++) sij += q(i, e) * k(j, e);
          P[i * T + j] = scale * sij;
          mx = Math.max(mx, scale * sij);
        }
        let sum = 0;
        for (let j = 0; j < T; j++) sum += Math.exp(P[i * T + j] - mx);
        lse[(b * H + h) * T + i] = mx + Math.log(sum);
        for (let j = 0; j < T; j++) P[i * T + j] = Math.exp(P[i * T + j] - mx) / sum;
        for (let c = 0; c < Hd; c++) {
          let acc = 0;
          for (let j = 0; j < T; j++) acc += P[i * T + j] * v(j, c);
          o[at(i, c)] = acc;
        }
        let Di = 0;
        for (let c = 0; c < Hd; c++) Di += dout[at(i, c)] * oIn[at(i, c)];
        for (let j = 0; j < T; j++) {
          let dp = 0;
          for (let c = 0; c < Hd; c++) dp += dout[at(i, c)] * v(j, c);
          dS[i * T + j] = P[i * T + j] * (dp - Di);
        }
      }
      for (let t = 0; t < T; t++)
        for (let e = 0; e < Hd; e++) {
          let dq = 0, dk = 0, dv = 0;
          for (let u = 0; u < T; u++) {
            dq += dS[t * T + u] * k(u, e);
            dk += dS[u * T + t] * q(u, e);
            dv += P[u * T + t] * dout[at(u, e)];
          }
          const row = (b * T + t) * ld + h * Hd + e;
          dqkv[row] = scale * dq;
          dqkv[row + D] = scale * dk;
          dqkv[row + 2 * D] = dv;
        }
    }
  return { o, lse, dqkv };
}

// ViT-B's attention heads (T = 197 tokens, Hd = 64; 4 heads here) in bf16 against float64 on the same
// bf16 inputs: three full 64-token blocks and a 5-token tail of queries and keys, scores with a
// standard deviation of about 2 (q, k drawn with sigma 1.5) so the softmax is far from uniform.
// Tolerance ATTN_TOL on o and dqkv on every CPU path (the fp32-product one is within about 1.7e-3,
// its bf16 output rounding), LSE_TOL on lse. The backward runs twice: all bf16, and in the
// mixed-precision graph's form (f32 do, not bf16-valued, and an f32 dqkv beside bf16 qkv and o).
describe('bf16 attention at ViT-B head shapes against float64', () => {
  // The fp32-product kernel (what CPUs without AVX512-BF16 run) keeps the bits of the fp32 kernel.
  it('MEDIC_CPU_ISA=avx512 (no bf16 dot products): bit-exact with the fp32 kernel on the bf16 values', () => {
    const here = dirname(fileURLToPath(import.meta.url));
    const tsx = join(here, '..', '..', 'node_modules', '.bin', 'tsx');
    const r = spawnSync(tsx, [join(here, 'isa.child.ts'), 'attention-bf16'], { env: { ...process.env, MEDIC_CPU_ISA: 'avx512' }, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { describe: string; worst: number };
    expect(out.describe).not.toMatch(/avx512bf16/);
    expect(out.worst).toBe(0);
  });

  const [B, T, H, Hd] = [2, 197, 4, 64];
  const D = H * Hd;
  it(`B ${B} T ${T} H ${H} Hd ${Hd}`, () => {
    const e = cpuEngine();
    const qkv = round(randomF32(B * T * 3 * D, 21, 1.5)), dout = round(randomF32(B * T * D, 22));
    const tq = e.tensor([B, T, 3 * D], 'bf16', f32ToBf16(qkv)), td = e.tensor([B, T, D], 'bf16', f32ToBf16(dout));
    const o = e.tensor([B, T, D], 'bf16'), lse = e.tensor([B, H, T]), dqkv = e.tensor([B, T, 3 * D], 'bf16');
    const dout32 = randomF32(B * T * D, 23);
    const td32 = e.tensor([B, T, D], 'f32', dout32), dqkv32 = e.tensor([B, T, 3 * D]);
    try {
      e.op('attention', [tq], [o, lse], { heads: H });
      e.op('attention_bwd', [td, tq, o, lse], [dqkv], { heads: H });
      const oOut = bf16ToF32(o.read() as Uint16Array);
      const ref = attentionF64(qkv, dout, oOut, B, T, H, Hd);
      expect(relErr(oOut, ref.o), 'o').toBeLessThan(ATTN_TOL);
      expect(relErr(lse.read() as Float32Array, ref.lse), 'lse').toBeLessThan(LSE_TOL);
      expect(relErr(bf16ToF32(dqkv.read() as Uint16Array), ref.dqkv), 'dqkv').toBeLessThan(ATTN_TOL);
      e.op('attention_bwd', [td32, tq, o, lse], [dqkv32], { heads: H });
      const ref32 = attentionF64(qkv, dout32, oOut, B, T, H, Hd);
      expect(relErr(dqkv32.read() as Float32Array, ref32.dqkv), 'dqkv from f32 do').toBeLessThan(ATTN_TOL);
    } finally {
      [tq, td, o, lse, dqkv, td32, dqkv32].forEach((t) => t.dispose());
    }
  });
});

describe('bf16 storage against PyTorch', () => {
  const e = cpuEngine();
  const fx = loadFixture('bf16_ops');
  const raw = new SafetensorsFile(join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'bf16_ops.safetensors'));
  const bfT = (name: string): Tensor => e.tensor(fx.shape(name), 'bf16', raw.read(name) as Uint16Array);
  const read = (t: Tensor) => {
    const v = t.read();
    return v instanceof Uint16Array ? bf16ToF32(v) : (v as Float32Array);
  };
  const check = (name: string, out: Float32Array, bf16Out: boolean, torchTol: number) => {
    const ref = fx.f64(name);
    if (bf16Out) expect(bf16Ulps(out, ref), `${name}: ulps`).toBeLessThanOrEqual(1);
    else expect(relErr(out, ref), name).toBeLessThan(1e-5);
    if (fx.has(`${name}_torch`)) expect(relErr(out, raw.readF32(`${name}_torch`)), `${name} vs torch`).toBeLessThan(torchTol);
  };

  for (const [name, cs] of Object.entries(fx.cases)) {
    it(name, () => {
      if (cs.op === 0) {
        const { B, T, H, Hd } = cs;
        const qkv = bfT(`${name}.qkv`), dout = bfT(`${name}.dout`);
        const o = e.tensor([B, T, H * Hd], 'bf16'), lse = e.tensor([B, H, T]), dqkv = e.tensor([B, T, 3 * H * Hd], 'bf16');
        try {
          e.op('attention', [qkv], [o, lse], { heads: H });
          e.op('attention_bwd', [dout, qkv, o, lse], [dqkv], { heads: H });
          if (DPBF16) {
            // P rounded to bf16 before P V: within ATTN_TOL of float64 rather than 1 bf16 ulp
            expect(relErr(read(o), fx.f64(`${name}.o`)), `${name}.o`).toBeLessThan(ATTN_TOL);
            expect(relErr(read(o), raw.readF32(`${name}.o_torch`)), `${name}.o vs torch`).toBeLessThan(2e-2);
          } else check(`${name}.o`, read(o), true, 2e-2);
          check(`${name}.lse`, read(lse), false, 0);
          // dqkv's float64 reference uses the exact o; ours uses o rounded to bf16: not 1 ulp, but close
          expect(relErr(read(dqkv), fx.f64(`${name}.dqkv`))).toBeLessThan(1e-2);
          expect(relErr(read(dqkv), raw.readF32(`${name}.dqkv_torch`))).toBeLessThan(2e-2);
        } finally {
          [qkv, dout, o, lse, dqkv].forEach((t) => t.dispose());
        }
      } else if (cs.op === 1) {
        const { R, C } = cs;
        const x = bfT(`${name}.x`), w = e.tensor([C], 'f32', fx.f32(`${name}.w`)), b = e.tensor([C], 'f32', fx.f32(`${name}.b`));
        const y = e.tensor([R, C], 'bf16'), mean = e.tensor([R]), rstd = e.tensor([R]);
        try {
          e.op('layernorm', [x, w, b], [y, mean, rstd], { eps: 1e-6 });
          check(`${name}.y`, read(y), true, 1e-2);
        } finally {
          [x, w, b, y, mean, rstd].forEach((t) => t.dispose());
        }
      } else {
        const x = bfT(`${name}.x`), y = e.tensor(fx.shape(`${name}.x`), 'bf16');
        try {
          e.op('gelu', [x], [y]);
          check(`${name}.y`, read(y), true, 1e-2);
        } finally {
          [x, y].forEach((t) => t.dispose());
        }
      }
    });
  }
});

describe('bf16 slots that must stay f32', () => {
  it('statistics, parameters and optimizer state refuse bf16 with the slot named', () => {
    const e = cpuEngine();
    const qkv = e.tensor([1, 4, 6], 'bf16'), o = e.tensor([1, 4, 2], 'bf16'), lse16 = e.tensor([1, 1, 4], 'bf16');
    const x = e.tensor([3, 8], 'bf16'), w16 = e.tensor([8], 'bf16'), y = e.tensor([3, 8], 'bf16'), m = e.tensor([3]), r = e.tensor([3]);
    try {
      expect(() => e.op('attention', [qkv], [o, lse16], { heads: 1 })).toThrow(/attention: output 1 must be f32, got bf16\[1, 1, 4\]/);
      expect(() => e.op('layernorm', [x, w16], [y, m, r])).toThrow(/layernorm: input 1 must be f32, got bf16\[8\]/);
      expect(() => e.op('grad_norm', [x], [m])).toThrow(/grad_norm: input 0 must be f32/);
    } finally {
      [qkv, o, lse16, x, w16, y, m, r].forEach((t) => t.dispose());
    }
  });
});
