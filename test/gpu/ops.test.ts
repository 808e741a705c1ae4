// Every op on CUDA against the same op on the CPU, through the JS API, on fresh random inputs.
// Outputs start poisoned (NaN on the CPU, 0xFF bytes on the GPU) unless the op reads them (acc=1,
// parameter gradients, read-and-written outputs), and every poisoned element must be written.
// Tolerances: relErr 1e-2 for the bf16 tensor-core ops (gemm, attention, attention_bwd), exact for
// index / mask / copy / init ops, 1e-5 for the rest. Mixed precision: cases labelled "bf16" store the
// slots that ops.h lets be bf16 in bf16 (the block's pattern: bf16 activations, f32 parameters and
// gradients); a bf16 output may differ from the CPU's by one bf16 rounding step where the fp32 values
// straddle a rounding boundary, so bf16 outputs are compared at relErr 2e-3 (copies stay exact). An op without a CUDA kernel fails, by name.
// Skips (saying why) without a CUDA build or a GPU. The C++ harness (native/tests/parity.cpp) covers
// more shapes; this file proves the same through the N-API layer and engine tensors.
import { afterAll, describe, expect, it } from 'vitest';

import type { AnyTypedArray, Attrs, DType, Engine, OpName, Tensor } from '../../lib/engine/index.js';
import { randomF32, relErr } from '../helpers/parity.js';
import { engines, gpu, selfTest, skipReason } from './gpu.js';

type Spec =
  | { kind: 'data'; shape: number[]; dtype: DType; data: AnyTypedArray }
  | { kind: 'poison'; shape: number[]; dtype: DType }
  | null;

interface OpCase {
  label: string;
  in: Spec[];
  out: Spec[];
  attrs?: Attrs;
}

