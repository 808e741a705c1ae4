// NUMERIC (needs kernels): every nn module's backward, as emitted by the graph, against central finite
// differences. The analytic gradients come from the eager executor (one op at a time); the loss
// L = sum(dy * y) for a fixed random dy is re-evaluated through the compiled program for the
// differences.
import { describe, expect, it } from 'vitest';

import type { AnyTypedArray } from '../../lib/engine/index.js';
import { EagerExecutor, Graph, GraphState, compile, concatRows, gatherRows, type Value } from '../../lib/graph/index.js';
import { PixelDecoder, VisionTransformer } from '../../lib/models/index.js';
import { Attention, Block, LayerNorm, Linear, Mlp } from '../../lib/nn/index.js';
import { cpuEngine, dot, randomF32 } from '../helpers/parity.js';

interface Built {
  y: Value;
  /** Inputs that get a gradient check too (created with requiresGrad). */
  x?: Value;
  feed: Record<string, AnyTypedArray>;
}

async function gradCheck(make: (g: Graph) => Built, opts: { samples?: number; h?: number; tol?: number; scale?: number } = {}): Promise<{ param: number; input: number }> {
  const g = new Graph();
  const { y, x, feed } = make(g);
  const dyIn = g.input('dy', [...y.shape]);
  g.backward([{ value: y, grad: dyIn }]);
  const dxName = x ? g.gradOf(x)?.name : undefined;
  const yOut = g.temp('y_out', y.shape);
  g.emit('copy', [y], [yOut]);
  g.markOutput(yOut, 'y_out');
  const cg = compile(g);
  const engine = cpuEngine();
  using state = new GraphState(engine, cg);
  const n = cg.sizes.train;
  const params = randomF32(n, 3, opts.scale ?? 0.3);
  if (n) state.get('params').write(params); // a frozen-only graph (the CLIP block) has no trainable buffer
  if (cg.sizes.frozen) state.get('frozen').write(randomF32(cg.sizes.frozen, 4, opts.scale ?? 0.3));
  const dy = randomF32(y.shape.reduce((a, b) => a * b, 1), 5);
  const inputs: Record<string, AnyTypedArray> = { ...feed, dy };

  using eager = new EagerExecutor(engine, cg, state);
  await eager.run(inputs);
  const gParams = n ? (state.get('grads').read() as Float32Array) : new Float32Array(0);
  const gx = dxName ? (eager.read(dxName) as Float32Array) : undefined;

  using prog = state.program();
  const loss = async (): Promise<number> => dot(dy, (await prog.run(inputs)).outputs.y_out as Float32Array);
  const h = opts.h ?? 1e-2;
  const samples = opts.samples ?? 16;
  const worst = async (data: Float32Array, grad: Float32Array, write: (d: Float32Array) => void, seed: number): Promise<number> => {
    let w = 0;
    let s = seed;
    for (let k = 0; k < Math.min(samples, data.length); k++) {
      s = (s * 1664525 + 1013904223) >>> 0;
      const i = s % data.length;
      const keep = data[i];
      data[i] = keep + h;
      write(data);
      const fp = await loss();
      data[i] = keep - h;
      write(data);
      const fm = await loss();
      data[i] = keep;
      write(data);
      const fd = (fp - fm) / (2 * h);
      w = Math.max(w, Math.abs(fd - grad[i]) / Math.max(Math.abs(fd), Math.abs(grad[i]), 1e-2));
    }
    return w;
  };
  const param = n ? await worst(params, gParams, (d) => state.get('params').write(d), 11) : 0;
  let input = 0;
  if (x && gx) {
    const xd = feed[x.name] as Float32Array;
    input = await worst(xd, gx, () => {}, 13);
  }
  return { param, input };
}

const TOL = 2e-2; // f32 forward differences with h = 1e-2 on O(1) values

