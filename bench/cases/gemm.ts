// gemm at the shapes of one MEDiC step (letters: docs/METHOD.md, Shapes): the student encoder on the 1 + V visible
// tokens (forward and the backward forms dX = dY W, dW += dY^T X), the frozen teacher on 1 + N
// tokens (forward only) and the decoder (width Dd) on 1 + N tokens. Linear weights are [out, in], so
// forwards are trans_b=1, dX is trans_b=0, dW is trans_a=1 into an f32 C (`wgrad`: the graph's first
// writer of a weight gradient overwrites it, acc=0; fp32 also in a bf16 step). bench/gemm_vs_openblas.ts
// times the same list against OpenBLAS.
import { f32ToBf16 } from '../../lib/io/safetensors.js';
import type { Preset } from '../presets.js';
import type { BenchCase, CaseList } from './types.js';

export interface GemmShape {
  name: string;
  M: number;
  N: number;
  K: number;
  ta: 0 | 1;
  tb: 0 | 1;
  /** A weight gradient: C is f32 (the fp32 gradient buffer) in every precision. */
  wgrad?: boolean;
  bias?: boolean;
  act?: 0 | 1;
}

export function gemmShapes(p: Preset): GemmShape[] {
  const Rs = p.B * (1 + p.V); // student rows (visible tokens + CLS)
  const Rt = p.B * (1 + p.N); // teacher / decoder rows (all tokens + CLS)
  const D = p.D,
    Dt = p.Dt,
    Dd = p.Dd;
  return [
    { name: 'student qkv', M: Rs, N: 3 * D, K: D, ta: 0, tb: 1, bias: true },
    { name: 'student proj', M: Rs, N: D, K: D, ta: 0, tb: 1, bias: true },
    { name: 'student fc1+gelu', M: Rs, N: 4 * D, K: D, ta: 0, tb: 1, bias: true, act: 1 },
    { name: 'student fc2', M: Rs, N: D, K: 4 * D, ta: 0, tb: 1, bias: true },
    { name: 'student qkv dX', M: Rs, N: D, K: 3 * D, ta: 0, tb: 0 },
    { name: 'student fc1 dX', M: Rs, N: D, K: 4 * D, ta: 0, tb: 0 },
    { name: 'student fc2 dX', M: Rs, N: 4 * D, K: D, ta: 0, tb: 0 },
    { name: 'student qkv dW', M: 3 * D, N: D, K: Rs, ta: 1, tb: 0, wgrad: true },
    { name: 'student proj dW', M: D, N: D, K: Rs, ta: 1, tb: 0, wgrad: true },
    { name: 'student fc1 dW', M: 4 * D, N: D, K: Rs, ta: 1, tb: 0, wgrad: true },
    { name: 'student fc2 dW', M: D, N: 4 * D, K: Rs, ta: 1, tb: 0, wgrad: true },
    { name: 'teacher qkv', M: Rt, N: 3 * Dt, K: Dt, ta: 0, tb: 1, bias: true },
    { name: 'teacher proj', M: Rt, N: Dt, K: Dt, ta: 0, tb: 1, bias: true },
    { name: 'teacher fc1+gelu', M: Rt, N: 4 * Dt, K: Dt, ta: 0, tb: 1, bias: true, act: 1 },
    { name: 'teacher fc2', M: Rt, N: Dt, K: 4 * Dt, ta: 0, tb: 1, bias: true },
    { name: 'decoder qkv', M: Rt, N: 3 * Dd, K: Dd, ta: 0, tb: 1, bias: true },
    { name: 'decoder fc1+gelu', M: Rt, N: 4 * Dd, K: Dd, ta: 0, tb: 1, bias: true, act: 1 },
    { name: 'decoder fc2 dW', M: Dd, N: 4 * Dd, K: Rt, ta: 1, tb: 0, wgrad: true },
  ];
}