let seed = (Date.now() % 100000) + 1; // fresh inputs on every run; printed on failure through the label
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);
const randn = (shape: number[], scale = 1): Spec => ({
  kind: 'data',
  shape,
  dtype: 'f32',
  data: randomF32(numel(shape), seed++, scale),
});
const uniform = (shape: number[], lo: number, hi: number): Spec => {
  const r = randomF32(numel(shape), seed++);
  return { kind: 'data', shape, dtype: 'f32', data: r.map((x) => lo + (hi - lo) * (0.5 + 0.5 * Math.tanh(x))) };
};
const f32 = (shape: number[], v: number[]): Spec => ({ kind: 'data', shape, dtype: 'f32', data: Float32Array.from(v) });
const i32 = (shape: number[], v: ArrayLike<number>): Spec => ({
  kind: 'data',
  shape,
  dtype: 'i32',
  data: Int32Array.from(v),
});
const u8 = (shape: number[], v: ArrayLike<number>): Spec => ({
  kind: 'data',
  shape,
  dtype: 'u8',
  data: Uint8Array.from(v),
});
const poison = (shape: number[], dtype: DType = 'f32'): Spec => ({ kind: 'poison', shape, dtype });
function distinct(B: number, K: number, T: number): Spec {
  const out: number[] = [];
  let s = seed++;
  for (let b = 0; b < B; b++) {
    const perm = Array.from({ length: T }, (_, i) => i);
    for (let i = T - 1; i > 0; i--) {
      s = (s * 1103515245 + 12345) >>> 0;
      const j = s % (i + 1);
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    out.push(...perm.slice(0, K));
  }
  return i32([B, K], out);
}
function mask(B: number, T: number, count: number): Spec {
  const idx = distinct(B, count, T) as { data: Int32Array };
  const m = new Uint8Array(B * T);
  for (let b = 0; b < B; b++) for (let k = 0; k < count; k++) m[b * T + idx.data[b * count + k]] = 1;
  return u8([B, T], m);
}
const bf16 = (shape: number[], scale = 1): Spec => {
  const r = randomF32(numel(shape), seed++, scale);
  const u = new Uint32Array(r.buffer);
  return { kind: 'data', shape, dtype: 'bf16', data: Uint16Array.from(u, (x) => x >>> 16) };
};

const EXACT = new Set([
  'fill',
  'copy',
  'cast',
  'copy_rows',
  'gather_rows',
  'scatter_rows',
  'mask_fill',
  'mask_fill_bwd',
  'patchify',
  'unpatchify',
  'drop_path_mask',
  'init_normal',
  'init_uniform',
  'allreduce',
  'allreduce_wait',
]);
const BF16_OPS = new Set(['gemm', 'attention', 'attention_bwd']);
// Outputs of exact ops that are float sums in another order on the GPU (chunked column reduction),
// so they match to rounding (relErr 1e-5), not bit for bit: mask_fill_bwd's dtoken.
const SUM_OUTPUTS: Record<string, number[]> = { mask_fill_bwd: [1] };

function place(engine: Engine, s: Spec, onGpu: boolean): Tensor | null {
  if (!s) return null;
  if (s.kind === 'data') return engine.tensor(s.shape, s.dtype, s.data as never);
  const n = numel(s.shape);
  const bytes = new Uint8Array(n * (s.dtype === 'f32' || s.dtype === 'i32' ? 4 : s.dtype === 'bf16' ? 2 : 1)).fill(
    0xff,
  );
  if (!onGpu && s.dtype === 'f32') return engine.tensor(s.shape, 'f32', new Float32Array(n).fill(NaN));
  const view =
    s.dtype === 'f32'
      ? new Float32Array(bytes.buffer)
      : s.dtype === 'i32'
        ? new Int32Array(bytes.buffer)
        : s.dtype === 'bf16'
          ? new Uint16Array(bytes.buffer)
          : bytes;
  return engine.tensor(s.shape, s.dtype, view as never);
}

function runOn(engine: Engine, op: OpName, c: OpCase, onGpu: boolean): (AnyTypedArray | null)[] {
  const ins = c.in.map((s) => place(engine, s, onGpu));
  const outs = c.out.map((s) => place(engine, s, onGpu));
  try {
    engine.op(op, ins, outs, c.attrs ?? {});
    return outs.map((t) => (t ? t.read() : null));
  } finally {
    for (const t of [...ins, ...outs]) t?.dispose();
  }
}

/** Outputs of a CPU run, as data specs (consistent inputs for a backward: o/lse, mean/rstd, softmax y). */
function cpuOut(cpu: Engine, op: OpName, c: OpCase): Spec[] {
  const r = runOn(cpu, op, c, false);
  return c.out.map((s, i) => (s ? { kind: 'data' as const, shape: s.shape, dtype: s.dtype, data: r[i]! } : null));
}

function buildCases(cpu: Engine): Record<string, OpCase[]> {
  const c: Record<string, OpCase[]> = {};
  const add = (op: OpName, label: string, ins: Spec[], outs: Spec[], attrs?: Attrs) =>
    (c[op] ??= []).push({ label, in: ins, out: outs, attrs });
  add('fill', 'f32', [], [poison([7, 5])], { value: 0.5 });
  add('fill', 'i32', [], [poison([119], 'i32')], { value: 7 });
  for (const s of [[7], [2, 119, 77]]) {
    add('copy', `${s}`, [randn(s)], [poison(s)]);
    add('copy', `${s} alpha acc`, [randn(s)], [randn(s)], { alpha: 0.5, acc: 1 });
    add('cast', `${s} f32->bf16`, [randn(s)], [poison(s, 'bf16')]);
    add('cast', `${s} bf16->f32`, [bf16(s)], [poison(s)]);
  }
  add('add', '[2,197,77]+[77]', [randn([2, 197, 77]), randn([77])], [poison([2, 197, 77])]);
  add('sum_to', '[2,119,77]->[77]', [randn([2, 119, 77])], [poison([77])]);
  add('sum_to', 'acc', [randn([2, 119, 77])], [randn([77])], { acc: 1 });
  for (const op of ['gelu', 'quick_gelu'] as const) {
    const s = [2, 119, 77];
    add(op, `${s}`, [randn(s, 2)], [poison(s)]);
    add(`${op}_bwd`, `${s}`, [randn(s, 2), randn(s)], [poison(s)]);
    add(`${op}_bwd`, `${s} acc`, [randn(s, 2), randn(s)], [randn(s)], { acc: 1 });
  }
  {
    const s = [2 * 3 * 119, 119];
    const x = randn(s, 3);
    add('softmax', `${s}`, [x], [poison(s)], { scale: 0.125 });
    const [y] = cpuOut(cpu, 'softmax', { label: '', in: [x], out: [poison(s)], attrs: { scale: 0.125 } });
    add('softmax_bwd', `${s}`, [y, randn(s)], [poison(s)], { scale: 0.125 });
  }
  for (const s of [
    [3, 7],
    [2, 119, 77],
    [2, 197, 768],
  ]) {
    const C = s[s.length - 1];
    const R = numel(s) / C;
    const x = randn(s, 2);
    add('layernorm', `${s}`, [x, randn([C]), randn([C])], [poison(s), poison([R]), poison([R])], { eps: 1e-6 });
    add('layernorm', `${s} no params`, [x], [poison(s), poison([R]), poison([R])], { eps: 1e-6 });
    const st = cpuOut(cpu, 'layernorm', {
      label: '',
      in: [x],
      out: [poison(s), poison([R]), poison([R])],
      attrs: { eps: 1e-6 },
    });
    add('layernorm_bwd', `${s}`, [randn(s), x, st[1], st[2], randn([C])], [poison(s), randn([C]), randn([C])]);
  }
  add('pixel_norm', '[156,768]', [randn([156, 768], 3)], [poison([156, 768])], { eps: 1e-6 });
  add('pixel_norm', '[13,48]', [randn([13, 48], 3)], [poison([13, 48])], { eps: 1e-6 });
  add('gemm', '[7,33]x[19,33]^T +bias', [randn([7, 33]), randn([19, 33]), randn([19])], [poison([7, 19])], {
    trans_b: 1,
  });
  // Mixed precision's linear layers: bf16 activations times f32 master weights into bf16 (forward),
  // bf16 x bf16 (the cp.async pipeline), f32 gradients times bf16 activations (dW).
  add(
    'gemm',
    'bf16 [2,119,128]x[384,128]^T gelu',
    [bf16([2, 119, 128]), randn([384, 128], 0.05), randn([384])],
    [poison([2, 119, 384], 'bf16'), poison([2, 119, 384], 'bf16')],
    { trans_b: 1, act: 1, bf16: 1 },
  );
  add('gemm', 'bf16 x bf16 [238,128]x[96,128]^T', [bf16([238, 128]), bf16([96, 128])], [poison([238, 96], 'bf16')], {
    trans_b: 1,
  });
  add('gemm', 'f32 grad x bf16 act [238,77]^T x[238,64] acc', [randn([238, 77]), bf16([238, 64])], [randn([77, 64])], {
    trans_a: 1,
    acc: 1,
    bf16: 1,
  });
  add(
    'gemm',
    '[2,119,77]x[131,77]^T gelu',
    [randn([2, 119, 77]), randn([131, 77]), randn([131])],
    [poison([2, 119, 131]), poison([2, 119, 131])],
    { trans_b: 1, act: 1 },
  );
  add('gemm', '[238,77]^T x[238,131] acc', [randn([238, 77]), randn([238, 131])], [randn([77, 131])], {
    trans_a: 1,
    acc: 1,
  });
  add(
    'gemm',
    'batched [2,3,119,64]x[2,3,119,64]^T',
    [randn([2, 3, 119, 64]), randn([2, 3, 119, 64])],
    [poison([2, 3, 119, 119])],
    { trans_b: 1 },
  );
  add(
    'gemm',
    'vitb [2,197,768]x[2304,768]^T',
    [randn([2, 197, 768]), randn([2304, 768], 0.02), randn([2304])],
    [poison([2, 197, 2304])],
    { trans_b: 1 },
  );
  for (const [B, T, H, Hd] of [
    [2, 7, 2, 32],
    [2, 119, 3, 64],
    [2, 197, 12, 64],
    [2, 197, 16, 32],
  ]) {
    const qs = [B, T, 3 * H * Hd];
    const os = [B, T, H * Hd];
    const ls = [B, H, T];
    const qkv = randn(qs);
    add('attention', `B${B} T${T} H${H} Hd${Hd}`, [qkv], [poison(os), poison(ls)], { heads: H });
    const [o, lse] = cpuOut(cpu, 'attention', {
      label: '',
      in: [qkv],
      out: [poison(os), poison(ls)],
      attrs: { heads: H },
    });
    add('attention_bwd', `B${B} T${T} H${H} Hd${Hd}`, [randn(os), qkv, o, lse], [poison(qs)], { heads: H });
    add('attention_bwd', `B${B} T${T} H${H} Hd${Hd} acc`, [randn(os), qkv, o, lse], [randn(qs)], { heads: H, acc: 1 });
  }
  for (const s of [
    [2, 3, 5],
    [2, 119, 77],
  ]) {
    const keep = f32([2], [0, 1 / 0.9]);
    const C = s[s.length - 1];
    add('scale_add', `${s}`, [randn(s), randn([C], 0.1), keep], [randn(s)]);
    add('scale_add_bwd', `${s}`, [randn(s), randn(s), randn([C], 0.1), keep], [poison(s), randn([C])]);
  }
  {
    // bf16 storage of the other ops of a block and of the losses (activations bf16, parameters f32).
    const s = [2, 119, 128];
    add(
      'layernorm',
      'bf16 y',
      [randn(s, 2), randn([128]), randn([128])],
      [poison(s, 'bf16'), poison([238]), poison([238])],
    );
    add('layernorm', 'bf16 x, y', [bf16(s, 2)], [poison(s, 'bf16'), poison([238]), poison([238])]);
    add('layernorm_bwd', 'bf16 dy, x', [bf16(s), bf16(s, 2), randn([238], 0.1), uniform([238], 0.5, 2)], [poison(s)]);
    add('add', 'bf16 a, y', [bf16(s), randn([128])], [poison(s, 'bf16')]);
    add('sum_to', 'bf16 x', [bf16(s)], [poison([128])]);
    add('copy', 'bf16 -> f32', [bf16(s)], [poison(s)]);
    add('gelu', 'bf16', [bf16(s, 2)], [poison(s, 'bf16')]);
    add('gelu_bwd', 'bf16 x, dy -> f32 acc', [bf16(s, 2), bf16(s)], [randn(s)], { acc: 1 });
    add('quick_gelu', 'bf16', [bf16(s, 2)], [poison(s, 'bf16')]);
    add('quick_gelu_bwd', 'bf16', [bf16(s, 2), randn(s)], [poison(s, 'bf16')]);
    add('scale_add', 'bf16 y into f32 x', [bf16(s), randn([128], 0.1), f32([2], [0, 1 / 0.9])], [randn(s)]);
    add('scale_add_bwd', 'bf16 y', [randn(s), bf16(s), randn([128], 0.1)], [poison(s), randn([128])]);
    add('softmax', 'bf16', [bf16([238, 119], 3)], [poison([238, 119], 'bf16')], { scale: 0.125 });
    add('softmax_bwd', 'bf16', [bf16([238, 119]), randn([238, 119])], [poison([238, 119], 'bf16')], { scale: 0.125 });
    add('pixel_norm', 'bf16', [bf16([156, 192], 3)], [poison([156, 192], 'bf16')], { eps: 1e-6 });
    const x = [2, 197, 128];
    add('copy_rows', 'bf16 window', [bf16(x)], [bf16([2, 198, 128])], { src: 0, dst: 1, count: 197 });
    add('gather_rows', 'bf16 acc', [bf16(x), distinct(2, 119, 197)], [bf16([2, 119, 128])], { acc: 1 });
    add('scatter_rows', 'bf16', [bf16([2, 119, 128]), distinct(2, 119, 197)], [bf16(x)]);
    add('mask_fill', 'bf16', [mask(2, 197, 119), randn([128])], [bf16(x)]);
    add('mask_fill_bwd', 'bf16', [mask(2, 197, 119), bf16(x)], [poison(x, 'bf16'), randn([128])]);
    const qs = [2, 119, 3 * 2 * 64];
    const qkv = bf16(qs);
    const os = [2, 119, 128];
    add('attention', 'bf16 B2 T119 H2 Hd64', [qkv], [poison(os, 'bf16'), poison([2, 2, 119])], { heads: 2 });
    const [o, lse] = cpuOut(cpu, 'attention', {
      label: '',
      in: [qkv],
      out: [poison(os, 'bf16'), poison([2, 2, 119])],
      attrs: { heads: 2 },
    });
    add('attention_bwd', 'bf16 B2 T119 H2 Hd64', [bf16(os), qkv, o, lse], [poison(qs, 'bf16')], { heads: 2 });
    const t = [3, 120, 77];
    const p = [3, 78, 48];
    add(
      'medic_loss',
      'bf16',
      [bf16(t), bf16(t), bf16(p), bf16(p)],
      [poison([4]), poison(t, 'bf16'), poison(p, 'bf16')],
    );
    const labels = Array.from({ length: 119 }, (_, i) => (i * 7 + seed) % 77);
    add('cross_entropy', 'bf16', [bf16([119, 77], 3), i32([119], labels)], [poison([1]), poison([119, 77], 'bf16')]);
  }
  add('drop_path_mask', 'B=256', [i32([2], [12345, -678])], [poison([256])], { p: 0.1, stream: 3 });
  add('drop_path_mask', 'B=256 row0', [i32([2], [12345, -678])], [poison([256])], { p: 0.1, stream: 3, row0: 4099 });
  {
    const [B, T, C, K] = [2, 197, 77, 119];
    const x = [B, T, C];
    const y = [B, K, C];
    add('copy_rows', 'window', [randn(x)], [randn([B, T + 1, C])], { src: 1, dst: 2, count: T - 1 });
    add('copy_rows', 'broadcast', [randn([1, 1, C])], [randn(x)], { src: 0, dst: 0, count: 1 });
    add('copy_rows', 'batch sum', [randn(x)], [randn([1, 1, C])], { src: 0, dst: 0, count: 1, acc: 1 });
    add('gather_rows', 'K119', [randn(x), distinct(B, K, T)], [poison(y)]);
    add('gather_rows', 'acc', [randn(x), distinct(B, K, T)], [randn(y)], { acc: 1 });
    add('scatter_rows', 'K119', [randn(y), distinct(B, K, T)], [randn(x)]);
    add('scatter_rows', 'acc', [randn(y), distinct(B, K, T)], [randn(x)], { acc: 1 });
    add('mask_fill', 'M119', [mask(B, T, K), randn([C])], [randn(x)]);
    add('mask_fill_bwd', 'M119', [mask(B, T, K), randn(x)], [poison(x), randn([C])]);
  }
  for (const order of [0, 1]) {
    add('patchify', `[2,3,32,28] p4 order ${order}`, [randn([2, 3, 32, 28])], [poison([2, 56, 48])], {
      patch: 4,
      order,
    });
    add('unpatchify', `[2,3,32,28] p4 order ${order}`, [randn([2, 56, 48])], [poison([2, 3, 32, 28])], {
      patch: 4,
      order,
    });
  }
  {
    const s = [3, 120, 77];
    const p = [3, 78, 48];
    add('medic_loss', `${s} ${p}`, [randn(s), randn(s), randn(p), randn(p)], [poison([4]), poison(s), poison(p)], {
      w_tok: 1,
      w_cls: 0.4,
      w_pix: 1,
      tau: 0.1,
      beta: 1,
    });
    add('medic_loss', `${s} w_pix 0`, [randn(s), randn(s), null, null], [poison([4]), poison(s), null], {
      w_tok: 1,
      w_cls: 0.4,
      w_pix: 0,
    });
  }
  {
    const labels = Array.from({ length: 119 }, (_, i) => (i * 31 + seed) % 77);
    add(
      'cross_entropy',
      '[119,77]',
      [randn([119, 77], 3), i32([119], labels)],
      [poison([1]), poison([119, 77]), poison([1])],
    );
    add(
      'cross_entropy',
      '[119,77] smoothing',
      [randn([119, 77], 3), i32([119], labels)],
      [poison([1]), poison([119, 77])],
      { smoothing: 0.1 },
    );
  }
  for (const n of [7, 1000003]) {
    add('grad_norm', `n=${n}`, [randn([n], 0.01)], [poison([1])]);
    const wd = u8(
      [n],
      Array.from({ length: n }, (_, i) => ((i * 7) % 3 === 0 ? 0 : 1)),
    );
    const hyper = f32([3], [1e-3, 0.05, 3]);
    add(
      'adamw',
      `n=${n} clip`,
      [randn([n], 0.01), wd, hyper, f32([1], [5])],
      [randn([n], 0.02), randn([n], 0.01), uniform([n], 0, 1e-4)],
      { max_norm: 3 },
    );
    add('init_normal', `n=${n}`, [], [poison([n])], { mean: 0, std: 0.02, lo: -0.04, hi: 0.04, seed: 42, stream: 7 });
    add('init_uniform', `n=${n}`, [], [poison([n])], { lo: -0.1, hi: 0.1, seed: 42, stream: 3 });
  }
  // The evaluation suite's ops: BatchNorm without affine (train: batch statistics, running stats
  // updated in place; eval: running stats) and SGD with momentum / LARS.
  for (const train of [1, 0]) {
    add(
      'batchnorm',
      `[37,77] train=${train}`,
      [randn([37, 77], 2)],
      [poison([37, 77]), randn([77], 0.1), uniform([77], 0.5, 2)],
      { train },
    );
  }
  for (const trust of [0, 0.001]) {
    const n = 1000003;
    add(
      'sgd',
      `n=${n} trust=${trust}`,
      [randn([n], 0.01), f32([2], [0.1, 0.01])],
      [randn([n], 0.02), randn([n], 0.01), poison([2])],
      { momentum: 0.9, trust },
    );
  }
  // Evolved masking's head-averaged attention map, and the uncertainty loss balancing.
  add('attention_probs', 'B2 T50 H4 Hd8', [randn([2, 50, 3 * 4 * 8])], [poison([2, 49, 49])], { heads: 4 });
  add('loss_weights', '[3]', [f32([3], [0.3, -0.7, 1.2])], [poison([3])]);
  add('loss_weights_bwd', '[3]', [f32([3], [0.3, -0.7, 1.2]), f32([4], [3, 0.8, 1.7, 0.4])], [randn([3])], {
    w_tok: 1,
    w_cls: 0.4,
    w_pix: 1,
  });
  // Without a communicator (one process) both leave the gradient as it is.
  add('allreduce', 'alone', [], [randn([1000003], 0.01)]);
  add('allreduce_wait', 'alone', [], [randn([7])]);
  return c;
}

/** bf16 bits (Uint16Array) as the f32 values they hold; other arrays as they are. */
function widen(a: AnyTypedArray, dtype: DType): AnyTypedArray {
  if (dtype !== 'bf16') return a;
  const u = new Uint32Array(a.length);
  for (let i = 0; i < a.length; i++) u[i] = (a[i] as number) << 16;
  return new Float32Array(u.buffer);
}

function unwrittenCount(a: AnyTypedArray, s: Spec): number {
  if (!s || s.kind !== 'poison') return 0;
  const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const w = a.BYTES_PER_ELEMENT;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    let ff = true;
    for (let k = 0; k < w && ff; k++) ff = bytes[i * w + k] === 0xff;
    if (ff) n++;
  }
  return n;
}

