// The MEDiC step graph without kernels: param table, decay mask, inputs, shapes, branch removal.
import { describe, expect, it } from 'vitest';

import { compile, hostInit, initProgramSpec } from '../../lib/graph/index.js';
import { buildMedic, sincos2d } from '../../lib/models/index.js';
import { gradientBuckets } from '../../lib/train/distributed.js';
import { maskInputs } from '../../lib/train/masking.js';
import { tinyMedic } from '../helpers/models.js';

const tiny = tinyMedic;

describe('param table', () => {
  const m = buildMedic(tiny());
  const cg = compile(m.graph);

  it('lays trainable params out contiguously, the teacher in the frozen group', () => {
    let off = 0;
    for (const p of cg.params.filter((p) => p.group === 'train')) {
      expect(p.offset).toBe(off);
      off += p.numel;
    }
    expect(off).toBe(cg.sizes.train);
    const frozen = cg.params.filter((p) => p.group === 'frozen');
    expect(frozen.every((p) => p.name.startsWith('teacher.'))).toBe(true);
    expect(frozen.reduce((a, p) => a + p.numel, 0)).toBe(cg.sizes.frozen);
    expect(cg.params.filter((p) => p.group === 'train').every((p) => !p.name.startsWith('teacher.'))).toBe(true);
  });

  it('decays matrices only (no 1-D params, biases, pos embed, cls/mask tokens)', () => {
    const decayed = cg.params.filter((p) => p.decay).map((p) => p.name);
    expect(decayed).toContain('encoder.blocks.0.attn.qkv.weight');
    expect(decayed).toContain('encoder.patch_embed.proj.weight');
    expect(decayed).toContain('decoder.pred.weight');
    for (const n of decayed) expect(n).toMatch(/weight$/);
    for (const n of [
      'encoder.pos_embed',
      'encoder.cls_token',
      'decoder.mask_token',
      'encoder.blocks.1.gamma_1',
      'encoder.blocks.0.attn.q_bias',
      'encoder.norm.weight',
    ])
      expect(cg.params.find((p) => p.name === n)!.decay).toBe(false);
    // the mask covers exactly the decayed windows
    const mask = cg.wdMask;
    for (const p of cg.params.filter((p) => p.group === 'train'))
      expect(mask.subarray(p.offset, p.offset + p.numel).every((v) => v === (p.decay ? 1 : 0))).toBe(true);
  });

  it('uses the init of docs/METHOD.md (Student): LayerScale 0.1, rescaled proj/fc2 std, zero biases', () => {
    const find = (n: string) => cg.params.find((p) => p.name === n)!;
    expect(find('encoder.blocks.1.gamma_2').init).toEqual({ kind: 'const', value: 0.1 });
    expect(find('encoder.blocks.0.attn.qkv.weight').init).toMatchObject({ kind: 'trunc_normal', std: 0.02 });
    expect((find('encoder.blocks.1.mlp.fc2.weight').init as { std: number }).std).toBeCloseTo(0.02 / Math.sqrt(4), 12);
    expect((find('encoder.blocks.0.attn.proj.weight').init as { std: number }).std).toBeCloseTo(
      0.02 / Math.sqrt(2),
      12,
    );
    expect(find('encoder.blocks.0.mlp.fc1.bias').init).toEqual({ kind: 'zeros' });
    const { train } = hostInit(cg.params, cg.sizes, 1);
    const g = find('encoder.blocks.1.gamma_2');
    expect(Array.from(train.subarray(g.offset, g.offset + g.numel)).every((v) => Math.abs(v - 0.1) < 1e-7)).toBe(true);
    const w = find('encoder.blocks.0.attn.qkv.weight');
    const ws = train.subarray(w.offset, w.offset + w.numel);
    const std = Math.sqrt(ws.reduce((a, v) => a + v * v, 0) / ws.length);
    expect(std).toBeGreaterThan(0.015);
    expect(std).toBeLessThan(0.025);
  });

  it('draws each param from a stream of its name: the same seed gives the same teacher and blocks with or without the decoder / mask token', () => {
    const other = compile(buildMedic(tiny({ encoding: 'dense', weights: { w_tok: 1, w_cls: 0.4, w_pix: 0 } })).graph);
    const a = hostInit(cg.params, cg.sizes, 5);
    const b = hostInit(other.params, other.sizes, 5);
    const values = (c: typeof cg, init: typeof a, n: string) => {
      const p = c.params.find((p) => p.name === n)!;
      return init[p.group].subarray(p.offset, p.offset + p.numel);
    };
    // params registered after the dense mask token (student blocks) or the decoder (teacher) keep their values
    for (const n of [
      'teacher.conv1.weight',
      'teacher.transformer.resblocks.1.attn.in_proj_weight',
      'encoder.blocks.1.attn.qkv.weight',
      'head.weight',
    ]) {
      expect(
        cg.params.findIndex((p) => p.name === n),
        n,
      ).not.toBe(other.params.findIndex((p) => p.name === n));
      expect(Array.from(values(other, b, n)), n).toEqual(Array.from(values(cg, a, n)));
    }
    // distinct params draw distinct numbers; the native init ops carry the same streams
    expect(Array.from(values(cg, a, 'encoder.blocks.0.attn.qkv.weight').subarray(0, 8))).not.toEqual(
      Array.from(values(cg, a, 'encoder.blocks.1.attn.qkv.weight').subarray(0, 8)),
    );
    const streams = (c: typeof cg) => new Map(initProgramSpec(c, 5).ops.map((o) => [o.out[0], o.attrs.stream]));
    const sa = streams(cg);
    const sb = streams(other);
    expect(sa.get('init:teacher.conv1.weight')).toBe(sb.get('init:teacher.conv1.weight'));
    expect(new Set([...sa.values()].filter((v) => v !== undefined)).size).toBe(
      [...sa.values()].filter((v) => v !== undefined).length,
    );
  });

  it('binds params, grads as views at equal offsets, and declares the step inputs/outputs', () => {
    for (const p of cg.params.filter((p) => p.group === 'train')) {
      const gb = cg.buffers.find((b) => b.name === `grad:${p.name}`);
      if (gb) expect(gb).toMatchObject({ kind: 'view', of: 'grads', offset: p.offset });
    }
    expect(cg.inputs.map((i) => i.name).sort()).toEqual(
      ['hyper', 'images', 'masked', 'masked_rows', 'mask', 'scored_rows', 'seed', 'visible'].sort(),
    );
    expect(cg.outputs).toEqual([
      { name: 'losses', shape: [4], dtype: 'f32' },
      { name: 'grad_norm', shape: [1], dtype: 'f32' },
    ]);
    expect(cg.states.sort()).toEqual(['adam_m', 'adam_v', 'consts', 'frozen', 'grads', 'params', 'wd_mask']);
    // op order: forward, backward, then grad_norm and adamw last
    const ops = cg.ops.map((o) => o.op);
    expect(ops.slice(-2)).toEqual(['grad_norm', 'adamw']);
    expect(cg.ops.at(-1)!.attrs.max_norm).toBe(3);
    // no pass zeroes the whole gradient buffer: each param's first writer overwrites its window, and
    // still every gradient value is written by some op before grad_norm (buckets of one value each)
    expect(cg.ops.some((o) => o.op === 'fill' && o.out[0] === 'grads')).toBe(false);
    const lastWrite = Math.max(...gradientBuckets(cg, 1).map((b) => b.lastWrite));
    expect(lastWrite).toBeLessThan(ops.indexOf('grad_norm'));
  });
});

