// The student: a ViT (BEiT-style block: qkv with q/v bias only, LayerScale, DropPath) with two
// masked encodings.
//   sparse (MEDiC as published): embed all N patches, add pos, gather the V visible ones (visible
//          [B, V] i32, spatial order), prepend CLS (+ its pos) -> 1+V tokens -> blocks -> final LN.
//   dense  (MaskDistill): masked patch embeddings replaced by a learnable mask token (mask [B, N] u8),
//          + pos, prepend CLS -> 1+N tokens -> blocks -> final LN.
// Patch embedding is patchify (order 1 = the conv weight's (ch, py, px) flattening) + one gemm, with
// the weight stored as the conv's [D, Ch, p, p] (timm name patch_embed.proj.weight).
import {
  type Graph,
  type Value,
  add,
  concatRows,
  gatherRows,
  linear,
  maskFill,
  patchify,
  NORM_EPS,
} from '../graph/index.js';
import { Block, LayerNorm, dropPathRates, truncNormal, zeros } from '../nn/index.js';

export interface VitConfig {
  img: number;
  patch: number;
  chans?: number;
  dim: number;
  depth: number;
  heads: number;
  mlpRatio?: number;
  /** LayerScale init (docs/METHOD.md, Student: 0.1); null or 0 disables LayerScale (as timm's init_values=0). */
  layerScale?: number | null;
  /** The last block's DropPath rate (rates rise linearly from 0; docs/METHOD.md, Student: 0.1). */
  dropPath?: number;
}

/** The student sizes: timm's ViT-Ti/S/B, and two small ones for tests and the digits default. */
export type ModelPreset = 'tiny' | 'small' | 'base' | 'mini' | 'micro';

export interface ModelShape {
  dim: number;
  depth: number;
  heads: number;
}

export const studentPresets: Record<ModelPreset, ModelShape> = {
  micro: { dim: 32, depth: 2, heads: 2 }, // tests
  mini: { dim: 96, depth: 6, heads: 3 }, // the embedded default on 28x28 digits
  tiny: { dim: 192, depth: 12, heads: 3 },
  small: { dim: 384, depth: 12, heads: 6 },
  base: { dim: 768, depth: 12, heads: 12 },
};

export class VisionTransformer {
  readonly patchWeight: Value;
  readonly patchBias: Value;
  readonly clsToken: Value;
  readonly posEmbed: Value;
  readonly maskToken: Value | null;
  readonly blocks: Block[];
  /** The final LayerNorm; null when built without it (a mean-pool classifier normalises after pooling). */
  readonly norm: LayerNorm | null;
  readonly numPatches: number;

  /**
   * `withMaskToken`: register the dense encoding's mask token; `finalNorm` false: no final LayerNorm
   * (fine-tuning with a mean-pool head, as MAE). Params are named `<name>.<timm name>`.
   */
  constructor(
    readonly g: Graph,
    readonly cfg: VitConfig,
    opts: { name?: string; withMaskToken?: boolean; finalNorm?: boolean } = {},
  ) {
    const name = opts.name ?? 'encoder';
    const { img, patch, dim } = cfg;
    const chans = cfg.chans ?? 3;
    if (img % patch) throw new Error(`vit: image ${img} is not divisible by patch ${patch}`);
    this.numPatches = (img / patch) ** 2;
    this.patchWeight = g.param(`${name}.patch_embed.proj.weight`, [dim, chans, patch, patch], truncNormal());
    this.patchBias = g.param(`${name}.patch_embed.proj.bias`, [dim], zeros);
    this.clsToken = g.param(`${name}.cls_token`, [1, 1, dim], truncNormal());
    this.maskToken = opts.withMaskToken ? g.param(`${name}.mask_token`, [1, 1, dim], truncNormal()) : null;
    this.posEmbed = g.param(`${name}.pos_embed`, [1, 1 + this.numPatches, dim], truncNormal());
    const rates = dropPathRates(cfg.depth, cfg.dropPath ?? 0.1);
    this.blocks = rates.map(
      (p, i) =>
        new Block(g, `${name}.blocks.${i}`, {
          dim,
          heads: cfg.heads,
          mlpRatio: cfg.mlpRatio,
          qkvBias: 'qv',
          // 0 means no LayerScale, as timm's init_values=0 does (an export must load strictly in timm)
          layerScale: cfg.layerScale === undefined ? 0.1 : cfg.layerScale || null,
          dropPath: p,
          layerId: i + 1,
        }),
    );
    this.norm = opts.finalNorm === false ? null : new LayerNorm(g, `${name}.norm`, dim, { eps: NORM_EPS });
  }