if (!gpu.ok) {
  describe('CUDA vs CPU, every op', () => {
    it('needs a CUDA build and a GPU', (ctx) => ctx.skip(skipReason));
  });
}

describe.runIf(gpu.ok)('CUDA vs CPU, every op', () => {
  const { cpu, cuda } = gpu.ok ? engines() : ({} as ReturnType<typeof engines>);
  afterAll(() => {
    cpu?.dispose();
    cuda?.dispose();
  });
  const cases = gpu.ok ? buildCases(cpu) : {};
  for (const op of gpu.ok ? gpu.opNames : []) {
    it(op, () => {
      expect(gpu.ok && gpu.kernels.has(op), `${op}: MISSING (no CUDA kernel in this build)`).toBe(true);
      const list = cases[op];
      expect(list?.length, `${op}: the test has no case for this op`).toBeGreaterThan(0);
      for (const c of list) {
        const ref = runOn(cpu, op, c, false);
        const got = runOn(cuda, op, c, true);
        c.out.forEach((s, i) => {
          if (!s) return;
          const what = `${op} ${c.label} out${i}`;
          expect(unwrittenCount(got[i]!, s), `${what}: unwritten elements`).toBe(0);
          if (EXACT.has(op) && !SUM_OUTPUTS[op]?.includes(i)) {
            const a = got[i]!;
            const b = ref[i]!;
            let diff = 0;
            for (let k = 0; k < a.length; k++) if (a[k] !== b[k] && !(Number.isNaN(a[k]) && Number.isNaN(b[k]))) diff++;
            expect(diff, `${what}: elements that differ (exact)`).toBe(0);
          } else {
            const tol = Math.max(BF16_OPS.has(op) ? 1e-2 : 1e-5, s.dtype === 'bf16' ? 2e-3 : 0);
            expect(relErr(widen(got[i]!, s.dtype), widen(ref[i]!, s.dtype)), what).toBeLessThan(tol);
          }
        });
      }
    });
  }
});

