// The student exported in timm ViT names (lib/io/export.ts): names and shapes against timm's
// VisionTransformer state dict, the composed qkv bias, metadata, the round trip through our reader into
// a fresh graph (bit-exact params, identical forward), and the reader's errors.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { Graph, GraphState, compile, copy } from '../../lib/graph/index.js';
import {
  TIMM_VIT_FORMAT,
  exportStudentTimm,
  flatParamSource,
  loadStudentExport,
  readStudentExport,
  stateParamSource,
  vitConfigOfExport,
} from '../../lib/io/export.js';
import { SafetensorsFile, type WriteTensor, writeSafetensors } from '../../lib/io/safetensors.js';
import { VisionTransformer, type VitConfig } from '../../lib/models/index.js';
import { cpuEngine, randomF32 } from '../helpers/parity.js';

const tmp = mkdtempSync(join(tmpdir(), 'export-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// D 24 with 3 heads, an MLP ratio that is not 4, 2 blocks, 12x12 images of patch 4 (N 9)
const cfg: VitConfig = { img: 12, patch: 4, dim: 24, depth: 2, heads: 3, mlpRatio: 2.5, layerScale: 0.1, dropPath: 0 };

/** A student graph (dense: with the mask token, which is not exported) with seeded random params. */
function student(c: VitConfig, opts: { seed?: number; withMaskToken?: boolean } = {}) {
  const g = new Graph();
  const images = g.input('images', [2, 3, c.img, c.img]);
  const vit = new VisionTransformer(g, c, { withMaskToken: opts.withMaskToken ?? true });
  g.markOutput(g.noGrad(() => copy(g, vit.forward(images), 'out')), 'out');
  const cg = compile(g);
  const state = new GraphState(cpuEngine(), cg);
  if (opts.seed !== undefined) state.get('params').write(randomF32(cg.sizes.train, opts.seed, 0.5));
  return { cg, state };
}

/** timm's VisionTransformer(qkv_bias=True, init_values set, class_token, global_pool 'token', num_classes 0) keys. */
function timmKeys(depth: number, ls: boolean): string[] {
  const k = ['cls_token', 'pos_embed', 'patch_embed.proj.weight', 'patch_embed.proj.bias'];
  for (let i = 0; i < depth; i++) {
    const b = `blocks.${i}`;
    k.push(`${b}.norm1.weight`, `${b}.norm1.bias`, `${b}.attn.qkv.weight`, `${b}.attn.qkv.bias`, `${b}.attn.proj.weight`, `${b}.attn.proj.bias`);
    if (ls) k.push(`${b}.ls1.gamma`);
    k.push(`${b}.norm2.weight`, `${b}.norm2.bias`, `${b}.mlp.fc1.weight`, `${b}.mlp.fc1.bias`, `${b}.mlp.fc2.weight`, `${b}.mlp.fc2.bias`);
    if (ls) k.push(`${b}.ls2.gamma`);
  }
  return [...k, 'norm.weight', 'norm.bias'];
}

describe('student export in timm ViT names', () => {
  it('names, shapes, metadata; mask_token left out', () => {
    const { cg, state } = student(cfg, { seed: 3 });
    try {
      const path = join(tmp, 'student.safetensors');
      exportStudentTimm(path, stateParamSource(state), cfg, { names: cg.params.map((p) => p.name), metadata: { step: '7' } });
      using f = new SafetensorsFile(path);
      expect(f.names().sort()).toEqual(timmKeys(2, true).sort());
      const shape = (n: string) => f.info(n).shape;
      expect(shape('cls_token')).toEqual([1, 1, 24]);
      expect(shape('pos_embed')).toEqual([1, 10, 24]);
      expect(shape('patch_embed.proj.weight')).toEqual([24, 3, 4, 4]);
      expect(shape('blocks.1.attn.qkv.weight')).toEqual([72, 24]);
      expect(shape('blocks.1.attn.qkv.bias')).toEqual([72]);
      expect(shape('blocks.0.mlp.fc1.weight')).toEqual([60, 24]);
      expect(shape('blocks.0.mlp.fc2.weight')).toEqual([24, 60]);
      expect(shape('blocks.0.ls2.gamma')).toEqual([24]);
      for (const n of f.names()) expect(f.info(n).dtype).toBe('F32');
      expect(f.metadata.format).toBe(TIMM_VIT_FORMAT);
      expect(f.metadata.step).toBe('7');
      expect(JSON.parse(f.metadata.arch)).toEqual({ img: 12, patch: 4, chans: 3, dim: 24, depth: 2, heads: 3, mlpRatio: 2.5, layerScale: 0.1 });
      const timm = JSON.parse(f.metadata.timm);
      expect(timm.model).toBeUndefined(); // no registered timm model of this size
      expect(timm.pretrained_cfg).toBeUndefined(); // no normalisation given (the pretrain export gives its own)
      expect(timm.kwargs).toMatchObject({ img_size: 12, patch_size: 4, embed_dim: 24, depth: 2, num_heads: 3, mlp_ratio: 2.5, qkv_bias: true, init_values: 0.1, num_classes: 0 });
      // values copied, not just named
      expect(f.readF32('blocks.1.attn.proj.weight')).toEqual(state.readParam('encoder.blocks.1.attn.proj.weight'));
      expect(f.readF32('blocks.0.ls1.gamma')).toEqual(state.readParam('encoder.blocks.0.gamma_1'));
      expect(f.readF32('pos_embed')).toEqual(state.readParam('encoder.pos_embed'));
    } finally {
      state.dispose();
    }
  });

  it('qkv bias = cat(q_bias, zeros, v_bias)', () => {
    const { state } = student(cfg, { seed: 4 });
    try {
      const path = join(tmp, 'qkv.safetensors');
      exportStudentTimm(path, stateParamSource(state), cfg);
      using f = new SafetensorsFile(path);
      for (const i of [0, 1]) {
        const b = f.readF32(`blocks.${i}.attn.qkv.bias`);
        const q = state.readParam(`encoder.blocks.${i}.attn.q_bias`);
        const v = state.readParam(`encoder.blocks.${i}.attn.v_bias`);
        expect(q.some((x) => x !== 0)).toBe(true); // random, so the check below can fail
        expect(b.subarray(0, 24)).toEqual(q);
        expect(b.subarray(24, 48)).toEqual(new Float32Array(24));
        expect(b.subarray(48, 72)).toEqual(v);
      }
    } finally {
      state.dispose();
    }
  });

  it('without LayerScale no ls*.gamma; a standard size records its timm model name', () => {
    const a = { img: 224, patch: 16, dim: 192, depth: 12, heads: 3, layerScale: null };
    const names = new Map<string, number>();
    // a synthetic source: every param a constant, checked only for names
    const get = (n: string) => {
      names.set(n, 1);
      const D = 192;
      const numel = n.endsWith('pos_embed') ? 197 * D : n.endsWith('proj.weight') && n.includes('patch') ? D * 768 : n.endsWith('qkv.weight') ? 3 * D * D : n.endsWith('attn.proj.weight') ? D * D : n.includes('mlp.fc') && n.endsWith('weight') ? 4 * D * D : n.endsWith('fc1.bias') ? 4 * D : D;
      return new Float32Array(numel);
    };
    const path = join(tmp, 'tiny224.safetensors');
    exportStudentTimm(path, get, a);
    using f = new SafetensorsFile(path);
    expect(f.names().sort()).toEqual(timmKeys(12, false).sort());
    expect(JSON.parse(f.metadata.timm).model).toBe('vit_tiny_patch16_224');
    expect(JSON.parse(f.metadata.timm).kwargs.init_values).toBe(null);
    expect([...names.keys()].some((n) => n.includes('gamma'))).toBe(false);
  });

  it('round trip through our reader into a fresh graph: params bit-exact (the dense mask_token is not carried)', () => {
    const src = student(cfg, { seed: 5 });
    const dst = student(cfg, { withMaskToken: false });
    try {
      const path = join(tmp, 'rt.safetensors');
      exportStudentTimm(path, stateParamSource(src.state), cfg);
      const ex = loadStudentExport(dst.state, path);
      expect(vitConfigOfExport(ex.arch)).toEqual({ ...cfg, chans: 3 });
      for (const p of dst.cg.params) expect(dst.state.readParam(p.name), p.name).toEqual(src.state.readParam(p.name));
      expect(dst.cg.params.length).toBe(src.cg.params.length - 1);
    } finally {
      src.state.dispose();
      dst.state.dispose();
    }
  });

  it('NUMERIC: the reloaded student computes the same features', async () => {
    const src = student(cfg, { seed: 6 });
    const dst = student(cfg, { withMaskToken: false, seed: 99 });
    try {
      const path = join(tmp, 'fwd.safetensors');
      exportStudentTimm(path, stateParamSource(src.state), cfg);
      loadStudentExport(dst.state, path);
      const images = randomF32(2 * 3 * 12 * 12, 8);
      using p1 = src.state.program();
      using p2 = dst.state.program();
      const a = (await p1.run({ images })).outputs.out as Float32Array;
      const b = (await p2.run({ images })).outputs.out as Float32Array;
      expect(a.length).toBe(2 * 10 * 24);
      expect(a.every(Number.isFinite)).toBe(true);
      expect(b).toEqual(a);
    } finally {
      src.state.dispose();
      dst.state.dispose();
    }
  });

  it('from a checkpoint-style flat buffer and param table', () => {
    const { cg, state } = student(cfg, { seed: 9 });
    try {
      const flat = state.get('params').read() as Float32Array;
      const table = cg.params.filter((p) => p.group === 'train').map((p) => ({ name: p.name, shape: p.shape, offset: p.offset }));
      const path = join(tmp, 'flat.safetensors');
      exportStudentTimm(path, flatParamSource(flat, table), cfg, { names: table.map((p) => p.name) });
      expect(readStudentExport(path).params.get('encoder.blocks.1.mlp.fc2.bias')).toEqual(state.readParam('encoder.blocks.1.mlp.fc2.bias'));
    } finally {
      state.dispose();
    }
  });

  it('errors: a missing param, an unexported param, a foreign file, a non-zero k bias, a graph of another size', () => {
    const { cg, state } = student(cfg, { seed: 10 });
    try {
      const get = stateParamSource(state);
      expect(() => exportStudentTimm(join(tmp, 'x.safetensors'), (n) => (n.endsWith('blocks.1.norm2.bias') ? undefined : get(n)), cfg)).toThrow(
        /no parameter 'encoder\.blocks\.1\.norm2\.bias'/,
      );
      expect(() => exportStudentTimm(join(tmp, 'x.safetensors'), get, cfg, { names: [...cg.params.map((p) => p.name), 'encoder.extra.weight'] })).toThrow(
        /no timm name: encoder\.extra\.weight/,
      );
      expect(() => exportStudentTimm(join(tmp, 'x.safetensors'), get, { ...cfg, depth: 3 })).toThrow(/no parameter 'encoder\.blocks\.2\.norm1\.weight'/);

      const foreign = join(tmp, 'foreign.safetensors');
      writeSafetensors(foreign, { cls_token: { dtype: 'F32', shape: [1], data: new Float32Array(1) } });
      expect(() => readStudentExport(foreign)).toThrow(/foreign\.safetensors: not a medic-native student export/);

      const path = join(tmp, 'kbias.safetensors');
      const t = exportStudentTimm(path, get, cfg);
      const bias = (t['blocks.1.attn.qkv.bias'].data as Float32Array).slice();
      bias[30] = 0.5;
      const f0 = new SafetensorsFile(path);
      const meta = { ...f0.metadata };
      f0.close();
      const t2: Record<string, WriteTensor> = { ...t, 'blocks.1.attn.qkv.bias': { dtype: 'F32', shape: [72], data: bias } };
      writeSafetensors(path, t2, meta);
      expect(() => readStudentExport(path)).toThrow(/'blocks\.1\.attn\.qkv\.bias' has a non-zero k bias/);

      const { 'norm.bias': _, ...t3 } = t;
      writeSafetensors(path, t3, meta);
      expect(() => readStudentExport(path)).toThrow(/do not match the recorded architecture: missing norm\.bias/);

      const ok = join(tmp, 'ok.safetensors');
      exportStudentTimm(ok, get, cfg);
      const other = student({ ...cfg, dim: 12, heads: 2 });
      try {
        expect(() => loadStudentExport(other.state, ok)).toThrow(/does not fit this model: encoder\.patch_embed\.proj\.weight: the file has 1152 values, the graph's \[12, 3, 4, 4\] needs 576/);
      } finally {
        other.state.dispose();
      }
    } finally {
      state.dispose();
    }
  });
});
