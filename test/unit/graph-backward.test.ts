// Pure graph logic (no addon): emitted backward ops, acc flags, gradient buffers, validation.
import { describe, expect, it } from 'vitest';

import {
  Graph,
  compile,
  copy,
  layerNorm,
  linear,
  maskFill,
  residualAdd,
  validate,
  type OpRecord,
  type Value,
} from '../../lib/graph/index.js';
import { Block } from '../../lib/nn/index.js';

const bwd = (g: Graph): OpRecord[] => g.ops.filter((o) => o.phase === 'backward');
const names = (vs: (Value | null)[]): string[] => vs.map((v) => v?.name ?? '');

describe('linear backward', () => {
  it('emits dx, dW (trans_a, written into the grad window: acc=0) and db (sum_to, acc=0), no zero fill', () => {
    const g = new Graph();
    const x = g.input('x', [2, 3, 4], 'f32', { requiresGrad: true });
    const w = g.param('w', [5, 4], { kind: 'zeros' });
    const b = g.param('b', [5], { kind: 'zeros' });
    const y = linear(g, x, w, b);
    expect(y.shape).toEqual([2, 3, 5]);
    expect(g.ops[0]).toMatchObject({ op: 'gemm', attrs: { trans_b: 1 } });
    const dy = g.input('dy', [2, 3, 5]);
    g.backward([{ value: y, grad: dy }]);
    const ops = bwd(g);
    expect(ops.map((o) => o.op)).toEqual(['gemm', 'gemm', 'sum_to']);
    const [dx, dw, db] = ops;
    expect(names(dx.in)).toEqual(['dy', 'w']);
    expect(dx.attrs).toEqual({ acc: 0 });
    expect(dx.out[0]!.shape).toEqual([2, 3, 4]);
    expect(dw.attrs).toEqual({ trans_a: 1, acc: 0 });
    expect(dw.in[1]!.shape).toEqual([6, 4]); // x viewed as rows
    expect(dw.out[0]!.name).toBe('grad:w');
    expect(db.attrs).toEqual({ acc: 0 });
    expect(db.out[0]!.name).toBe('grad:b');
    validate(g);
  });

  it('fc1 with the GELU epilogue keeps the pre-activation and runs gelu_bwd first', () => {
    const g = new Graph();
    const x = g.input('x', [2, 4], 'f32');
    const w = g.param('w', [8, 4], { kind: 'zeros' });
    const y = linear(g, x, w, null, { act: 'gelu' });
    expect(g.ops[0].attrs).toEqual({ trans_b: 1, act: 1 });
    expect(g.ops[0].out.length).toBe(2);
    g.backward([{ value: y, grad: g.input('dy', [2, 8]) }]);
    const ops = bwd(g);
    expect(ops.map((o) => o.op)).toEqual(['gelu_bwd', 'gemm']); // no dx: x needs no gradient
    expect(ops[0].in[0]).toBe(g.ops[0].out[1]);
  });

  it('a param used twice: its first gradient write overwrites (acc=0), the second adds; an unreached param gets zeros', () => {
    const g = new Graph();
    const x = g.input('x', [3, 4], 'f32');
    const w = g.param('w', [4, 4], { kind: 'zeros' });
    g.param('unused', [7], { kind: 'zeros' });
    const y = linear(g, linear(g, x, w, null, { hint: 'h1' }), w, null, { hint: 'h2' });
    g.backward([{ value: y, grad: g.input('dy', [3, 4]) }]);
    const ops = bwd(g);
    const dws = ops.filter((o) => o.op === 'gemm' && o.out[0]!.name === 'grad:w');
    expect(dws.map((o) => o.attrs.acc)).toEqual([0, 1]);
    const fills = ops.filter((o) => o.op === 'fill');
    expect(fills.map((o) => o.out[0]!.name)).toEqual(['grad:unused']);
    expect(ops[0]).toBe(fills[0]); // before every gradient write (an op bypassing the sinks adds to zeros)
    validate(g);
  });

  it('a value with two consumers: first gradient write acc=0, the second acc=1', () => {
    const g = new Graph();
    const x = g.input('x', [3, 4], 'f32', { requiresGrad: true });
    const w1 = g.param('w1', [4, 4], { kind: 'zeros' });
    const w2 = g.param('w2', [4, 4], { kind: 'zeros' });
    const a = linear(g, x, w1, null);
    const b = linear(g, x, w2, null);
    const s = linear(g, a, w2, null);
    void s;
    g.backward([
      { value: b, grad: g.input('db', [3, 4]) },
      { value: a, grad: g.input('da', [3, 4]) },
    ]);
    const dxWrites = bwd(g).filter((o) => o.op === 'gemm' && o.out[0]!.name === 'd:x');
    expect(dxWrites.map((o) => o.attrs.acc)).toEqual([0, 1]);
  });
});

