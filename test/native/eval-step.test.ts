// One linear-probe step and one fine-tune step against PyTorch float64 (test/fixtures/gen/eval_step.py):
// the probe (per block: BatchNorm without affine in training mode, Linear, cross entropy, LARS) over
// two steps, and the fine-tuning step of a tiny ViT (mixup / CutMix of the batch with its reverse,
// label-smoothed mixed targets, soft-target cross entropy, backward, AdamW with layer-wise lr decay).
import { afterAll, describe, expect, it } from 'vitest';

import { GraphState } from '../../lib/graph/index.js';
import { buildFinetuneStep, type ClassifierSpec } from '../../lib/eval/finetune-model.js';
import { LinearProbeModel } from '../../lib/eval/linear-model.js';
import { applyMix, mixTargets, type MixDraw } from '../../lib/eval/mixup.js';
import { cpuEngine, loadFixture, relErr } from '../helpers/parity.js';

const fx = loadFixture('eval_step');
const engine = cpuEngine();
afterAll(() => engine.dispose());

describe('linear probe step (MAE protocol) against PyTorch', () => {
  it('matches losses, gradients, LARS updates and running statistics over two steps', async () => {
    const c = fx.cases.lp;
    const [S, L, B, D] = fx.shape('lp.features');
    const K = c.K;
    const model = new LinearProbeModel(engine, { layers: L, dim: D, classes: K, batch: B }, B, { kind: 'lars', momentum: c.momentum, trust: c.trust });
    try {
      await model.init(0);
      const init: Record<string, Float32Array> = {};
      for (let l = 0; l < L; l++) for (const p of ['weight', 'bias']) init[`probe.${l}.${p}`] = fx.f32(`lp.param.probe.${l}.${p}`);
      model.train.state.writeParams(init);
      const feats = fx.f32('lp.features');
      const labels = fx.i32('lp.labels');
      const lr = fx.f64('lp.lr');
      const loss = fx.f64('lp.loss');
      for (let s = 0; s < S; s++) {
        const r = await model.step(feats.slice(s * L * B * D, (s + 1) * L * B * D), labels.slice(s * B, (s + 1) * B), lr[s], 0);
        for (let l = 0; l < L; l++) expect(Math.abs(r.loss[l] - loss[s * L + l]) / loss[s * L + l]).toBeLessThan(1e-5);
        for (let l = 0; l < L; l++)
          for (const p of ['weight', 'bias']) {
            const name = `probe.${l}.${p}`;
            if (s === 0) expect(relErr(model.train.state.readGrad(name), fx.f64(`lp.grad.${name}`))).toBeLessThan(1e-5);
            const before = s === 0 ? fx.f64(`lp.param.${name}`) : fx.f64(`lp.step${s}.${name}`);
            const ref = fx.f64(`lp.step${s + 1}.${name}`);
            const out = model.train.state.readParam(name);
            // The update itself: a LARS step moves the weight by lr x trust ~ 1e-4 of its size, so f32
            // weights (ulp 6e-8 relative) resolve it to ~6e-4; a wrong trust ratio or momentum is off by far more.
            expect(relErr(Float64Array.from(out, (x, i) => x - before[i]), Float64Array.from(ref, (x, i) => x - before[i]))).toBeLessThan(2e-3);
            expect(relErr(out, ref)).toBeLessThan(1e-6);
          }
      }
      for (let l = 0; l < L; l++) {
        expect(relErr(model.train.state.readParam(`probe.${l}.bn.running_mean`), fx.f64('lp.run_mean').subarray(l * D, (l + 1) * D))).toBeLessThan(1e-6);
        expect(relErr(model.train.state.readParam(`probe.${l}.bn.running_var`), fx.f64('lp.run_var').subarray(l * D, (l + 1) * D))).toBeLessThan(1e-6);
      }
    } finally {
      model.dispose();
    }
  });
});

describe('fine-tune step (BEiT / MAE recipe) against PyTorch', () => {
  for (const name of ['ft_avg_mixup', 'ft_cls_cutmix']) {
    it(`matches the mixed batch, targets, loss, every gradient and the layer-decayed AdamW step: ${name}`, async () => {
      const c = fx.cases[name];
      const spec: ClassifierSpec = {
        vit: { img: c.img, patch: c.patch, dim: c.D, depth: c.depth, heads: c.heads, layerScale: 0.1, dropPath: 0 },
        classes: c.K,
        pool: c.pool ? 'avg' : 'cls',
        headInit: 2e-5,
      };
      const cg = buildFinetuneStep(spec, c.B, { layerDecay: c.layer_decay, clipGrad: 0 });
      using state = new GraphState(engine, cg);
      await state.initNative(0, ['train']);
      const params: Record<string, Float32Array> = {};
      for (const p of cg.params) params[p.name] = fx.f32(`${name}.param.${p.name}`);
      state.writeParams(params);
      const [y0, y1, x0, x1] = Array.from(fx.i32(`${name}.box`));
      const draw: MixDraw = c.mixup ? { kind: 'mixup', lam: c.lam } : { kind: 'cutmix', lam: c.lam, box: [y0, y1, x0, x1] };
      const images = fx.f32(`${name}.images`).slice();
      applyMix(images, c.B, c.img, draw);
      expect(relErr(images, fx.f64(`${name}.mixed`))).toBeLessThan(1e-6);
      const targets = mixTargets(fx.i32(`${name}.labels`), c.K, draw.lam, c.smoothing);
      expect(relErr(targets, fx.f64(`${name}.targets`))).toBeLessThan(1e-6);
      using program = state.program();
      const r = await program.run({ images, targets, hyper: Float32Array.from([c.lr, c.wd, 1]) });
      const loss = (r.outputs.loss as Float32Array)[0];
      expect(Math.abs(loss - fx.f64(`${name}.loss`)[0]) / fx.f64(`${name}.loss`)[0]).toBeLessThan(1e-5);
      for (const p of cg.params) {
        expect(relErr(state.readGrad(p.name), fx.f64(`${name}.grad.${p.name}`)), `grad ${p.name}`).toBeLessThan(2e-4);
        const before = fx.f64(`${name}.param.${p.name}`);
        const ref = fx.f64(`${name}.after.${p.name}`);
        const out = state.readParam(p.name);
        // AdamW's first step moves each element by ~lr x its layer's scale: a wrong scale is off by >= 35 %
        expect(relErr(Float64Array.from(out, (x, i) => x - before[i]), Float64Array.from(ref, (x, i) => x - before[i])), `update ${p.name}`).toBeLessThan(2e-3);
      }
    });
  }
});