// Bad data on the GPU: a kernel cannot throw, so it skips the row and records the fault; the host
// throws at its next synchronisation (here: reading the output), naming the op, the value and the row,
// and the engine stays usable (the record is cleared).
describe.runIf(gpu.ok && !selfTest)('CUDA faults in data are reported at the next synchronisation', () => {
  const { cuda } = gpu.ok ? engines() : ({} as ReturnType<typeof engines>);
  afterAll(() => cuda?.dispose());

  it('gather_rows / scatter_rows: an index out of range throws, then the engine goes on', () => {
    const x = cuda.tensor([2, 5, 4], 'f32', randomF32(40, 7));
    const y = cuda.tensor([2, 3, 4]);
    const bad = cuda.tensor([2, 3], 'i32', [0, 1, 2, 4, 9, 3]);
    expect(() => {
      cuda.op('gather_rows', [x, bad], [y]);
      y.read();
    }).toThrow(/gather_rows: index 9 out of range \[0, 5\) at row 4/);
    expect(() => {
      cuda.op('scatter_rows', [y, bad], [x]);
      x.read();
    }).toThrow(/scatter_rows: index 9 out of range \[0, 5\) at row 4/);
    const good = cuda.tensor([2, 3], 'i32', [0, 1, 2, 4, 1, 3]);
    cuda.op('gather_rows', [x, good], [y]);
    const got = y.read() as Float32Array;
    const xs = x.read() as Float32Array;
    expect(Array.from(got.subarray(16, 20))).toEqual(Array.from(xs.subarray(4 * 5 + 4 * 1, 4 * 5 + 4 * 2))); // row (1, 1) <- x[1, 1]
    for (const t of [x, y, bad, good]) t.dispose();
  });

  it('cross_entropy: a label outside [0, C) throws', () => {
    const z = cuda.tensor([3, 4], 'f32', randomF32(12, 3));
    const labels = cuda.tensor([3], 'i32', [1, 4, 0]);
    const loss = cuda.tensor([1]);
    const dz = cuda.tensor([3, 4]);
    expect(() => {
      cuda.op('cross_entropy', [z, labels], [loss, dz]);
      loss.read();
    }).toThrow(/cross_entropy: label 4 at row 1 is outside \[0, 4\)/);
    for (const t of [z, labels, loss, dz]) t.dispose();
  });
});