describe('residual stream', () => {
  function twoBlocks(): { g: Graph; y: Value } {
    const g = new Graph();
    const x = g.input('x', [2, 5, 8], 'f32', { requiresGrad: true });
    let y = x;
    for (let i = 0; i < 2; i++)
      y = new Block(g, `b${i}`, {
        dim: 8,
        heads: 2,
        qkvBias: 'qv',
        layerScale: 0.1,
        dropPath: i === 0 ? 0 : 0.1,
        layerId: i + 1,
      }).forward(y, { seed: g.input(`seed${i}`, [2], 'i32'), stream: i });
    g.backward([{ value: y, grad: g.input('dy', [2, 5, 8]) }]);
    return { g, y };
  }

  it('is one gradient buffer: no copies or adds in the backward, every LN backward accumulates into it', () => {
    const { g } = twoBlocks();
    const ops = bwd(g);
    expect(ops.filter((o) => o.op === 'copy' && o.out[0]!.shape.length === 3)).toEqual([]);
    expect(ops.some((o) => o.op === 'add')).toBe(false);
    const ln = ops.filter((o) => o.op === 'layernorm_bwd');
    expect(ln.length).toBe(4);
    // dx of each pre-LN lands in the stream's gradient, which already holds d(out): acc=1.
    for (const o of ln) expect(o.attrs.acc).toBe(1);
    const streamGrad = ops.find((o) => o.op === 'scale_add_bwd')!.in[0]!;
    for (const o of ln) expect(o.out[0]).toBe(streamGrad);
    // the input's gradient is that same buffer (donated), and the seed itself is the start of it
    expect(streamGrad.name).toBe('dy');
    expect(g.gradOf(g.values.find((v) => v.name === 'x')!)).toBe(streamGrad);
    validate(g);
  });

  it('scale_add_bwd gets gamma and keep; dgamma accumulates into the grad window', () => {
    const { g } = twoBlocks();
    const sab = bwd(g).filter((o) => o.op === 'scale_add_bwd');
    expect(sab.length).toBe(4);
    for (const o of sab) {
      expect(o.in[2]!.kind).toBe('param');
      expect(o.out[1]!.name).toMatch(/^grad:b\d\.gamma_\d$/);
    }
    // block 0 has drop rate 0 -> no keep; block 1 has 0.1 -> keep from drop_path_mask
    expect(sab.filter((o) => o.in[3] === null).length).toBe(2);
    const masks = g.ops.filter((o) => o.op === 'drop_path_mask');
    expect(masks.map((o) => o.attrs)).toEqual([
      { p: 0.1, stream: 2 },
      { p: 0.1, stream: 3 },
    ]);
    expect(masks.map((o) => o.in[0]!.name)).toEqual(['seed1', 'seed1']);
  });

  it('the q/v bias is assembled with a zero k bias and its gradient copied out of the [3D] window', () => {
    const { g } = twoBlocks();
    const fwd = g.ops.filter((o) => o.phase === 'forward');
    const fill = fwd.find((o) => o.op === 'fill')!;
    expect(fill.out[0]!.shape).toEqual([24]);
    const copies = fwd.filter((o) => o.op === 'copy' && o.in[0]!.kind === 'param');
    expect(copies.map((o) => [o.in[0]!.name, o.out[0]!.offset])).toEqual([
      ['b0.attn.q_bias', 0],
      ['b0.attn.v_bias', 16],
      ['b1.attn.q_bias', 0],
      ['b1.attn.v_bias', 16],
    ]);
    const back = bwd(g).filter((o) => o.op === 'copy' && o.out[0]!.kind === 'grad');
    expect(back.map((o) => o.out[0]!.name).sort()).toEqual([
      'grad:b0.attn.q_bias',
      'grad:b0.attn.v_bias',
      'grad:b1.attn.q_bias',
      'grad:b1.attn.v_bias',
    ]);
    for (const o of back) expect(o.attrs.acc).toBe(0); // each bias's only gradient write
  });
});

