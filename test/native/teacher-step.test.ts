// The teacher program of evolved masking (buildTeacherStep) against the float64 reference of the
// whole step (test/fixtures/gen/medic_step.py): its attention map output equals the reference's
// head-averaged last-block attention, and a MEDiC graph fed its targets (teacherTargets 'input')
// gives the reference losses and gradients of the one-graph step. Both programs bind one frozen tensor.
import { describe, expect, it } from 'vitest';

import { GraphState, compile } from '../../lib/graph/index.js';
import { buildMedic, buildTeacherStep, type MedicConfig } from '../../lib/models/index.js';
import { maskInputs } from '../../lib/train/masking.js';
import { cpuEngine, loadFixture, relErr } from '../helpers/parity.js';

const fx = loadFixture('medic_step');

function config(encoding: 'sparse' | 'dense'): MedicConfig {
  const c = fx.cases[encoding];
  return {
    batch: c.B, img: c.img, patch: c.patch,
    student: { dim: c.D, depth: c.depth, heads: c.heads, dropPath: 0 },
    teacher: { patch: c.patch, width: c.Dt, layers: c.t_layers, heads: c.t_heads },
    decoder: { dim: c.Dd, depth: c.d_depth, heads: c.d_heads },
    encoding, maskRatio: c.mask_ratio,
    weights: { w_tok: c.w_tok, w_cls: c.w_cls, w_pix: c.w_pix, tau: c.tau, beta: c.beta },
    optimizer: null,
    teacherTargets: 'input',
  };
}

describe('teacher program + MEDiC graph with teacher_targets as input', () => {
  for (const encoding of ['sparse', 'dense'] as const) {
    it(`${encoding}: attn equals the reference map; losses and gradients equal the one-graph reference`, async () => {
      const cfg = config(encoding);
      const c = fx.cases[encoding];
      const m = buildMedic(cfg);
      const cg = compile(m.graph);
      const ts = buildTeacherStep(cfg);
      const tcg = compile(ts.graph);
      // One frozen layout: same names, shapes and offsets.
      expect(tcg.params.map((p) => [p.name, p.offset, p.numel])).toEqual(cg.params.filter((p) => p.group === 'frozen').map((p) => [p.name, p.offset, p.numel]));
      const state = new GraphState(cpuEngine(), cg);
      const values: Record<string, Float32Array> = {};
      for (const p of cg.params) values[p.name] = fx.f32(`${encoding}.param.${p.name}`);
      state.writeParams(values);
      const tprog = cpuEngine().program({
        buffers: tcg.buffers.map((b) => ({ ...b, tensor: b.state ? state.get(b.state) : undefined })),
        ops: tcg.ops,
      });
      try {
        const t = await tprog.run({ images: fx.f32(`${encoding}.images`) });
        expect(relErr(t.outputs.attn as Float32Array, fx.f64(`${encoding}.teacher_attn`))).toBeLessThan(1e-5);
        using prog = state.program();
        const mask = fx.u8(`${encoding}.mask`);
        const all: Record<string, Float32Array | Int32Array | Uint8Array> = {
          images: fx.f32(`${encoding}.images`), teacher_targets: t.outputs.targets as Float32Array, seed: Int32Array.from([1, 2]),
          ...maskInputs(mask, c.B, m.N, m.scored),
        };
        const out = await prog.run(Object.fromEntries(cg.inputs.map((i) => [i.name, all[i.name]])));
        expect(relErr(out.outputs.losses as Float32Array, fx.f64(`${encoding}.losses`))).toBeLessThan(1e-6);
        for (const p of cg.params.filter((p) => p.group === 'train')) expect(relErr(state.readGrad(p.name), fx.f64(`${encoding}.grad.${p.name}`)), p.name).toBeLessThan(1e-5);
      } finally {
        tprog.dispose();
        state.dispose();
      }
    });
  }
});

describe('teacher targets: the CLS target as the teacher pools', () => {
  for (const pool of ['cls', 'avg'] as const) {
    it(`${pool}: the normalised targets equal the reference (avg: row 0 is the mean of the patch tokens)`, async () => {
      const cfg = { ...config('sparse'), teacherPool: pool };
      const tcg = compile(buildTeacherStep(cfg).graph);
      const state = new GraphState(cpuEngine(), tcg);
      try {
        const values: Record<string, Float32Array> = {};
        for (const p of tcg.params) values[p.name] = fx.f32(`sparse.param.${p.name}`);
        state.writeParams(values);
        using prog = state.program();
        const t = await prog.run({ images: fx.f32('sparse.images') });
        const ref = fx.f64(`sparse.teacher_targets${pool === 'avg' ? '_avg' : ''}`);
        expect(relErr(t.outputs.targets as Float32Array, ref)).toBeLessThan(1e-5);
        // The two differ exactly in the CLS row: the test sees the pooling, not just the norm.
        const other = fx.f64(`sparse.teacher_targets${pool === 'avg' ? '' : '_avg'}`);
        expect(relErr(t.outputs.targets as Float32Array, other)).toBeGreaterThan(1e-2);
      } finally {
        state.dispose();
      }
    });
  }
});

describe("teacher program with clusterInput 'gram' (hc's input)", () => {
  it('outputs attn^T attn of the reference map per image (the batched gemm), and the same targets', async () => {
    const cfg = config('sparse');
    const c = fx.cases.sparse;
    const N = (c.img / c.patch) ** 2;
    const cg = compile(buildMedic(cfg).graph);
    const state = new GraphState(cpuEngine(), cg);
    const values: Record<string, Float32Array> = {};
    for (const p of cg.params) values[p.name] = fx.f32(`sparse.param.${p.name}`);
    state.writeParams(values);
    const bind = (ts: ReturnType<typeof buildTeacherStep>) => {
      const tcg = compile(ts.graph);
      return cpuEngine().program({ buffers: tcg.buffers.map((b) => ({ ...b, tensor: b.state ? state.get(b.state) : undefined })), ops: tcg.ops });
    };
    const withGram = bind(buildTeacherStep({ ...cfg, clusterInput: 'gram' }));
    const withAttn = bind(buildTeacherStep(cfg));
    try {
      const images = fx.f32('sparse.images');
      const g = await withGram.run({ images });
      const a = await withAttn.run({ images });
      expect(Object.keys(g.outputs).sort()).toEqual(['gram', 'targets']);
      expect(g.outputs.targets).toEqual(a.outputs.targets);
      // float64 A^T A of the reference attention map
      const A = fx.f64('sparse.teacher_attn');
      const ref = new Float64Array(c.B * N * N);
      for (let b = 0; b < c.B; b++)
        for (let i = 0; i < N; i++)
          for (let x = 0; x < N; x++)
            for (let y = 0; y < N; y++) ref[b * N * N + x * N + y] += A[b * N * N + i * N + x] * A[b * N * N + i * N + y];
      expect(relErr(g.outputs.gram as Float32Array, ref)).toBeLessThan(1e-5);
    } finally {
      withGram.dispose();
      withAttn.dispose();
      state.dispose();
    }
  });
});
