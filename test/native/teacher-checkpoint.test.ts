// The CLIP teacher loaded from real checkpoint layouts (test/fixtures/gen/clip_ckpt.py):
//   clip_ckpt_hf.safetensors      Hugging Face CLIPModel names, F32, width 32, 2 layers, 2 heads (given)
//   clip_ckpt_openai.safetensors  OpenAI names, F16 + BF16 embeddings, width 64, 2 layers, 1 head (inferred)
// Each is loaded into a ClipVisionTower graph and run through the engine; the last block's tokens are
// compared to PyTorch float64 modules that mirror the originals, also at image sizes whose grid differs
// from the checkpoint's (position embedding resized bicubically; F.interpolate reference). Then the
// errors: corrupt file, unknown layout, missing keys, shapes, config mismatches naming the flag.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { Graph, GraphState, compile, copy } from '../../lib/graph/index.js';
import { SafetensorsFile, type WriteTensor, writeSafetensors } from '../../lib/io/safetensors.js';
import { describeClipCheckpoint, inspectClipCheckpoint, loadClipTeacher, readClipTeacher, resizePosEmbed, teacherConfigFromArch } from '../../lib/io/teacher.js';
import { ClipVisionTower, type ClipConfig, buildMedic } from '../../lib/models/index.js';
import { cpuEngine, loadFixture, maxAbsErr, relErr } from '../helpers/parity.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const HF = join(fixtures, 'clip_ckpt_hf.safetensors');
const OPENAI = join(fixtures, 'clip_ckpt_openai.safetensors');
const fx = loadFixture('clip_ckpt');
const tmp = mkdtempSync(join(tmpdir(), 'clip-ckpt-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function cfgOf(c: string, over: Partial<ClipConfig> = {}): ClipConfig {
  const k = fx.cases[c];
  return { img: k.img, patch: k.patch, width: k.width, layers: k.layers, heads: k.heads, ...over };
}

/** Builds the teacher graph, loads the checkpoint into it and runs it on the case's images. */
async function runTeacher(path: string, c: string, cfg = cfgOf(c)): Promise<Float32Array> {
  const g = new Graph();
  const k = fx.cases[c];
  const images = g.input('images', [k.B, 3, k.img, k.img]);
  const tower = new ClipVisionTower(g, cfg);
  g.markOutput(g.noGrad(() => copy(g, tower.forward(images), 'out')), 'out'); // the last residual is in place: copy out
  const cg = compile(g);
  using state = new GraphState(cpuEngine(), cg);
  loadClipTeacher(state, path, cfg);
  using prog = state.program();
  const out = await prog.run({ images: fx.f32(`${c}.images`) });
  return out.outputs.out as Float32Array;
}

/** A copy of a checkpoint with some tensors dropped / replaced (all stored as F32). */
function edited(src: string, name: string, edit: (t: Record<string, WriteTensor>) => void): string {
  const f = new SafetensorsFile(src);
  const t: Record<string, WriteTensor> = {};
  try {
    for (const n of f.names()) {
      const i = f.info(n);
      t[n] = i.dtype === 'I64' ? { dtype: 'I64', shape: i.shape, data: f.read(n) } : { dtype: 'F32', shape: i.shape, data: f.readF32(n) };
    }
  } finally {
    f.close();
  }
  edit(t);
  const out = join(tmp, name);
  writeSafetensors(out, t);
  return out;
}

describe('CLIP teacher checkpoints: layout and architecture', () => {
  it('Hugging Face layout: width, depth, patch, grid, MLP from the tensors; heads from the caller', () => {
    const info = inspectClipCheckpoint(HF, { heads: 2 });
    expect(info.arch).toMatchObject({ layout: 'hf', prefix: 'vision_model.', width: 32, layers: 2, heads: 2, headsFrom: 'caller', patch: 4, grid: 4, img: 16, mlpHidden: 128 });
    expect(info.arch.dtypes).toEqual(['F32']);
    // width 32 is not a multiple of 64: without the caller or a config the heads cannot be inferred
    expect(() => inspectClipCheckpoint(HF)).toThrow(/cannot infer the attention heads of width 32.*--teacher-heads/);
  });

  it('OpenAI layout: heads inferred from CLIP\'s 64-dim rule; F16 and BF16 tensors', () => {
    const info = inspectClipCheckpoint(OPENAI);
    expect(info.arch).toMatchObject({ layout: 'openai', prefix: 'visual.', width: 64, layers: 2, heads: 1, headsFrom: 'rule', patch: 4, grid: 4, img: 16, mlpHidden: 256 });
    expect([...info.arch.dtypes].sort()).toEqual(['BF16', 'F16']);
    // a caller's head count against the rule is kept, with a note
    const two = inspectClipCheckpoint(OPENAI, { heads: 2 });
    expect(two.arch.heads).toBe(2);
    expect(two.notes.join()).toMatch(/rule gives 1 for width 64/);
  });

  it('heads from a Hugging Face config.json beside the file, and a config that disagrees with the caller', () => {
    const dir = mkdtempSync(join(tmp, 'hfdir-'));
    const path = join(dir, 'model.safetensors');
    copyFileSync(HF, path);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'clip', vision_config: { hidden_size: 32, num_attention_heads: 2, hidden_act: 'quick_gelu' } }));
    expect(inspectClipCheckpoint(path).arch).toMatchObject({ heads: 2, headsFrom: 'config' });
    expect(() => inspectClipCheckpoint(path, { heads: 4 })).toThrow(/config\.json gives 2 attention heads, the teacher is configured with 4: set --teacher-heads 2/);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ vision_config: { hidden_size: 32, num_attention_heads: 2, hidden_act: 'gelu' } }));
    expect(() => inspectClipCheckpoint(path)).toThrow(/activation is 'gelu'.*QuickGELU only/);
  });

  it('heads from an open_clip_config.json (head_width); open_clip models without quick_gelu use GELU and are refused', () => {
    const dir = mkdtempSync(join(tmp, 'ocdir-'));
    const path = join(dir, 'open_clip_model.safetensors');
    copyFileSync(OPENAI, path);
    const write = (mc: Record<string, unknown>) => writeFileSync(join(dir, 'open_clip_config.json'), JSON.stringify({ model_cfg: mc }));
    write({ quick_gelu: true, vision_cfg: { width: 64, head_width: 32, layers: 2, patch_size: 4 } });
    expect(inspectClipCheckpoint(path).arch).toMatchObject({ heads: 2, headsFrom: 'config' });
    write({ vision_cfg: { width: 64, layers: 2, patch_size: 4 } });
    expect(() => inspectClipCheckpoint(path)).toThrow(/open_clip_config\.json says the MLP activation is 'gelu'/);
    write({ quick_gelu: true, vision_cfg: { width: 768, layers: 12, patch_size: 16 } });
    expect(() => inspectClipCheckpoint(path)).toThrow(/describes width 768, the file holds width 64/);
  });

  it('the weights read as f32 under our teacher names (HF q, k, v stacked into in_proj)', () => {
    const { params } = readClipTeacher(HF, cfgOf('hf'));
    const f = new SafetensorsFile(HF);
    try {
      const inProj = params.get('teacher.transformer.resblocks.1.attn.in_proj_weight')!;
      expect(inProj.length).toBe(3 * 32 * 32);
      for (const [i, n] of ['q', 'k', 'v'].entries())
        expect(inProj.subarray(i * 1024, (i + 1) * 1024)).toEqual(f.readF32(`vision_model.encoder.layers.1.self_attn.${n}_proj.weight`));
      const bias = params.get('teacher.transformer.resblocks.0.attn.in_proj_bias')!;
      expect(bias.subarray(32, 64)).toEqual(f.readF32('vision_model.encoder.layers.0.self_attn.k_proj.bias'));
      expect(params.get('teacher.conv1.weight')).toEqual(f.readF32('vision_model.embeddings.patch_embedding.weight'));
      expect(params.get('teacher.transformer.resblocks.0.mlp.c_fc.weight')).toEqual(f.readF32('vision_model.encoder.layers.0.mlp.fc1.weight'));
      expect(params.size).toBe(5 + 2 * 12);
    } finally {
      f.close();
    }
  });
});