describe('graph checks', () => {
  it('rejects bad shapes with the names involved', () => {
    const g = new Graph();
    const x = g.input('x', [2, 3], 'f32');
    const w = g.param('w', [4, 5], { kind: 'zeros' });
    expect(() => linear(g, x, w, null)).toThrow(/'x' \[2, 3\] does not end in 5/);
    expect(() => g.input('x', [1])).toThrow(/exists already/);
    expect(() => g.view(x, [7])).toThrow(/does not fit/);
  });

  it('validate() catches a read of a temp nobody wrote', () => {
    const g = new Graph();
    const t = g.temp('t', [4]);
    const u = g.temp('u', [4]);
    g.emit('copy', [t], [u]);
    expect(() => validate(g)).toThrow(/reads 't' before any op wrote/);
  });

  it('no params may be added after backward()', () => {
    const g = new Graph();
    const w = g.param('w', [2, 2], { kind: 'zeros' });
    const y = linear(g, g.input('x', [1, 2]), w, null);
    g.backward([{ value: y, grad: g.input('dy', [1, 2]) }]);
    expect(() => g.param('late', [2], { kind: 'zeros' })).toThrow(/after the parameter layout/);
    const cg = compile(g);
    expect(cg.buffers.find((b) => b.name === 'grad:w')).toMatchObject({ kind: 'view', of: 'grads', offset: 0 });
  });
});

describe('accumulate-only gradient outputs', () => {
  it('zero-fill a fresh activation gradient first (LayerNorm w/b, mask token, LayerScale gamma given as inputs)', () => {
    const g = new Graph();
    const x = g.input('x', [2, 3, 4], 'f32', { requiresGrad: true });
    const w = g.input('w', [4], 'f32', { requiresGrad: true });
    const b = g.input('b', [4], 'f32', { requiresGrad: true });
    const tok = g.input('tok', [4], 'f32', { requiresGrad: true });
    const gamma = g.input('gamma', [4], 'f32', { requiresGrad: true });
    const y = layerNorm(g, x, w, b);
    const z = maskFill(g, copy(g, y), g.input('mask', [2, 3], 'u8'), tok);
    const out = residualAdd(g, x, z, gamma, null);
    g.backward([{ value: out, grad: g.input('dout', [2, 3, 4]) }]);
    const ops = bwd(g);
    for (const [name, op] of [
      ['d:w', 'layernorm_bwd'],
      ['d:b', 'layernorm_bwd'],
      ['d:tok', 'mask_fill_bwd'],
      ['d:gamma', 'scale_add_bwd'],
    ]) {
      const fill = ops.findIndex((o) => o.op === 'fill' && o.out[0]!.name === name);
      const use = ops.findIndex((o) => o.op === op && o.out.some((v) => v?.name === name));
      expect(fill, name).toBeGreaterThanOrEqual(0);
      expect(use, name).toBeGreaterThan(fill);
    }
    // a param needs no fill: its window of the flat grads (zeroed once) is accumulated into directly
    expect(
      ops
        .filter((o) => o.op === 'fill')
        .map((o) => o.out[0]!.name)
        .sort(),
    ).toEqual(['d:b', 'd:gamma', 'd:tok', 'd:w']);
    validate(g);
  });
});

