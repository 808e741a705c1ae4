// Memory-bound ops of one MEDiC step at the preset's shapes: LayerNorm (fwd, bwd), GELU and QuickGELU
// (fwd, bwd), scale_add (fwd, bwd), add, sum_to, fill, copy, cast, softmax (fwd, bwd), drop-path masks,
// row copies, gather/scatter of the visible tokens, mask-token fill (fwd, bwd), patchify/unpatchify,
// pixel_norm and the seeded init ops.
// `bytes` counts each tensor read or written once (f32), so the runner's GB/s is effective bandwidth.
import type { Engine, OpName, Tensor } from '../../lib/engine/index.js';
import type { Preset } from '../presets.js';
import type { BenchCase, CaseList } from './types.js';

type Attrs = Record<string, number>;
type Slot = { shape: number[]; dtype?: 'f32' | 'bf16' | 'i32' | 'u8'; fill?: (n: number) => ArrayLike<number> } | null;

function noise(n: number, seed = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = s / 2147483648 - 1;
  }
  return out;
}

/** A case that runs one op on tensors made once in setup. `bytes` = f32 elements touched * 4. */
function opCase(
  family: string,
  name: string,
  op: OpName,
  ins: Slot[],
  outs: Slot[],
  attrs: Attrs,
  floats: number,
): BenchCase {
  return {
    name,
    family,
    bytes: floats * 4,
    setup(engine: Engine) {
      const made: Tensor[] = [];
      const mk = (s: Slot, seed: number): Tensor | null => {
        if (!s) return null;
        const n = s.shape.reduce((a, b) => a * b, 1);
        const dt = s.dtype ?? 'f32';
        const data = s.fill ? s.fill(n) : dt === 'f32' ? noise(n, seed) : undefined; // other dtypes start zeroed
        const t = engine.tensor(s.shape, dt, data as never);
        made.push(t);
        return t;
      };
      const ti = ins.map((s, i) => mk(s, 11 + i));
      const to = outs.map((s, i) => mk(s, 31 + i));
      return {
        run: () => engine.op(op, ti, to, attrs),
        dispose: () => made.forEach((t) => t.dispose()),
      };
    },
  };
}

