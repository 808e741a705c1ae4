// The fine-tune recipe's parameter groups (layer-wise lr decay, the no-weight-decay set), mixup /
// CutMix and their targets, top-k accuracy and the protocols' resolved defaults.
import { describe, expect, it } from 'vitest';

import { Graph } from '../../lib/graph/index.js';
import { Classifier } from '../../lib/eval/finetune-model.js';
import { resolveFinetune } from '../../lib/eval/finetune.js';
import { layerId, lrGroups, lrScaleVector } from '../../lib/eval/layer-decay.js';
import { resolveLinear } from '../../lib/eval/linear.js';
import { applyMix, betaSample, drawMix, mixTargets } from '../../lib/eval/mixup.js';
import { topK } from '../../lib/eval/protocols.js';
import { Rng } from '../../lib/util/rng.js';

function classifierParams(pool: 'avg' | 'cls') {
  const g = new Graph();
  new Classifier(g, {
    vit: { img: 16, patch: 4, dim: 8, depth: 2, heads: 2, layerScale: 0.1, dropPath: 0.1 },
    classes: 3,
    pool,
    headInit: 2e-5,
  });
  g.finalizeParams();
  return g.params;
}

describe('layer-wise lr decay and the weight-decay set', () => {
  it('groups every parameter of a depth-2 classifier as BEiT / MAE do (mean-pool head)', () => {
    const groups = lrGroups(classifierParams('avg'), 2, 0.5).map((g) => ({
      ...g,
      names: g.names.map((n) => n.replace('encoder.', '')),
    }));
    const block = (i: number) => [
      `blocks.${i}.norm1.weight`,
      `blocks.${i}.norm1.bias`,
      `blocks.${i}.attn.q_bias`,
      `blocks.${i}.attn.v_bias`,
      `blocks.${i}.attn.proj.bias`,
      `blocks.${i}.norm2.weight`,
      `blocks.${i}.norm2.bias`,
      `blocks.${i}.mlp.fc1.bias`,
      `blocks.${i}.mlp.fc2.bias`,
      `blocks.${i}.gamma_1`,
      `blocks.${i}.gamma_2`,
    ];
    const sorted = (a: string[]) => [...a].sort();
    expect(groups.map((g) => [g.layer, g.scale, g.decay])).toEqual([
      [0, 0.125, true],
      [0, 0.125, false],
      [1, 0.25, true],
      [1, 0.25, false],
      [2, 0.5, true],
      [2, 0.5, false],
      [3, 1, true],
      [3, 1, false],
    ]);
    expect(sorted(groups[0].names)).toEqual(['patch_embed.proj.weight']);
    expect(sorted(groups[1].names)).toEqual(sorted(['patch_embed.proj.bias', 'cls_token', 'pos_embed']));
    for (const i of [0, 1]) {
      expect(sorted(groups[2 + 2 * i].names)).toEqual(
        sorted([
          `blocks.${i}.attn.qkv.weight`,
          `blocks.${i}.attn.proj.weight`,
          `blocks.${i}.mlp.fc1.weight`,
          `blocks.${i}.mlp.fc2.weight`,
        ]),
      );
      expect(sorted(groups[3 + 2 * i].names)).toEqual(sorted(block(i)));
    }
    expect(sorted(groups[6].names)).toEqual(['head.weight']);
    expect(sorted(groups[7].names)).toEqual(sorted(['fc_norm.weight', 'fc_norm.bias', 'head.bias']));
  });

  it('the CLS head keeps the final norm (last layer) and builds no fc_norm', () => {
    const names = classifierParams('cls').map((p) => p.name);
    expect(names).toContain('encoder.norm.weight');
    expect(names.some((n) => n.includes('fc_norm'))).toBe(false);
    expect(layerId('encoder.norm.weight', 2)).toBe(3);
    expect(layerId('encoder.blocks.1.mlp.fc2.bias', 2)).toBe(2);
    expect(layerId('encoder.pos_embed', 2)).toBe(0);
  });

  it('the flat lr-scale vector follows the parameter layout', () => {
    const params = classifierParams('avg');
    const v = lrScaleVector(params, 2, 0.5);
    expect(v.length).toBe(params.filter((p) => p.group === 'train').reduce((a, p) => a + p.numel, 0));
    for (const p of params) {
      const expected = 0.5 ** (3 - layerId(p.name, 2));
      expect(v[p.offset]).toBe(Math.fround(expected));
      expect(v[p.offset + p.numel - 1]).toBe(Math.fround(expected));
    }
  });
});