describe('gradient storage under mixed precision', () => {
  function block(precision: 'fp32' | 'bf16') {
    const g = new Graph();
    g.precision = precision;
    const x = g.input('x', [2, 5, 8], 'f32', { requiresGrad: true });
    const y = new Block(g, 'b', { dim: 8, heads: 2, qkvBias: 'qv', layerScale: 0.1, dropPath: 0, layerId: 1 }).forward(
      x,
    );
    g.backward([{ value: y, grad: g.input('dy', [2, 5, 8]) }]);
    const grad = (name: string): Value => {
      const v = g.values.find((u) => u.name === name);
      if (!v) throw new Error(`no value '${name}'`);
      return v;
    };
    return { g, grad };
  }

  it('bf16: the gradients that only bf16 gemms, the bf16 attention and bias sums read are bf16, the rest f32', () => {
    const { g, grad } = block('bf16');
    // the GELU pre-activation's (gelu_bwd -> fc1's gemms), fc2's and proj's outputs' (scale_add_bwd ->
    // their gemms), the attention output's (proj's dX gemm -> attention_bwd) and qkv's
    // (attention_bwd -> qkv's gemms)
    for (const name of ['d:b.mlp.fc1.preact', 'd:b.mlp.fc2', 'd:b.attn.proj', 'd:b.attn.core', 'd:b.attn.qkv'])
      expect(grad(name).dtype, name).toBe('bf16');
    // LayerNorm's backward and the GELU's read theirs in fp32: the norms' outputs and fc1's output stay f32
    for (const name of ['d:b.norm1', 'd:b.norm2', 'd:b.mlp.fc1']) expect(grad(name).dtype, name).toBe('f32');
    // the ops that write them have their bf16 forms
    const ops = bwd(g);
    expect(ops.find((o) => o.op === 'gelu_bwd')!.out[0]!.dtype).toBe('bf16');
    expect(ops.filter((o) => o.op === 'scale_add_bwd').map((o) => o.out[0]!.dtype)).toEqual(['bf16', 'bf16']);
    expect(ops.find((o) => o.op === 'attention_bwd')!.out[0]!.dtype).toBe('bf16');
    validate(g);
  });

  it('fp32: every gradient is f32', () => {
    const { g } = block('fp32');
    expect(g.values.filter((v) => v.dtype === 'bf16')).toEqual([]);
  });

  it('a bf16 output that two ops read keeps an f32 gradient (their contributions add up in it)', () => {
    const g = new Graph();
    g.precision = 'bf16';
    const x = g.input('x', [3, 4], 'bf16', { requiresGrad: true });
    const w = g.param('w', [4, 4], { kind: 'zeros' });
    const h = linear(g, x, w, null, { hint: 'h' });
    const a = linear(g, h, w, null, { hint: 'a' });
    const b = linear(g, h, w, null, { hint: 'b' });
    g.backward([
      { value: a, grad: g.input('da', [3, 4]) },
      { value: b, grad: g.input('db', [3, 4]) },
    ]);
    expect(g.gradOf(h)!.dtype).toBe('f32');
    // the same output read once: bf16
    const g2 = new Graph();
    g2.precision = 'bf16';
    const x2 = g2.input('x', [3, 4], 'bf16', { requiresGrad: true });
    const h2 = linear(g2, x2, g2.param('w', [4, 4], { kind: 'zeros' }), null, { hint: 'h' });
    const y2 = linear(g2, h2, g2.param('w2', [4, 4], { kind: 'zeros' }), null, { hint: 'y' });
    g2.backward([{ value: y2, grad: g2.input('dy', [3, 4]) }]);
    expect(g2.gradOf(h2)!.dtype).toBe('bf16');
  });
});
