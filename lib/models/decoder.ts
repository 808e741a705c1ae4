// MAE-style pixel decoder (docs/METHOD.md, Heads and decoder):
//   Linear(D, Dd) on the encoder's 1+V outputs -> CLS row + visible rows scattered back to their grid
//   slots, masked slots = a learnable decoder mask token -> + fixed 2-D sin-cos pos (CLS row zeros)
//   -> blocks (qkv bias, no LayerScale, no DropPath) -> LN -> rows of the masked patches -> Linear(Dd, P).
import {
  type Graph,
  type Value,
  add,
  concatRows,
  gatherRows,
  scatterToGrid,
  sliceRows,
  NORM_EPS,
} from '../graph/index.js';
import { Block, LayerNorm, Linear, truncNormal } from '../nn/index.js';
import { sincos2d } from './sincos.js';

export interface DecoderConfig {
  /** Encoder width D. */
  inDim: number;
  /** Decoder width Dd (docs/METHOD.md, Heads and decoder: 512), depth (8), heads (16). */
  dim: number;
  depth: number;
  heads: number;
  mlpRatio?: number;
  /** Patches per side and pixels per patch P (patch*patch*chans). */
  grid: number;
  patchPixels: number;
}

export class PixelDecoder {
  readonly embed: Linear;
  readonly maskToken: Value;
  readonly pos: Value;
  readonly blocks: Block[];
  readonly norm: LayerNorm;
  readonly pred: Linear;

  constructor(
    readonly g: Graph,
    readonly cfg: DecoderConfig,
    name = 'decoder',
  ) {
    const { dim, grid } = cfg;
    this.embed = new Linear(g, `${name}.embed`, cfg.inDim, dim);
    this.maskToken = g.param(`${name}.mask_token`, [1, 1, dim], truncNormal());
    this.pos = g.constant(`${name}.pos_embed`, [1 + grid * grid, dim], sincos2d(dim, grid, grid));
    this.blocks = Array.from(
      { length: cfg.depth },
      (_, i) =>
        new Block(g, `${name}.blocks.${i}`, {
          dim,
          heads: cfg.heads,
          mlpRatio: cfg.mlpRatio,
          qkvBias: 'full',
          layerScale: null,
          dropPath: 0,
          layerId: null,
        }),
    );
    this.norm = new LayerNorm(g, `${name}.norm`, dim, { eps: NORM_EPS });
    this.pred = new Linear(g, `${name}.pred`, dim, cfg.patchPixels);
  }

  /**
   * enc [B, 1+V, D] (CLS first, visible patches in the order of `visible` [B, V] i32); mask [B, N] u8;
   * maskedRows [B, M] i32 = 1 + the masked patch indices. -> predictions [B, M, P].
   */
  forward(enc: Value, visible: Value, mask: Value, maskedRows: Value): Value {
    const g = this.g;
    const V = visible.shape[1];
    const N = this.cfg.grid ** 2;
    const h = this.embed.forward(enc);
    const cls = sliceRows(g, h, 0, 1, 'decoder.cls');
    const vis = sliceRows(g, h, 1, V, 'decoder.visible');
    const gridTokens = scatterToGrid(g, vis, visible, mask, this.maskToken, N, 'decoder.grid');
    let x = add(g, concatRows(g, [cls, gridTokens], 'decoder.tokens'), this.pos, {
      inPlace: true,
      hint: 'decoder.pos_add',
    });
    for (const b of this.blocks) x = b.forward(x);
    x = this.norm.forward(x);
    return this.pred.forward(gatherRows(g, x, maskedRows, 'decoder.masked'));
  }
}
