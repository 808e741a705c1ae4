// The whole MEDiC step against the PyTorch float64 reference (test/fixtures/gen/medic_step.py):
// same initial parameters (written from the fixture into the flat buffers), same images and masks;
// compares the losses, every parameter gradient, and the losses/grad norms of 20 AdamW steps (the reference loss curve).
// The first test (names and shapes of the params) needs no kernels; the others are NUMERIC.
import { describe, expect, it } from 'vitest';

import { GraphState, compile } from '../../lib/graph/index.js';
import { buildMedic, type MedicConfig } from '../../lib/models/index.js';
import { maskInputs } from '../../lib/train/masking.js';
import { cpuEngine, loadFixture, relErr } from '../helpers/parity.js';

const fx = loadFixture('medic_step');

function config(encoding: 'sparse' | 'dense'): MedicConfig {
  const c = fx.cases[encoding];
  return {
    batch: c.B,
    img: c.img,
    patch: c.patch,
    student: { dim: c.D, depth: c.depth, heads: c.heads, dropPath: 0 },
    teacher: { patch: c.patch, width: c.Dt, layers: c.t_layers, heads: c.t_heads },
    decoder: { dim: c.Dd, depth: c.d_depth, heads: c.d_heads },
    encoding,
    maskRatio: c.mask_ratio,
    weights: { w_tok: c.w_tok, w_cls: c.w_cls, w_pix: c.w_pix, tau: c.tau, beta: c.beta },
    optimizer: { maxNorm: c.max_norm },
  };
}

function setup(encoding: 'sparse' | 'dense') {
  const m = buildMedic(config(encoding));
  const cg = compile(m.graph);
  const c = fx.cases[encoding];
  const state = new GraphState(cpuEngine(), cg);
  const values: Record<string, Float32Array> = {};
  for (const p of cg.params) values[p.name] = fx.f32(`${encoding}.param.${p.name}`);
  state.writeParams(values);
  const mask = fx.u8(`${encoding}.mask`);
  const inputs = { images: fx.f32(`${encoding}.images`), seed: Int32Array.from([1, 2]), ...maskInputs(mask, c.B, m.N, m.scored) };
  const feed = (step: number) => {
    const all: Record<string, Float32Array | Int32Array | Uint8Array> = { ...inputs, hyper: Float32Array.from([c.lr, c.wd, step]) };
    return Object.fromEntries(cg.inputs.map((i) => [i.name, all[i.name]]));
  };
  return { m, cg, state, feed, c };
}

for (const encoding of ['sparse', 'dense'] as const) {
  describe(`MEDiC step vs PyTorch float64 (${encoding})`, () => {
    it('the graph has exactly the reference params, with the same shapes', () => {
      const { cg, state } = setup(encoding);
      try {
        const ours = cg.params.map((p) => p.name).sort();
        const theirs = fx.names.filter((n) => n.startsWith(`${encoding}.param.`)).map((n) => n.slice(`${encoding}.param.`.length)).sort();
        expect(ours).toEqual(theirs);
        for (const p of cg.params) expect(fx.shape(`${encoding}.param.${p.name}`)).toEqual(p.shape);
        const grads = fx.names.filter((n) => n.startsWith(`${encoding}.grad.`)).map((n) => n.slice(`${encoding}.grad.`.length)).sort();
        expect(grads).toEqual(cg.params.filter((p) => p.group === 'train').map((p) => p.name).sort());
      } finally {
        state.dispose();
      }
    });

    it('NUMERIC: losses, every parameter gradient, and 20 AdamW steps', async () => {
      const { cg, state, feed, c } = setup(encoding);
      try {
        using prog = state.program();
        const out = await prog.run(feed(1));
        const losses = out.outputs.losses as Float32Array;
        expect(relErr(losses, fx.f64(`${encoding}.losses`))).toBeLessThan(1e-6); // f32 through ~200 ops vs f64 (measured ~3e-8)
        // gradients of step 1 (the grads buffer is not touched by adamw)
        const all: number[] = [];
        const ref: number[] = [];
        for (const p of cg.params.filter((p) => p.group === 'train')) {
          const gOurs = state.readGrad(p.name);
          const gRef = fx.f64(`${encoding}.grad.${p.name}`);
          expect(relErr(gOurs, gRef), p.name).toBeLessThan(1e-5); // worst measured ~6e-7
          all.push(...gOurs);
          ref.push(...gRef);
        }
        expect(relErr(all, ref)).toBeLessThan(1e-6);
        const stepLosses = fx.f64(`${encoding}.steps.losses`);
        const stepNorms = fx.f64(`${encoding}.steps.grad_norm`);
        expect(relErr(out.outputs.grad_norm as Float32Array, stepNorms.subarray(0, 1))).toBeLessThan(1e-6);
        for (let s = 2; s <= c.steps; s++) {
          const o = await prog.run(feed(s));
          expect(relErr(o.outputs.losses as Float32Array, stepLosses.subarray((s - 1) * 4, s * 4)), `step ${s}`).toBeLessThan(1e-5);
          expect(relErr(o.outputs.grad_norm as Float32Array, stepNorms.subarray(s - 1, s)), `step ${s}`).toBeLessThan(1e-5);
        }
      } finally {
        state.dispose();
      }
    });
  });
}