describe('nn backward vs finite differences (eager executor)', () => {
  it('Linear, plain and with the GELU epilogue', async () => {
    for (const act of ['none', 'gelu'] as const) {
      const r = await gradCheck((g) => {
        const x = g.input('x', [2, 3, 5], 'f32', { requiresGrad: true });
        return { y: new Linear(g, 'fc', 5, 7).forward(x, { act }), x, feed: { x: randomF32(30, 1) } };
      });
      expect(r.param).toBeLessThan(TOL);
      expect(r.input).toBeLessThan(TOL);
    }
  });

  it('LayerNorm', async () => {
    const r = await gradCheck((g) => {
      const x = g.input('x', [3, 7], 'f32', { requiresGrad: true });
      return { y: new LayerNorm(g, 'ln', 7).forward(x), x, feed: { x: randomF32(21, 2) } };
    });
    expect(r.param).toBeLessThan(TOL);
    expect(r.input).toBeLessThan(TOL);
  });

  it('Attention with q/v bias (zero k bias) and Mlp', async () => {
    const a = await gradCheck((g) => {
      const x = g.input('x', [2, 5, 8], 'f32', { requiresGrad: true });
      return { y: new Attention(g, 'attn', { dim: 8, heads: 2, qkvBias: 'qv' }).forward(x), x, feed: { x: randomF32(80, 3) } };
    });
    expect(a.param).toBeLessThan(TOL);
    expect(a.input).toBeLessThan(TOL);
    const m = await gradCheck((g) => {
      const x = g.input('x', [2, 3, 6], 'f32', { requiresGrad: true });
      return { y: new Mlp(g, 'mlp', { dim: 6, hidden: 12, act: 'gelu' }).forward(x), x, feed: { x: randomF32(36, 4) } };
    });
    expect(m.param).toBeLessThan(TOL);
    expect(m.input).toBeLessThan(TOL);
  });

  it('Block with LayerScale and DropPath (fixed seed), and a CLIP block (QuickGELU, no grad on frozen)', async () => {
    const r = await gradCheck(
      (g) => {
        const x = g.input('x', [4, 5, 8], 'f32', { requiresGrad: true });
        const seed = g.input('seed', [2], 'i32');
        const b = new Block(g, 'blk', { dim: 8, heads: 2, qkvBias: 'qv', layerScale: 0.1, dropPath: 0.5, layerId: 1 });
        return { y: b.forward(x, { seed, stream: 0 }), x, feed: { x: randomF32(160, 5), seed: Int32Array.from([7, 1]) } };
      },
      { samples: 24 },
    );
    expect(r.param).toBeLessThan(TOL);
    expect(r.input).toBeLessThan(TOL);
    const c = await gradCheck((g) => {
      const x = g.input('x', [2, 5, 8], 'f32', { requiresGrad: true });
      const b = new Block(g, 'clip', { dim: 8, heads: 2, qkvBias: 'full', layerScale: null, dropPath: 0, layerId: null, act: 'quick_gelu', eps: 1e-5, naming: 'openai', group: 'frozen' });
      return { y: b.forward(x), x, feed: { x: randomF32(80, 6) } };
    });
    expect(c.input).toBeLessThan(TOL);
  });

  it('ViT encoders (sparse gather + CLS concat, dense mask token) end to end', async () => {
    const visible = Int32Array.from([0, 2, 3, 1, 2, 3]);
    const mask = Uint8Array.from([0, 1, 0, 0, 1, 0, 0, 0]);
    for (const dense of [false, true]) {
      const r = await gradCheck(
        (g) => {
          const img = g.input('images', [2, 3, 8, 8]);
          const vit = new VisionTransformer(g, { img: 8, patch: 4, dim: 8, depth: 2, heads: 2, dropPath: 0 }, { withMaskToken: dense });
          const y = dense ? vit.forwardDense(img, g.input('mask', [2, 4], 'u8')) : vit.forwardSparse(img, g.input('visible', [2, 3], 'i32'));
          const feed: Record<string, AnyTypedArray> = dense ? { images: randomF32(384, 7), mask } : { images: randomF32(384, 7), visible };
          return { y, feed };
        },
        { samples: 32 },
      );
      expect(r.param).toBeLessThan(TOL);
    }
  });

  it('Pixel decoder (scatter to grid, decoder mask token, sin-cos pos, masked-row gather)', async () => {
    const r = await gradCheck(
      (g) => {
        const enc = g.input('enc', [2, 3, 8], 'f32', { requiresGrad: true });
        const dec = new PixelDecoder(g, { inDim: 8, dim: 8, depth: 1, heads: 2, grid: 2, patchPixels: 12 });
        const y = dec.forward(enc, g.input('visible', [2, 2], 'i32'), g.input('mask', [2, 4], 'u8'), g.input('masked_rows', [2, 2], 'i32'));
        return {
          y,
          x: enc,
          feed: { enc: randomF32(48, 8), visible: Int32Array.from([0, 3, 1, 2]), mask: Uint8Array.from([0, 1, 1, 0, 1, 0, 0, 1]), masked_rows: Int32Array.from([2, 3, 1, 4]) },
        };
      },
      { samples: 32 },
    );
    expect(r.param).toBeLessThan(TOL);
    expect(r.input).toBeLessThan(TOL);
  });

  it('concatRows with a broadcast row and gatherRows with repeated use of the source', async () => {
    const r = await gradCheck((g) => {
      const x = g.input('x', [2, 4, 3], 'f32', { requiresGrad: true });
      const tok = g.param('tok', [1, 1, 3], { kind: 'zeros' });
      const a = gatherRows(g, x, g.input('idx', [2, 2], 'i32'));
      return { y: concatRows(g, [tok, a, x]), x, feed: { x: randomF32(24, 9), idx: Int32Array.from([3, 1, 0, 2]) } };
    });
    expect(r.param).toBeLessThan(TOL);
    expect(r.input).toBeLessThan(TOL);
  });
});