export const cases: CaseList = (p: Preset) => {
  const fam = 'elementwise';
  const { B, N, V, P, D } = p;
  const T = N + 1; // full sequence with CLS (teacher/eval); the student encoder sees 1 + V
  const R = B * T,
    H4 = 4 * D;
  const rc = (r: number, c: number) => `[${r}x${c}]`;
  const ones = (n: number) => new Float32Array(n).fill(1);
  const visIdx = (n: number) => Int32Array.from({ length: n }, (_, i) => ((i % V) * 37 + Math.floor(i / V) * 11) % N);
  const list: BenchCase[] = [
    // LayerNorm: read x, w, b; write y (+ mean, rstd).
    opCase(
      fam,
      `layernorm ${rc(R, D)}`,
      'layernorm',
      [{ shape: [R, D] }, { shape: [D] }, { shape: [D] }],
      [{ shape: [R, D] }, { shape: [R] }, { shape: [R] }],
      {},
      2 * R * D + 2 * R,
    ),
    // Backward: read dy, x; write dx; dw, db per row reduction (read-modify-write C, negligible).
    opCase(
      fam,
      `layernorm_bwd ${rc(R, D)}`,
      'layernorm_bwd',
      [
        { shape: [R, D] },
        { shape: [R, D] },
        { shape: [R], fill: (n) => new Float32Array(n) },
        { shape: [R], fill: ones },
        { shape: [D] },
      ],
      [{ shape: [R, D] }, { shape: [D] }, { shape: [D] }],
      {},
      3 * R * D + 2 * R,
    ),
    opCase(fam, `gelu ${rc(R, H4)}`, 'gelu', [{ shape: [R, H4] }], [{ shape: [R, H4] }], {}, 2 * R * H4),
    opCase(
      fam,
      `gelu_bwd ${rc(R, H4)}`,
      'gelu_bwd',
      [{ shape: [R, H4] }, { shape: [R, H4] }],
      [{ shape: [R, H4] }],
      {},
      3 * R * H4,
    ),
    // Residual with LayerScale and DropPath: read y, x; write x.
    opCase(
      fam,
      `scale_add ${rc(R, D)}`,
      'scale_add',
      [{ shape: [B, T, D] }, { shape: [D] }, { shape: [B], fill: ones }],
      [{ shape: [B, T, D] }],
      {},
      3 * R * D,
    ),
    opCase(
      fam,
      `scale_add_bwd ${rc(R, D)}`,
      'scale_add_bwd',
      [{ shape: [B, T, D] }, { shape: [B, T, D] }, { shape: [D] }, { shape: [B], fill: ones }],
      [{ shape: [B, T, D] }, { shape: [D] }],
      {},
      3 * R * D,
    ),
    // --precision bf16's residual branch: the f32 stream's gradient and the bf16 branch output y in, the
    // branch's gradient out (bf16 since the bf16 gradients of 2026-12-05, f32 before)
    ...(['bf16', 'f32'] as const).map((dy) =>
      opCase(
        fam,
        `scale_add_bwd bf16 y, ${dy} dy ${rc(R, D)}`,
        'scale_add_bwd',
        [{ shape: [B, T, D] }, { shape: [B, T, D], dtype: 'bf16' }, { shape: [D] }, { shape: [B], fill: ones }],
        [{ shape: [B, T, D], dtype: dy }, { shape: [D] }],
        {},
        (dy === 'bf16' ? 2 : 2.5) * R * D,
      ),
    ),
    opCase(
      fam,
      `add bias ${rc(R, H4)}`,
      'add',
      [{ shape: [R, H4] }, { shape: [H4] }],
      [{ shape: [R, H4] }],
      {},
      2 * R * H4,
    ),
    opCase(fam, `sum_to bias grad ${rc(R, H4)}`, 'sum_to', [{ shape: [R, H4] }], [{ shape: [H4] }], { acc: 1 }, R * H4),
    // MAE gather of the visible tokens and its backward (scatter into the full grid).
    opCase(
      fam,
      `gather_rows [${B}x${N}x${D}] -> ${V}`,
      'gather_rows',
      [{ shape: [B, N, D] }, { shape: [B, V], dtype: 'i32', fill: visIdx }],
      [{ shape: [B, V, D] }],
      {},
      2 * B * V * D,
    ),
    opCase(
      fam,
      `scatter_rows ${V} -> [${B}x${N}x${D}]`,
      'scatter_rows',
      [{ shape: [B, V, D] }, { shape: [B, V], dtype: 'i32', fill: visIdx }],
      [{ shape: [B, N, D] }],
      {},
      2 * B * V * D,
    ),
    opCase(
      fam,
      `patchify order 0 [${B}x3x${p.img}x${p.img}]`,
      'patchify',
      [{ shape: [B, 3, p.img, p.img] }],
      [{ shape: [B, N, P] }],
      { patch: p.patch, order: 0 },
      2 * B * N * P,
    ),
    opCase(
      fam,
      `patchify order 1 [${B}x3x${p.img}x${p.img}]`,
      'patchify',
      [{ shape: [B, 3, p.img, p.img] }],
      [{ shape: [B, N, P] }],
      { patch: p.patch, order: 1 },
      2 * B * N * P,
    ),
    opCase(
      fam,
      `pixel_norm ${rc(B * N, P)}`,
      'pixel_norm',
      [{ shape: [B * N, P] }],
      [{ shape: [B * N, P] }],
      {},
      2 * B * N * P,
    ),
    opCase(
      fam,
      `unpatchify order 0 [${B}x${N}x${P}]`,
      'unpatchify',
      [{ shape: [B, N, P] }],
      [{ shape: [B, 3, p.img, p.img] }],
      { patch: p.patch, order: 0 },
      2 * B * N * P,
    ),
    opCase(fam, `quick_gelu ${rc(R, H4)}`, 'quick_gelu', [{ shape: [R, H4] }], [{ shape: [R, H4] }], {}, 2 * R * H4),
    // The teacher's MLP activation and the student's GELU backward as --precision bf16 runs them.
    opCase(
      fam,
      `quick_gelu bf16 ${rc(R, H4)}`,
      'quick_gelu',
      [{ shape: [R, H4], dtype: 'bf16' }],
      [{ shape: [R, H4], dtype: 'bf16' }],
      {},
      R * H4,
    ),
    opCase(
      fam,
      `gelu_bwd bf16 x, f32 grads ${rc(R, H4)}`,
      'gelu_bwd',
      [{ shape: [R, H4], dtype: 'bf16' }, { shape: [R, H4] }],
      [{ shape: [R, H4] }],
      {},
      2.5 * R * H4,
    ),
    opCase(
      fam,
      `gelu_bwd bf16 x, f32 dy, bf16 dx ${rc(R, H4)}`,
      'gelu_bwd',
      [{ shape: [R, H4], dtype: 'bf16' }, { shape: [R, H4] }],
      [{ shape: [R, H4], dtype: 'bf16' }],
      {},
      2 * R * H4,
    ),
    opCase(
      fam,
      `quick_gelu_bwd ${rc(R, H4)}`,
      'quick_gelu_bwd',
      [{ shape: [R, H4] }, { shape: [R, H4] }],
      [{ shape: [R, H4] }],
      {},
      3 * R * H4,
    ),
    opCase(fam, `fill (zero grads) ${rc(R, H4)}`, 'fill', [], [{ shape: [R, H4] }], { value: 0 }, R * H4),
    opCase(fam, `copy ${rc(R, D)}`, 'copy', [{ shape: [R, D] }], [{ shape: [R, D] }], { alpha: 1 }, 2 * R * D),
    opCase(
      fam,
      `cast f32->bf16 ${rc(R, D)}`,
      'cast',
      [{ shape: [R, D] }],
      [{ shape: [R, D], dtype: 'bf16' }],
      {},
      1.5 * R * D,
    ),
    opCase(
      fam,
      `softmax scores [${B * p.H}x${T}x${T}]`,
      'softmax',
      [{ shape: [B * p.H * T, T] }],
      [{ shape: [B * p.H * T, T] }],
      { scale: 0.125 },
      2 * B * p.H * T * T,
    ),
    opCase(
      fam,
      `softmax_bwd scores [${B * p.H}x${T}x${T}]`,
      'softmax_bwd',
      [{ shape: [B * p.H * T, T] }, { shape: [B * p.H * T, T] }],
      [{ shape: [B * p.H * T, T] }],
      { scale: 0.125 },
      3 * B * p.H * T * T,
    ),
    opCase(
      fam,
      `drop_path_mask [${B}]`,
      'drop_path_mask',
      [{ shape: [2], dtype: 'i32', fill: () => [1, 2] }],
      [{ shape: [B] }],
      { p: 0.1, stream: 3 },
      B,
    ),
    opCase(
      fam,
      `copy_rows CLS + ${V} tokens [${B}x${1 + V}x${D}]`,
      'copy_rows',
      [{ shape: [B, V, D] }],
      [{ shape: [B, 1 + V, D] }],
      { src: 0, dst: 1, count: V },
      2 * B * V * D,
    ),
    opCase(
      fam,
      `mask_fill [${B}x${N}x${D}]`,
      'mask_fill',
      [
        { shape: [B, N], dtype: 'u8', fill: (n) => Uint8Array.from({ length: n }, (_, i) => (i % 5 < 2 ? 1 : 0)) },
        { shape: [D] },
      ],
      [{ shape: [B, N, D] }],
      {},
      0.8 * B * N * D,
    ),
    opCase(
      fam,
      `mask_fill_bwd [${B}x${N}x${D}]`,
      'mask_fill_bwd',
      [
        { shape: [B, N], dtype: 'u8', fill: (n) => Uint8Array.from({ length: n }, (_, i) => (i % 5 < 2 ? 1 : 0)) },
        { shape: [B, N, D] },
      ],
      [{ shape: [B, N, D] }, { shape: [D] }],
      {},
      2 * B * N * D,
    ),
    opCase(
      fam,
      `init_normal (trunc) ${rc(H4, D)}`,
      'init_normal',
      [],
      [{ shape: [H4, D] }],
      { std: 0.02, lo: -2, hi: 2, seed: 1, stream: 2 },
      H4 * D,
    ),
    opCase(
      fam,
      `init_uniform ${rc(H4, D)}`,
      'init_uniform',
      [],
      [{ shape: [H4, D] }],
      { lo: -0.1, hi: 0.1, seed: 1, stream: 3 },
      H4 * D,
    ),
  ];
  return list;
};
