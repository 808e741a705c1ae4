// A teacher with timm's VisionTransformer layout (supervised ViTs, DeiT, DINO, this project's own
// student exports and fine-tuned classifiers), frozen, forward only:
//   patch_embed.proj (conv with bias) -> prepend cls_token -> + pos_embed -> [norm_pre] ->
//   blocks (norm1 -> attn.qkv (bias) -> attn.proj [* ls1.gamma] -> +; norm2 -> mlp.fc1 -> GELU ->
//   mlp.fc2 [* ls2.gamma] -> +), LayerNorm eps 1e-6.
// Output: block `layer`'s tokens [B, 1+N, Dt], before the final norm (which is not built, nor the head).
// Params: `teacher.<timm name>`, except LayerScale's ls1.gamma / ls2.gamma, which our Block names
// gamma_1 / gamma_2 (the checkpoint reader maps them, lib/io/teacher.ts).
import { type Graph, type Value, add, attentionProbs, concatRows, linear, patchify, NORM_EPS } from '../graph/index.js';
import { Block, LayerNorm, normal } from '../nn/index.js';
import type { TeacherTower } from './clip.js';

export interface TimmTeacherConfig {
  img: number;
  patch: number;
  width: number;
  layers: number;
  heads: number;
  mlpRatio?: number;
  /** Blocks with LayerScale (ls1.gamma, ls2.gamma). */
  layerScale?: boolean;
  /** A LayerNorm before the blocks (timm's pre_norm=True: norm_pre). */
  normPre?: boolean;
}

export class TimmVisionTower implements TeacherTower {
  readonly patchWeight: Value;
  readonly patchBias: Value;
  readonly clsToken: Value;
  readonly posEmbed: Value;
  readonly normPre: LayerNorm | null;
  readonly blocks: Block[];
  readonly numPatches: number;

  constructor(
    readonly g: Graph,
    readonly cfg: TimmTeacherConfig,
    readonly name = 'teacher',
  ) {
    const { img, patch, width } = cfg;
    if (img % patch) throw new Error(`timm teacher: image ${img} is not divisible by patch ${patch}`);
    this.numPatches = (img / patch) ** 2;
    const group = 'frozen';
    // Without a checkpoint this architecture is not used (the random teacher is CLIP's); the init
    // only gives every param a defined value.
    const init = normal(0.02);
    this.patchWeight = g.param(`${name}.patch_embed.proj.weight`, [width, 3, patch, patch], init, { group });
    this.patchBias = g.param(`${name}.patch_embed.proj.bias`, [width], init, { group });
    this.clsToken = g.param(`${name}.cls_token`, [1, 1, width], init, { group });
    this.posEmbed = g.param(`${name}.pos_embed`, [1, 1 + this.numPatches, width], init, { group });
    this.normPre = cfg.normPre ? new LayerNorm(g, `${name}.norm_pre`, width, { eps: NORM_EPS, group }) : null;
    this.blocks = Array.from(
      { length: cfg.layers },
      (_, i) =>
        new Block(g, `${name}.blocks.${i}`, {
          dim: width,
          heads: cfg.heads,
          mlpRatio: cfg.mlpRatio,
          qkvBias: 'full',
          layerScale: cfg.layerScale ? 1 : null,
          dropPath: 0,
          layerId: null,
          act: 'gelu',
          eps: NORM_EPS,
          group,
          naming: 'timm',
        }),
    );
  }

  forward(img: Value): Value {
    return this.forwardTaps(img).tokens;
  }

  /** As ClipVisionTower.forwardTaps: block `layer`'s output (1-based, default the last) and its attention map. */
  forwardTaps(img: Value, opts: { layer?: number; probs?: boolean } = {}): { tokens: Value; probs: Value | null } {
    const g = this.g;
    const layer = opts.layer ?? this.blocks.length;
    if (!Number.isInteger(layer) || layer < 1 || layer > this.blocks.length)
      throw new Error(
        `timm teacher: layer ${layer} is not a block of this ${this.blocks.length}-block teacher (1..${this.blocks.length})`,
      );
    return g.noGrad(() => {
      const D = this.cfg.width;
      const x = patchify(g, img, this.cfg.patch, 1, 'teacher.patches');
      const w = g.view(this.patchWeight, [D, x.shape[2]]);
      const e = linear(g, x, w, this.patchBias, { hint: 'teacher.patch_embed' });
      let t = add(
        g,
        concatRows(g, [this.clsToken, e], 'teacher.tokens'),
        g.view(this.posEmbed, [1 + this.numPatches, D]),
        { inPlace: true, hint: 'teacher.pos_add' },
      );
      if (this.normPre) t = this.normPre.forward(t);
      for (const b of this.blocks.slice(0, layer)) t = b.forward(t);
      const probs = opts.probs
        ? attentionProbs(g, this.blocks[layer - 1].attn.lastQkv!, this.cfg.heads, { hint: 'teacher.attn_probs' })
        : null;
      return { tokens: t, probs };
    });
  }
}
