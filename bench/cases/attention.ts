// Attention benchmarks: the fused flash-style kernels at the three attention shapes of a MEDiC step,
// and, at the teacher's shape (T = 197, Hd = 64), the naive path built from the engine's own batched
// gemm and softmax ops for comparison; the fused forward and backward again in bf16 (qkv, o, do, dqkv),
// and the backward in the mixed-precision graph's form (bf16 qkv and o, f32 do and dqkv).
//
// Shapes per preset: student on visible tokens (T = 1 + V = 119, H heads of 64), frozen CLIP teacher
// (T = 1 + N = 197, Ht heads of 64) and the pixel decoder (T = 197, Hdd heads of 32).
// Flops: forward 4*B*H*T^2*Hd (QK^T and PV); backward 2.5x that (QK^T and dO V^T recomputed, then
// P^T dO, dS K, dS^T Q), the usual FlashAttention-2 count; exp work is not counted.
import type { Engine, Tensor } from '../../lib/engine/index.js';
import { f32ToBf16 } from '../../lib/io/safetensors.js';
import type { Preset } from '../presets.js';
import type { BenchCase, BenchInstance, CaseList } from './types.js';

interface Shape {
  label: string;
  B: number;
  T: number;
  H: number;
  Hd: number;
}

function randomData(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    a[i] = (s / 4294967296 - 0.5) * 2;
  }
  return a;
}

function fwdFlops(s: Shape): number {
  return 4 * s.B * s.H * s.T * s.T * s.Hd;
}

type Mode = 'fwd' | 'bwd' | 'fwd+bwd';

// Storage: f32; bf16 (qkv, o, do and dqkv; lse stays f32); or 'bf16+f32 grads', the mixed-precision
// graph's form (bf16 qkv and o, f32 do and dqkv).
type Storage = 'f32' | 'bf16' | 'bf16+f32 grads';
function fused(s: Shape, mode: Mode, storage: Storage = 'f32'): BenchCase {
  const f = fwdFlops(s);
  const dtype = storage === 'f32' ? 'f32' : 'bf16',
    gradType = storage === 'bf16' ? 'bf16' : 'f32';
  const tag = storage === 'f32' ? '' : storage === 'bf16' ? ' bf16' : ' bf16 (f32 do, dqkv)';
  return {
    name: `attention${tag} ${mode} ${s.label} B=${s.B} H=${s.H} T=${s.T} Hd=${s.Hd}`,
    family: 'attention',
    flops: mode === 'fwd' ? f : mode === 'bwd' ? 2.5 * f : 3.5 * f,
    setup(engine: Engine): BenchInstance {
      const { B, T, H, Hd } = s;
      const attrs = { heads: H };
      const data = (shape: number[], seed: number, type: 'f32' | 'bf16') => {
        const x = randomData(
          shape.reduce((a, b) => a * b, 1),
          seed,
        );
        return type === 'bf16' ? engine.tensor(shape, 'bf16', f32ToBf16(x)) : engine.tensor(shape, 'f32', x);
      };
      const qkv = data([B, T, 3 * H * Hd], 1, dtype);
      const dout = data([B, T, H * Hd], 2, gradType);
      const o = engine.tensor([B, T, H * Hd], dtype);
      const lse = engine.tensor([B, H, T]);
      const dqkv = engine.tensor([B, T, 3 * H * Hd], gradType);
      engine.op('attention', [qkv], [o, lse], attrs); // the backward's inputs
      return {
        run() {
          if (mode !== 'bwd') engine.op('attention', [qkv], [o, lse], attrs);
          if (mode !== 'fwd') engine.op('attention_bwd', [dout, qkv, o, lse], [dqkv], attrs);
        },
        dispose() {
          for (const t of [qkv, dout, o, lse, dqkv]) t.dispose();
        },
      };
    },
  };
}

// The unfused reference path on pre-split q, k, v [B*H, T, Hd] (the head split/merge transposes it
// would also need are not counted, which favours it): S = scale q k^T (batched gemm), P = softmax(S),
// O = P V; backward dV = P^T dO, dP = dO V^T, dS = softmax_bwd(P, dP), dQ = dS K, dK = dS^T Q.
// It keeps the B*H x T x T matrices S, P, dP, dS (4 x 14 MiB at the base teacher shape).
function naive(s: Shape, mode: Mode): BenchCase {
  const f = fwdFlops(s);
  return {
    name: `naive gemm+softmax ${mode} ${s.label} B=${s.B} H=${s.H} T=${s.T} Hd=${s.Hd}`,
    family: 'attention',
    flops: mode === 'fwd' ? f : mode === 'bwd' ? 2 * f : 3 * f, // no recomputation in the naive backward
    setup(engine: Engine): BenchInstance {
      const { B, T, H, Hd } = s;
      const BH = B * H;
      const scale = 1 / Math.sqrt(Hd);
      const mk = (shape: number[], seed?: number): Tensor =>
        engine.tensor(
          shape,
          'f32',
          seed === undefined
            ? undefined
            : randomData(
                shape.reduce((a, b) => a * b, 1),
                seed,
              ),
        );
      const q = mk([BH, T, Hd], 1),
        k = mk([BH, T, Hd], 2),
        v = mk([BH, T, Hd], 3),
        dO = mk([BH, T, Hd], 4);
      const S = mk([BH, T, T]),
        P = mk([BH, T, T]),
        dP = mk([BH, T, T]),
        dS = mk([BH, T, T]);
      const O = mk([BH, T, Hd]),
        dQ = mk([BH, T, Hd]),
        dK = mk([BH, T, Hd]),
        dV = mk([BH, T, Hd]);
      const forward = () => {
        engine.op('gemm', [q, k], [S], { trans_b: 1, alpha: scale });
        engine.op('softmax', [S], [P]);
        engine.op('gemm', [P, v], [O]);
      };
      const backward = () => {
        engine.op('gemm', [P, dO], [dV], { trans_a: 1 });
        engine.op('gemm', [dO, v], [dP], { trans_b: 1 });
        engine.op('softmax_bwd', [P, dP], [dS], { scale }); // dS (scaled); softmax_bwd cannot overwrite dP
        engine.op('gemm', [dS, k], [dQ]);
        engine.op('gemm', [dS, q], [dK], { trans_a: 1 });
      };
      forward();
      return {
        run() {
          if (mode !== 'bwd') forward();
          if (mode !== 'fwd') backward();
        },
        dispose() {
          for (const t of [q, k, v, dO, S, P, dP, dS, O, dQ, dK, dV]) t.dispose();
        },
      };
    },
  };
}

export const cases: CaseList = (p: Preset) => {
  const shapes: Shape[] = [
    { label: 'student', B: p.B, T: 1 + p.V, H: p.H, Hd: p.D / p.H },
    { label: 'teacher', B: p.B, T: 1 + p.N, H: p.Ht, Hd: p.Dt / p.Ht },
    { label: 'decoder', B: p.B, T: 1 + p.N, H: p.Hdd, Hd: p.Dd / p.Hdd },
  ];
  const modes: Mode[] = ['fwd', 'bwd', 'fwd+bwd'];
  const out: BenchCase[] = [];
  for (const s of shapes) for (const m of modes) out.push(fused(s, m));
  for (const s of shapes) {
    for (const m of ['fwd', 'bwd'] as const) out.push(fused(s, m, 'bf16'));
    out.push(fused(s, 'bwd', 'bf16+f32 grads'));
  }
  const teacher = shapes[1];
  for (const m of modes) out.push(naive(teacher, m));
  return out;
};