describe('into the whole MEDiC step graph', () => {
  it('teacherConfigFromArch + loadClipTeacher fill exactly the frozen teacher params of buildMedic', () => {
    const info = inspectClipCheckpoint(OPENAI);
    const teacher = teacherConfigFromArch(info.arch, 24);
    expect(teacher).toEqual({ img: 24, patch: 4, width: 64, layers: 2, heads: 1, mlpRatio: 4 });
    const { img: _, ...t } = teacher;
    const m = buildMedic({
      batch: 2, img: 24, patch: 4, student: { dim: 32, depth: 1, heads: 2, dropPath: 0 }, teacher: t, decoder: { dim: 16, depth: 1, heads: 2 },
      encoding: 'sparse', maskRatio: 0.5, weights: { w_tok: 1, w_cls: 0.4, w_pix: 1, tau: 0.1, beta: 1 }, optimizer: null,
    });
    using state = new GraphState(cpuEngine(), compile(m.graph));
    const loaded = loadClipTeacher(state, OPENAI, teacher);
    expect(describeClipCheckpoint(loaded, 24)).toMatch(/OpenAI\/open_clip layout.*width 64, 2 layers, 1 heads \(caller\), patch 4, trained at 16px, position grid 4 -> 6 \(bicubic\)/);
    const f = new SafetensorsFile(OPENAI);
    try {
      expect(state.readParam('teacher.transformer.resblocks.1.mlp.c_proj.weight')).toEqual(f.readF32('visual.transformer.resblocks.1.mlp.c_proj.weight'));
      expect(relErr(state.readParam('teacher.positional_embedding'), fx.f64('openai_up.pos'))).toBeLessThan(1e-7);
    } finally {
      f.close();
    }
    // the student's params are not touched (still zero: no init ran)
    expect(state.readParam('encoder.cls_token').every((x) => x === 0)).toBe(true);
  });
});