export function shapeLabel(s: GemmShape): string {
  const a = s.ta ? `[${s.M}x${s.K}]^T` : `[${s.M}x${s.K}]`;
  const b = s.tb ? `[${s.K}x${s.N}]^T` : `[${s.K}x${s.N}]`;
  const extra = [s.bias ? '+b' : '', s.act ? 'gelu' : '', s.wgrad ? 'f32 C' : ''].filter(Boolean).join(',');
  return `${s.name} ${a}x${b}${extra ? ' ' + extra : ''}`;
}

function fill(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = s / 4294967296 - 0.5;
  }
  return out;
}

type GemmPrecision = 'fp32' | 'bf16' | 'bf16-step';

/** Which of A, B and C (with preact) gemmCase stores in bf16. */
function storage(s: GemmShape, precision: GemmPrecision): [boolean, boolean, boolean] {
  if (precision === 'fp32') return [false, false, false];
  if (precision === 'bf16') return [true, true, !s.wgrad];
  if (s.wgrad) return [true, true, false]; // bf16 dY^T x bf16 X into the f32 weight gradient
  if (!s.ta && s.tb) return [true, false, true]; // bf16 X x f32 W^T into a bf16 activation
  return [true, false, false]; // dX: bf16 dY x f32 W into the f32 gradient of a norm's or GELU's output
}

/**
 * The gemm of one shape. precision 'bf16' is the mixed-precision step's storage with PyTorch's operands
 * (bf16 A and B, as bench/gemm_vs_openblas.ts compares them): a bf16 C and preact, except weight
 * gradients (wgrad) which go to an f32 C; bias stays f32. 'bf16-step' is the operands as the step
 * holds them (bench/gpu_step.ts --precision bf16): the fp32 master weight is rounded to bf16 as it is
 * packed (attr bf16=1), the gradient dY is bf16 (Graph.gradDtype): forward bf16 X times f32 W, dX =
 * bf16 dY times f32 W into an f32 dX (the listed dX all feed a LayerNorm or a GELU backward), dW = bf16
 * dY^T times bf16 X.
 */
export function gemmCase(s: GemmShape, precision: GemmPrecision = 'fp32'): BenchCase {
  const bf = precision !== 'fp32';
  const step = precision === 'bf16-step';
  const [a16, b16, c16] = storage(s, precision);
  return {
    name: shapeLabel(s) + (step ? ' bf16 (step operands)' : bf ? ' bf16' : ''),
    family: 'gemm',
    flops: 2 * s.M * s.N * s.K,
    setup(engine) {
      const operand = (shape: number[], seed: number, b16: boolean) =>
        b16
          ? engine.tensor(shape, 'bf16', f32ToBf16(fill(shape[0] * shape[1], seed)))
          : engine.tensor(shape, 'f32', fill(shape[0] * shape[1], seed));
      const a = operand(s.ta ? [s.K, s.M] : [s.M, s.K], 1, a16);
      const b = operand(s.tb ? [s.N, s.K] : [s.K, s.N], 2, b16);
      const bias = s.bias ? engine.tensor([s.N], 'f32', fill(s.N, 3)) : null;
      const cType = c16 ? 'bf16' : 'f32';
      const c = engine.tensor([s.M, s.N], cType);
      const pre = s.act ? engine.tensor([s.M, s.N], cType) : null;
      const attrs = { trans_a: s.ta, trans_b: s.tb, act: s.act ?? 0, ...(step ? { bf16: 1 } : {}) };
      return {
        run: () => engine.op('gemm', [a, b, bias], [c, pre], attrs),
        dispose: () => [a, b, bias, c, pre].forEach((t) => t?.dispose()),
      };
    },
  };
}

export const cases: CaseList = (p) => gemmShapes(p).map((s) => gemmCase(s));
/** The bf16 step's operand forms (kernels.ts --family gemm-bf16-step). */
export const stepCases: CaseList = (p) => gemmShapes(p).map((s) => gemmCase(s, 'bf16-step'));
