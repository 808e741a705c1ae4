// Compiled graphs against the native program compiler: every op's shape/dtype contract (op_checks.cpp)
// and the buffer/view layout are checked at compile time, so these need the addon but no kernels.
import { describe, expect, it } from 'vitest';

import { Graph, GraphState, compile } from '../../lib/graph/index.js';
import { VisionTransformer, buildMedic, type MedicConfig } from '../../lib/models/index.js';
import { tinyMedic } from '../helpers/models.js';
import { cpuEngine } from '../helpers/parity.js';

const tiny = tinyMedic;

const variants: [string, Partial<MedicConfig>][] = [
  ['sparse', {}],
  ['dense (masked scored)', { encoding: 'dense' }],
  ['dense (all scored)', { encoding: 'dense', scored: 'all' }],
  ['dense (visible scored)', { encoding: 'dense', scored: 'visible' }],
  ['sparse, w_pix 0', { weights: { w_tok: 1, w_cls: 0.4, w_pix: 0 } }],
  ['dense, w_tok 0', { encoding: 'dense', weights: { w_tok: 0, w_cls: 1, w_pix: 1 } }],
  ['no optimizer', { optimizer: null }],
  ['odd sizes: 28x28 patch 4, 3 heads, 75% masked', { img: 28, student: { dim: 24, depth: 3, heads: 3 }, teacher: { patch: 4, width: 36, layers: 1, heads: 3 }, decoder: { dim: 32, depth: 2, heads: 4 }, maskRatio: 0.75 }],
];

describe('MEDiC step programs compile natively', () => {
  for (const [name, over] of variants) {
    it(name, () => {
      const engine = cpuEngine();
      const cg = compile(buildMedic(tiny(over)).graph);
      using state = new GraphState(engine, cg);
      using prog = state.program();
      const info = prog.info();
      expect(info.ops).toBe(cg.ops.length);
      expect(info.arenaBytes).toBeLessThan(info.naiveBytes); // liveness planning shares memory
    });
  }

  it('the ViT-B/16 step graph at 224 builds with the expected sizes', () => {
    const m = buildMedic(
      tiny({ batch: 1, img: 224, patch: 16, student: { dim: 768, depth: 12, heads: 12 }, teacher: { patch: 16, width: 768, layers: 12, heads: 12 }, decoder: { dim: 512, depth: 8, heads: 16 } }),
    );
    expect([m.N, m.V]).toEqual([196, 118]);
    const cg = compile(m.graph);
    expect(cg.sizes.train).toBeGreaterThan(100e6); // ViT-B ~86M + head + 8-block decoder
    expect(cg.sizes.frozen).toBeGreaterThan(80e6); // CLIP ViT-B/16 tower
    expect(cg.ops.filter((o) => o.op === 'attention').length).toBe(12 + 12 + 8);
  });

  it('an eval forward (no masking, no backward) compiles', () => {
    const g = new Graph();
    const vit = new VisionTransformer(g, { img: 32, patch: 4, dim: 24, depth: 2, heads: 3 });
    const out = g.markOutput(vit.forward(g.input('images', [3, 3, 32, 32])), 'features');
    expect(out.shape).toEqual([3, 65, 24]);
    const cg = compile(g);
    expect(cg.ops.some((o) => o.op.endsWith('_bwd'))).toBe(false);
    // gradients off: no tape, and the residual stream is updated in place (no copy before each add)
    expect(g.tapeLength).toBe(0);
    const shapeOf = (n: string) => cg.buffers.find((b) => b.name === n)!.shape;
    expect(cg.ops.filter((o) => o.op === 'copy' && shapeOf(o.out[0]).length === 3)).toEqual([]); // only the [3D] q/v bias copies
    expect(cg.ops.filter((o) => o.op === 'scale_add').length).toBe(4);
    using state = new GraphState(cpuEngine(), cg);
    using prog = state.program();
    expect(prog.info().ops).toBe(cg.ops.length);
  });
});