describe('position embedding resize (bicubic, align_corners=False, CLS kept) vs F.interpolate', () => {
  for (const c of ['hf_down', 'openai_up']) {
    it(`${c}: grid ${fx.cases[c].ckpt_grid} -> ${fx.cases[c].img / fx.cases[c].patch}`, () => {
      const { params } = readClipTeacher(c.startsWith('hf') ? HF : OPENAI, cfgOf(c));
      const pos = params.get('teacher.positional_embedding')!;
      const ref = fx.f64(`${c}.pos`);
      expect(pos.length).toBe(ref.length);
      expect(relErr(pos, ref)).toBeLessThan(1e-7); // f64 arithmetic, one f32 rounding
      expect(maxAbsErr(pos.subarray(0, fx.cases[c].width), ref.subarray(0, fx.cases[c].width))).toBeLessThan(1e-8); // CLS row as stored
    });
  }

  it('identity at the same grid; odd sizes and a 1x1 grid stay finite and keep a constant field constant', () => {
    const W = 3;
    const g0 = 5;
    const pos = new Float32Array((1 + g0 * g0) * W).map((_, i) => Math.sin(i));
    expect(resizePosEmbed(pos, g0, g0, W)).toBe(pos);
    const flat = new Float32Array((1 + g0 * g0) * W).fill(0.25);
    for (const g1 of [1, 2, 7, 13]) {
      const r = resizePosEmbed(flat, g0, g1, W);
      expect(r.length).toBe((1 + g1 * g1) * W);
      expect(maxAbsErr(r, new Float32Array(r.length).fill(0.25))).toBeLessThan(1e-7); // the cubic weights sum to 1
    }
    expect(() => resizePosEmbed(pos, 4, 6, W)).toThrow(/not \[1 \+ 4\^2, 3\]/);
  });
});

describe('CLIP teacher forward from a checkpoint vs PyTorch float64', () => {
  for (const c of ['hf', 'openai', 'hf_down', 'openai_up']) {
    it(`NUMERIC ${c}: the last block's tokens before ln_post (img ${fx.cases[c].img})`, async () => {
      const out = await runTeacher(c.startsWith('hf') ? HF : OPENAI, c);
      expect(relErr(out, fx.f64(`${c}.out`))).toBeLessThan(1e-5); // f32 through 2 blocks vs f64: measured 2-4e-7
    });
  }
});