  /** img [B, Ch, S, S] -> patch embeddings + pos [B, N, D]. */
  private embedPatches(img: Value, mask?: Value): Value {
    const g = this.g;
    const D = this.cfg.dim;
    const x = patchify(g, img, this.cfg.patch, 1, 'encoder.patches');
    const w = g.view(this.patchWeight, [D, this.patchWeight.shape.slice(1).reduce((a, b) => a * b, 1)]);
    let e = linear(g, x, w, this.patchBias, { hint: 'encoder.patch_embed' });
    if (mask) e = maskFill(g, e, mask, this.maskToken!, 'encoder.mask_fill');
    return add(g, e, g.view(this.posEmbed, [this.numPatches, D], D), { inPlace: true, hint: 'encoder.pos_add' });
  }

  /** CLS + its position embedding, [1, 1, D]. */
  private clsRow(): Value {
    const g = this.g;
    return add(g, this.clsToken, g.view(this.posEmbed, [this.cfg.dim], 0), { hint: 'encoder.cls_pos' });
  }

  private run(x: Value, seed?: Value): Value {
    this.blocks.forEach((b, i) => {
      x = b.forward(x, { seed, stream: i });
    });
    if (!this.norm) throw new Error('vit: built without the final norm (finalNorm: false)');
    return this.norm.forward(x);
  }

  /**
   * No masking, through the blocks, before the final norm: -> [B, 1+N, D]. With `seed`, DropPath is
   * on (training). `onBlock(i, x)` sees block i's output right after the block, before the next block
   * may update the stream in place (gradients off): the evaluation taps of several blocks.
   */
  encode(img: Value, opts: { seed?: Value; onBlock?: (i: number, x: Value) => void } = {}): Value {
    let x = concatRows(this.g, [this.clsRow(), this.embedPatches(img)], 'encoder.tokens');
    this.blocks.forEach((b, i) => {
      x = b.forward(x, { seed: opts.seed, stream: i });
      opts.onBlock?.(i, x);
    });
    return x;
  }

  /** Sparse encoding: -> [B, 1+V, D] after the final LN. */
  forwardSparse(img: Value, visible: Value, seed?: Value): Value {
    const vis = gatherRows(this.g, this.embedPatches(img), visible, 'encoder.visible');
    return this.run(concatRows(this.g, [this.clsRow(), vis], 'encoder.tokens'), seed);
  }

  /** Dense encoding: -> [B, 1+N, D] after the final LN. */
  forwardDense(img: Value, mask: Value, seed?: Value): Value {
    if (!this.maskToken) throw new Error('vit: the dense encoding needs withMaskToken');
    return this.run(concatRows(this.g, [this.clsRow(), this.embedPatches(img, mask)], 'encoder.tokens'), seed);
  }

  /**
   * No masking (evaluation): -> [B, 1+N, D]. Built with gradients off: no backward rules, and each
   * residual add runs in place on the stream (a gradient graph copies the stream before every add).
   */
  forward(img: Value): Value {
    return this.g.noGrad(() => this.run(concatRows(this.g, [this.clsRow(), this.embedPatches(img)], 'encoder.tokens')));
  }
}