describe('parameter gradients without a zeroing pass', () => {
  it("each trainable gradient's first writer overwrites it (acc=0) or is a zero fill, and no fill follows another writer", () => {
    for (const balance of ['static', 'uncertainty'] as const) {
      const cg = compile(buildMedic(tinyMedic({ balance })).graph);
      const grads = cg.buffers.filter((b) => b.of === 'grads' || b.name === 'grads');
      const firstWrite = new Map<string, { k: number; acc: number; op: string }>();
      cg.ops.forEach((op, k) => {
        for (const name of op.out)
          if (name && grads.some((b) => b.name === name) && !firstWrite.has(name))
            firstWrite.set(name, { k, acc: Number(op.attrs.acc ?? 0), op: op.op });
      });
      // the uncertainty weighting's log-variances: written by loss_weights_bwd, which always adds, so
      // a fill comes first (it used to be a zero fill after it, which erased the gradient)
      const logvar = firstWrite.get('grad:loss.logvar');
      if (balance === 'uncertainty') expect(logvar?.op, 'grad:loss.logvar').toBe('fill');
      else expect(logvar).toBeUndefined();
      for (const [name, w] of firstWrite)
        expect(w.op === 'fill' || w.acc === 0, `${name}: first written by ${w.op} acc=${w.acc}`).toBe(true);
      cg.ops.forEach((op, k) => {
        const name = op.out[0];
        if (op.op === 'fill' && name && firstWrite.has(name))
          expect(k, `fill of ${name}`).toBe(firstWrite.get(name)!.k);
      });
    }
  });
});

