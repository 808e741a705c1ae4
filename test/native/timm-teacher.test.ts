// timm-layout ViT checkpoints as the teacher (lib/io/teacher.ts layout 'timm', lib/models/timm-teacher.ts)
// against float64 PyTorch references (test/fixtures/gen/timm_teacher.py): the layout and architecture
// read from the header (LayerScale, norm_pre, heads from the 'timm' metadata or the 64-dim rule, the
// head / fc_norm / norm ignored), then the teacher program's targets at a chosen block and its
// attention map, at the checkpoint's grid and at a resized one.
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { GraphState, compile } from '../../lib/graph/index.js';
import { checkpointPool, inspectClipCheckpoint, loadClipTeacher } from '../../lib/io/teacher.js';
import { buildTeacherStep } from '../../lib/models/index.js';
import { cpuEngine, loadFixture, relErr } from '../helpers/parity.js';

const fx = loadFixture('timm_teacher');
const file = (name: string) => join(import.meta.dirname, '..', 'fixtures', `timm_teacher_${name}.safetensors`);

describe('timm ViT checkpoints as the teacher', () => {
  it('the header gives the layout and architecture', () => {
    const ls = inspectClipCheckpoint(file('ls')).arch;
    expect(ls).toMatchObject({ layout: 'timm', width: 48, layers: 3, heads: 3, headsFrom: 'config', patch: 4, grid: 4, mlpHidden: 192, layerScale: true, normPre: true });
    const plain = inspectClipCheckpoint(file('plain')).arch;
    expect(plain).toMatchObject({ layout: 'timm', width: 64, layers: 2, heads: 1, headsFrom: 'rule', layerScale: false, normPre: false });
  });

  for (const name of Object.keys(fx.cases)) {
    const c = fx.cases[name];
    it(`${name}: targets of block ${c.layer} and its attention map match float64 (image ${c.img})`, async () => {
      const teacher = { kind: 'timm' as const, patch: c.patch, width: c.width, layers: c.depth, heads: c.heads, layerScale: !!c.layerscale, normPre: !!c.norm_pre };
      const ts = buildTeacherStep({ batch: 2, img: c.img, teacher, teacherLayer: c.layer });
      const cg = compile(ts.graph);
      const state = new GraphState(cpuEngine(), cg);
      try {
        loadClipTeacher(state, file(name), { ...teacher, img: c.img });
        using prog = state.program();
        const out = await prog.run({ images: fx.f32(`${name}.images`) });
        expect(relErr(out.outputs.targets as Float32Array, fx.f64(`${name}.targets`))).toBeLessThan(1e-5);
        expect(relErr(out.outputs.attn as Float32Array, fx.f64(`${name}.attn`))).toBeLessThan(1e-5);
      } finally {
        state.dispose();
      }
    });
  }

  it("the CLS target's pooling comes from the file: global_pool 'avg' (metadata, or fc_norm without norm) or the CLS token", async () => {
    expect(checkpointPool(file('ls'))).toMatchObject({ pool: 'avg' }); // fc_norm + head, no norm
    expect(checkpointPool(file('plain')).pool).toBe('cls');
    const { writeSafetensors } = await import('../../lib/io/safetensors.js');
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'timm-pool-'));
    const W = 64;
    const tensors = {
      'patch_embed.proj.weight': { dtype: 'F32' as const, shape: [W, 3, 4, 4], data: new Float32Array(W * 48) },
      cls_token: { dtype: 'F32' as const, shape: [1, 1, W], data: new Float32Array(W) },
      'norm.weight': { dtype: 'F32' as const, shape: [W], data: new Float32Array(W) },
    };
    for (const gp of ['avg', 'token']) {
      const p = join(dir, `${gp}.safetensors`);
      writeSafetensors(p, tensors, { timm: JSON.stringify({ kwargs: { global_pool: gp } }) });
      expect(checkpointPool(p)).toEqual({ pool: gp === 'avg' ? 'avg' : 'cls', why: `its 'timm' metadata says global_pool '${gp}'` });
    }
  });

  it('a timm file with a key the teacher does not implement is refused, naming it', async () => {
    const { writeSafetensors } = await import('../../lib/io/safetensors.js');
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'timm-teacher-'));
    const p = join(dir, 'reg.safetensors');
    const W = 64;
    writeSafetensors(p, {
      'patch_embed.proj.weight': { dtype: 'F32', shape: [W, 3, 4, 4], data: new Float32Array(W * 48) },
      cls_token: { dtype: 'F32', shape: [1, 1, W], data: new Float32Array(W) },
      reg_token: { dtype: 'F32', shape: [1, 4, W], data: new Float32Array(4 * W) },
      pos_embed: { dtype: 'F32', shape: [1, 17, W], data: new Float32Array(17 * W) },
      'blocks.0.attn.qkv.weight': { dtype: 'F32', shape: [3 * W, W], data: new Float32Array(3 * W * W) },
    });
    expect(() => inspectClipCheckpoint(p)).toThrow(/the timm ViT vision tower has keys this teacher does not implement: reg_token/);
  });
});
