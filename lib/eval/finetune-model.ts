// The fine-tuning classifier: the student ViT (same parameter names as pretraining, so the weights
// copy by name) with a head, as a training step (drop path, soft-target cross entropy, backward, AdamW
// with layer-wise lr decay in one native call) and an evaluation forward (logits).
//   pool 'avg': mean of the patch tokens -> fc_norm (LayerNorm) -> head; the final norm is not built
//               (MAE with global_pool, timm's global_pool='avg');
//   pool 'cls': final norm -> CLS -> head (timm's global_pool='token').
// The head and fc_norm are named encoder.head / encoder.fc_norm, so the timm export strips one prefix.
import type { Engine, Program } from '../engine/index.js';
import {
  Graph,
  GraphState,
  adamw,
  compile,
  gradNorm,
  sliceRows,
  type CompiledGraph,
  type Value,
} from '../graph/index.js';
import { crossEntropy, meanTokens } from '../graph/ops/classify.js';
import { VisionTransformer, type VitConfig } from '../models/index.js';
import { LayerNorm, Linear } from '../nn/index.js';
import { lrScaleVector } from './layer-decay.js';

export interface ClassifierSpec {
  vit: VitConfig;
  classes: number;
  pool: 'avg' | 'cls';
  /** Std of the head's trunc-normal init (MAE: 2e-5). */
  headInit: number;
}

export class Classifier {
  readonly vit: VisionTransformer;
  readonly fcNorm: LayerNorm | null;
  readonly head: Linear;

  constructor(
    readonly g: Graph,
    readonly spec: ClassifierSpec,
  ) {
    const D = spec.vit.dim;
    this.vit = new VisionTransformer(g, spec.vit, { finalNorm: spec.pool === 'cls' });
    this.fcNorm = spec.pool === 'avg' ? new LayerNorm(g, 'encoder.fc_norm', D, { eps: 1e-6 }) : null;
    // trunc_normal_(std) with torch's absolute bounds +-2 (never reached at this std)
    this.head = new Linear(g, 'encoder.head', D, spec.classes, {
      weightInit: { kind: 'trunc_normal', std: spec.headInit, lo: -2, hi: 2 },
    });
  }

  /** images [B, Ch, S, S] -> logits: the root [B, 1, K] and its [B, K] view. */
  forward(images: Value, seed?: Value): { root: Value; logits: Value } {
    const g = this.g;
    const B = images.shape[0];
    const x = this.vit.encode(images, { seed });
    const f = this.fcNorm
      ? this.fcNorm.forward(meanTokens(g, x, 1, 'head.pool'))
      : this.vit.norm!.forward(sliceRows(g, x, 0, 1, 'head.cls'));
    const root = this.head.forward(f);
    return { root, logits: g.view(root, [B, this.spec.classes], 0, 'logits2d') };
  }
}

/** Inputs images, targets [B, K] (soft), seed [2] i32 (drop path), hyper [3]; outputs loss, correct, grad_norm. */
export function buildFinetuneStep(
  s: ClassifierSpec,
  batch: number,
  o: { layerDecay: number; clipGrad: number },
): CompiledGraph {
  const g = new Graph();
  const net = new Classifier(g, s);
  const S = s.vit.img;
  const images = g.input('images', [batch, s.vit.chans ?? 3, S, S]);
  const targets = g.input('targets', [batch, s.classes]);
  const seed = g.input('seed', [2], 'i32');
  const hyper = g.input('hyper', [3]);
  const { logits } = net.forward(images, seed);
  const ce = crossEntropy(g, logits, targets, { hint: 'ce' });
  g.markOutput(ce.loss, 'loss');
  g.markOutput(ce.correct, 'correct');
  const lrScale = g.constant(
    'lr_scale',
    [g.params.filter((p) => p.group === 'train').reduce((a, p) => a + p.numel, 0)],
    lrScaleVector(g.params, s.vit.depth, o.layerDecay),
  );
  g.backward([{ value: logits, grad: ce.dlogits }]);
  const norm = gradNorm(g);
  adamw(g, hyper, norm, { maxNorm: o.clipGrad, lrScale });
  g.markOutput(norm, 'grad_norm');
  return compile(g);
}

/** Input images; output logits [B, 1, K]. No drop path. */
export function buildClassifierEval(s: ClassifierSpec, batch: number): CompiledGraph {
  const g = new Graph();
  const net = new Classifier(g, { ...s, vit: { ...s.vit, dropPath: 0 } });
  const S = s.vit.img;
  const images = g.input('images', [batch, s.vit.chans ?? 3, S, S]);
  g.noGrad(() => g.markOutput(net.forward(images).root, 'logits'));
  return compile(g);
}

export interface Program2 {
  cg: CompiledGraph;
  state: GraphState;
  program: Program;
}

export function bind(engine: Engine, cg: CompiledGraph): Program2 {
  const state = new GraphState(engine, cg);
  return { cg, state, program: state.program() };
}

export function disposeAll(...ps: (Program2 | null | undefined)[]): void {
  for (const p of ps) {
    p?.program.dispose();
    p?.state.dispose();
  }
}