describe('MEDiC shapes and branches', () => {
  it('sparse: the student sees 1+V tokens and scores them against the teacher rows [0, 1+visible]', () => {
    const m = buildMedic(tiny());
    expect([m.N, m.M, m.V]).toEqual([16, 6, 10]);
    expect(m.values.encoder_out.shape).toEqual([2, 11, 16]);
    expect(m.values.s.shape).toEqual([2, 11, 24]);
    expect(m.values.pred.shape).toEqual([2, 6, 48]);
    expect(m.graph.params.some((p) => p.name === 'encoder.mask_token')).toBe(false);
  });

  it('dense: 1+N tokens, mask token, masked rows scored by default', () => {
    const m = buildMedic(tiny({ encoding: 'dense' }));
    expect(m.values.encoder_out.shape).toEqual([2, 17, 16]);
    expect(m.values.s.shape).toEqual([2, 7, 24]);
    // the head runs on the scored rows only (gathered before it), not on all 1+N
    const head = m.graph.ops.filter((o) => o.phase === 'forward' && o.op === 'gemm' && o.in[1]!.name === 'head.weight');
    expect(head.map((o) => o.in[0]!.shape)).toEqual([[2, 7, 16]]);
    expect(m.graph.ops.filter((o) => o.op === 'mask_fill').length).toBe(2); // encoder + decoder grid
    expect(m.graph.params.some((p) => p.name === 'encoder.mask_token')).toBe(true);
    expect(buildMedic(tiny({ encoding: 'dense', scored: 'all' })).values.s.shape).toEqual([2, 17, 24]);
    expect(() => buildMedic(tiny({ scored: 'masked' }))).toThrow(/sparse encoding can only score visible/);
  });

  it('the frozen teacher runs in place: residual adds on the stream, QuickGELU on fc1 output (no copies)', () => {
    const m = buildMedic(tiny());
    const teacherOps = m.graph.ops.filter((o) => o.out.some((v) => v?.name.startsWith('teacher.')));
    const qg = teacherOps.filter((o) => o.op === 'quick_gelu');
    expect(qg.length).toBe(2);
    for (const o of qg) expect(o.out[0]!.of).toBe(o.in[0]);
    expect(teacherOps.filter((o) => o.op === 'copy')).toEqual([]);
    expect(teacherOps.filter((o) => o.op === 'scale_add').length).toBe(4);
  });

  it('w_pix = 0 builds no decoder and no pixel targets', () => {
    const m = buildMedic(tiny({ weights: { w_tok: 1, w_cls: 0.4, w_pix: 0 } }));
    const cg = compile(m.graph);
    expect(m.decoder).toBeNull();
    expect(cg.params.some((p) => p.name.startsWith('decoder.'))).toBe(false);
    expect(cg.ops.some((o) => o.op === 'pixel_norm')).toBe(false);
    const loss = cg.ops.find((o) => o.op === 'medic_loss')!;
    expect(loss.in.length).toBe(2);
    expect(loss.out.length).toBe(2);
    expect(loss.attrs.w_pix).toBe(0);
    expect(cg.inputs.map((i) => i.name).sort()).toEqual(['hyper', 'images', 'scored_rows', 'seed', 'visible']);
    expect(cg.consts.length).toBe(0);
  });

  it('w_tok = 0 scores only the CLS row', () => {
    const m = buildMedic(tiny({ weights: { w_tok: 0, w_cls: 1, w_pix: 1 } }));
    expect(m.values.s.shape).toEqual([2, 1, 24]);
    expect(compile(m.graph).inputs.some((i) => i.name === 'scored_rows')).toBe(false);
  });

  it('maskInputs derives the index inputs from a mask', () => {
    const N = 5;
    const mask = Uint8Array.from([1, 0, 0, 1, 0, /**/ 0, 1, 1, 0, 0]);
    const inp = maskInputs(mask, 2, N, 'masked');
    expect(Array.from(inp.visible)).toEqual([1, 2, 4, 0, 3, 4]);
    expect(Array.from(inp.masked)).toEqual([0, 3, 1, 2]);
    expect(Array.from(inp.masked_rows)).toEqual([1, 4, 2, 3]);
    expect(Array.from(inp.visible_rows)).toEqual([0, 2, 3, 5, 0, 1, 4, 5]);
    expect(Array.from(inp.scored_rows)).toEqual([0, 1, 4, 0, 2, 3]);
    expect(() => maskInputs(Uint8Array.from([1, 0, 0, 1, 0, 1, 1, 1, 0, 0]), 2, N, 'masked')).toThrow(
      /masks more than 2/,
    );
  });

  it('sincos2d: zero CLS row, column then row halves', () => {
    const t = sincos2d(8, 2, 3);
    expect(t.length).toBe(7 * 8);
    expect(Array.from(t.subarray(0, 8)).every((v) => v === 0)).toBe(true);
    // patch (r=1, c=2) is row 1 + 1*3 + 2 = 6; k = 0 -> frequency 1
    const row = t.subarray(6 * 8, 7 * 8);
    expect(row[0]).toBeCloseTo(Math.sin(2), 6);
    expect(row[2]).toBeCloseTo(Math.cos(2), 6);
    expect(row[4]).toBeCloseTo(Math.sin(1), 6);
    expect(row[6]).toBeCloseTo(Math.cos(1), 6);
    expect(row[1]).toBeCloseTo(Math.sin(2 / 100), 6);
  });
});