describe('mixup and CutMix', () => {
  it('mixes each image with its reverse, and the targets the same way, with smoothing', () => {
    const B = 4;
    const S = 2;
    const imgs = Float32Array.from({ length: B * 3 * S * S }, (_, i) => Math.floor(i / 12)); // image b is all b
    applyMix(imgs, B, S, { kind: 'mixup', lam: 0.75 });
    expect(Array.from(imgs.filter((_, i) => i % 12 === 0))).toEqual([
      0.75 * 0 + 0.25 * 3,
      0.75 * 1 + 0.25 * 2,
      0.75 * 2 + 0.25 * 1,
      0.75 * 3 + 0.25 * 0,
    ]);
    const t = mixTargets([0, 1, 2, 0], 3, 0.75, 0.3);
    // off = 0.1, on = 0.8: row 0 = 0.75 * (0.8, 0.1, 0.1) + 0.25 * (0.8, 0.1, 0.1)
    expect(Array.from(t.subarray(0, 3)).map((x) => +x.toFixed(6))).toEqual([0.8, 0.1, 0.1]);
    expect(Array.from(t.subarray(3, 6)).map((x) => +x.toFixed(6))).toEqual([0.1, 0.625, 0.275]); // 0.75 * (0.1, 0.8, 0.1) + 0.25 * (0.1, 0.1, 0.8)
    for (let b = 0; b < B; b++) expect(t.subarray(b * 3, b * 3 + 3).reduce((a, x) => a + x, 0)).toBeCloseTo(1, 6);
  });

  it('CutMix pastes the reversed batch inside the box only, and lam is the area kept', () => {
    const B = 2;
    const S = 8;
    const imgs = Float32Array.from({ length: B * S * S }, (_, i) => (i < S * S ? 1 : 2)); // one channel
    const draw = drawMix({ mixup: 0, cutmix: 1, prob: 1, switchProb: 0.5, smoothing: 0 }, S, 3, 11);
    expect(draw.kind).toBe('cutmix');
    const [y0, y1, x0, x1] = draw.box!;
    applyMix(imgs, B, S, draw);
    let pasted = 0;
    for (let y = 0; y < S; y++)
      for (let x = 0; x < S; x++) {
        const inBox = y >= y0 && y < y1 && x >= x0 && x < x1;
        expect(imgs[y * S + x]).toBe(inBox ? 2 : 1);
        pasted += +inBox;
      }
    expect(draw.lam).toBeCloseTo(1 - pasted / (S * S), 12);
  });

  it('draws are keyed by (seed, step), choose CutMix about half the time, and Beta(0.8) has mean 1/2', () => {
    const cfg = { mixup: 0.8, cutmix: 1, prob: 1, switchProb: 0.5, smoothing: 0.1 };
    expect(drawMix(cfg, 224, 1, 5)).toEqual(drawMix(cfg, 224, 1, 5));
    expect(drawMix(cfg, 224, 1, 5)).not.toEqual(drawMix(cfg, 224, 1, 6));
    let cut = 0;
    for (let s = 0; s < 2000; s++) cut += +(drawMix(cfg, 224, 7, s).kind === 'cutmix');
    expect(cut / 2000).toBeGreaterThan(0.45);
    expect(cut / 2000).toBeLessThan(0.55);
    const rng = new Rng(1, 2);
    let sum = 0;
    let sq = 0;
    const n = 20000;
    for (let i = 0; i < n; i++) {
      const x = betaSample(rng, 0.8);
      sum += x;
      sq += x * x;
    }
    // Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)) = 0.0962 for a = 0.8
    expect(sum / n).toBeCloseTo(0.5, 1);
    expect(sq / n - (sum / n) ** 2).toBeCloseTo(1 / (4 * 2.6), 2);
    expect(drawMix({ ...cfg, mixup: 0, cutmix: 0 }, 224, 1, 1)).toEqual({ kind: 'none', lam: 1 });
  });
});

describe('top-k and the protocol defaults', () => {
  it('counts top-1 and top-5 hits (ties: the lower class first) and omits top-5 with <= 5 classes', () => {
    const K = 7;
    const logits = new Float32Array([7, 6, 5, 4, 3, 2, 1, /**/ 1, 2, 3, 4, 5, 6, 7, /**/ 0, 0, 0, 0, 0, 0, 0]);
    expect(topK(logits, new Int32Array([0, 1, 6]), K)).toEqual({ top1: 1 / 3, top5: 1 / 3 });
    expect(topK(logits, new Int32Array([4, 1, 6]), K)).toEqual({ top1: 0, top5: 1 / 3 });
    expect(topK(new Float32Array([0, 1, 1, 0]), new Int32Array([1, 1]), 2)).toEqual({ top1: 0.5 });
  });

  it('resolves the small-data and paper defaults', () => {
    expect(resolveLinear({}, 9000)).toMatchObject({
      optimizer: 'sgd',
      batchSize: 256,
      epochs: 90,
      lr: 0.1,
      weightDecay: 0,
    });
    expect(resolveLinear({}, 1_281_167)).toMatchObject({ optimizer: 'lars', batchSize: 16384, trust: 0.001 });
    expect(resolveLinear({ batchSize: 512 }, 300)).toMatchObject({ batchSize: 300 });
    expect(() => resolveLinear({ epochs: 0 }, 10)).toThrow(/--epochs: expected a positive integer, got 0/);
    expect(resolveFinetune({}, 9000, 28)).toMatchObject({
      epochs: 20,
      batchSize: 128,
      cropScale: 0.5,
      layerDecay: 0.65,
      smoothing: 0.1,
      mixup: 0.8,
      cutmix: 1,
    });
    expect(resolveFinetune({}, 1_281_167, 224)).toMatchObject({
      epochs: 100,
      batchSize: 1024,
      cropScale: 0.08,
      lr: 5e-4,
      weightDecay: 0.05,
      dropPath: 0.1,
    });
    expect(() => resolveFinetune({ layerDecay: 1.5 }, 10, 28)).toThrow(
      /--layer-decay: expected a number in \(0, 1\], got 1.5/,
    );
  });
});