describe('CLIP teacher checkpoint errors', () => {
  it('not safetensors: names the file', () => {
    const bad = join(tmp, 'corrupt.safetensors');
    writeFileSync(bad, Buffer.from('PK\x03\x04 this is a zip, not safetensors at all'));
    expect(() => inspectClipCheckpoint(bad)).toThrow(new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: not a valid safetensors file`));
    const pt = join(tmp, 'model.bin');
    writeFileSync(pt, Buffer.alloc(64, 7));
    expect(() => inspectClipCheckpoint(pt)).toThrow(/model\.bin: not a valid safetensors file.*PyTorch pickle.*docs\/TEACHER\.md/);
    expect(() => inspectClipCheckpoint(join(tmp, 'nope.safetensors'))).toThrow(/nope\.safetensors: no such file/);
  });

  it('truncated file', () => {
    const full = new SafetensorsFile(HF);
    const end = Math.max(...[...full.tensors.values()].map((t) => t.end));
    full.close();
    const path = join(tmp, 'truncated.safetensors');
    writeFileSync(path, readFileSync(HF).subarray(0, end - 100));
    expect(() => inspectClipCheckpoint(path, { heads: 2 })).toThrow(/truncated\.safetensors.*past the end of the file/);
  });

  it('unknown layout: lists some keys found', () => {
    const path = join(tmp, 'timm.safetensors');
    const z = (n: number): WriteTensor => ({ dtype: 'F32', shape: [n], data: new Float32Array(n) });
    writeSafetensors(path, { 'blocks.0.attn.qkv.weight': z(4), cls_token: z(2), 'patch_embed.proj.weight': z(3) });
    expect(() => inspectClipCheckpoint(path)).toThrow(/timm\.safetensors: unknown checkpoint layout.*3 tensors, e\.g\. blocks\.0\.attn\.qkv\.weight, cls_token, patch_embed\.proj\.weight/);
  });

  it('missing keys are named', () => {
    const path = edited(HF, 'missing.safetensors', (t) => {
      delete t['vision_model.encoder.layers.1.self_attn.k_proj.bias'];
      delete t['vision_model.pre_layrnorm.weight'];
    });
    expect(() => inspectClipCheckpoint(path, { heads: 2 })).toThrow(
      /a teacher file with missing keys \(2\): vision_model\.pre_layrnorm\.weight, vision_model\.encoder\.layers\.1\.self_attn\.k_proj\.bias/,
    );
  });

  it('a shape that disagrees with the inferred architecture', () => {
    const path = edited(OPENAI, 'shape.safetensors', (t) => {
      t['visual.transformer.resblocks.1.ln_2.bias'] = { dtype: 'F32', shape: [63], data: new Float32Array(63) };
    });
    expect(() => inspectClipCheckpoint(path)).toThrow(/visual\.transformer\.resblocks\.1\.ln_2\.bias is \[63\], expected \[64\]/);
  });

  it('a vision key the teacher does not implement (open_clip LayerScale)', () => {
    const path = edited(OPENAI, 'ls.safetensors', (t) => {
      t['visual.transformer.resblocks.0.ls_1.gamma'] = { dtype: 'F32', shape: [64], data: new Float32Array(64) };
    });
    expect(() => inspectClipCheckpoint(path)).toThrow(/keys this CLIP teacher does not implement: visual\.transformer\.resblocks\.0\.ls_1\.gamma/);
  });

  it('configured teacher vs checkpoint: each mismatch names the flag to change', () => {
    expect(() => readClipTeacher(OPENAI, cfgOf('openai', { width: 32, heads: 1 }))).toThrow(/width is 64, the teacher is configured with 32: set --teacher-dim 64/);
    expect(() => readClipTeacher(OPENAI, cfgOf('openai', { patch: 8 }))).toThrow(/patch size is 4 .*configured with 8: set --patch-size 4/);
    expect(() => readClipTeacher(OPENAI, cfgOf('openai', { layers: 3 }))).toThrow(/has 2 layers, the teacher is configured with 3: set --teacher-depth 2/);
    expect(() => readClipTeacher(HF, cfgOf('hf', { heads: 3 }))).toThrow(/3 attention heads do not divide the width 32: set --teacher-heads/);
    expect(() => readClipTeacher(HF, cfgOf('hf', { mlpRatio: 2 }))).toThrow(/MLP width is 128, the teacher is built with 64/);
  });
});
