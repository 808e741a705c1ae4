// A pre-LN transformer block:
//   x = x + keep1 * gamma1 * Attn(LN1(x));  x = x + keep2 * gamma2 * MLP(LN2(x))
// gamma: LayerScale (init value, or none); keep: DropPath's per-sample factor from drop_path_mask
// (absent when the rate is 0 or no seed is given). Each residual is one scale_add (lib/graph/ops/residual).
import { type Graph, type InitSpec, type Value, dropPathMask, residualAdd, NORM_EPS } from '../graph/index.js';
import { Attention } from './attention.js';
import { constant, rescaleDivisor } from './init.js';
import { LayerNorm } from './layernorm.js';
import { Mlp } from './mlp.js';

export interface BlockConfig {
  dim: number;
  heads: number;
  mlpRatio?: number;
  qkvBias: 'qv' | 'full' | 'none';
  /** LayerScale init value (docs/METHOD.md, Student: 0.1), or null for none. */
  layerScale: number | null;
  /** DropPath rate of this block (0 = none). */
  dropPath: number;
  /** 1-based block index for BEiT's init rescale of attn.proj and mlp.fc2; null = no rescale. */
  layerId: number | null;
  act?: 'gelu' | 'quick_gelu';
  eps?: number;
  group?: 'train' | 'frozen';
  /** 'timm' (norm1, attn.qkv, gamma_1, mlp.fc1 ...) or 'openai' (ln_1, attn.in_proj_weight, mlp.c_fc ...). */
  naming?: 'timm' | 'openai';
  /** Init overrides of the block's linear layers (the teacher uses CLIP's own init). */
  init?: { qkv?: InitSpec; proj?: InitSpec; fc1?: InitSpec; fc1Bias?: InitSpec; fc2?: InitSpec; fc2Bias?: InitSpec };
}

export class Block {
  readonly norm1: LayerNorm;
  readonly attn: Attention;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;
  readonly gamma1: Value | null = null;
  readonly gamma2: Value | null = null;

  constructor(
    readonly g: Graph,
    readonly name: string,
    readonly cfg: BlockConfig,
  ) {
    const { dim, group } = cfg;
    const openai = cfg.naming === 'openai';
    const div = cfg.layerId ? rescaleDivisor(cfg.layerId) : 1;
    const eps = cfg.eps ?? NORM_EPS;
    this.norm1 = new LayerNorm(g, `${name}.${openai ? 'ln_1' : 'norm1'}`, dim, { eps, group });
    this.attn = new Attention(g, `${name}.attn`, {
      dim,
      heads: cfg.heads,
      qkvBias: cfg.qkvBias,
      projInitDivisor: div,
      group,
      naming: cfg.naming,
      init: { qkv: cfg.init?.qkv, proj: cfg.init?.proj },
    });
    this.norm2 = new LayerNorm(g, `${name}.${openai ? 'ln_2' : 'norm2'}`, dim, { eps, group });
    this.mlp = new Mlp(g, `${name}.mlp`, {
      dim,
      hidden: Math.round(dim * (cfg.mlpRatio ?? 4)),
      act: cfg.act ?? 'gelu',
      fc2InitDivisor: div,
      group,
      names: openai ? ['c_fc', 'c_proj'] : undefined,
      init: { fc1: cfg.init?.fc1, fc1Bias: cfg.init?.fc1Bias, fc2: cfg.init?.fc2, fc2Bias: cfg.init?.fc2Bias },
    });
    if (cfg.layerScale !== null) {
      this.gamma1 = g.param(`${name}.gamma_1`, [dim], constant(cfg.layerScale), { group });
      this.gamma2 = g.param(`${name}.gamma_2`, [dim], constant(cfg.layerScale), { group });
    }
  }

  /**
   * x [B, T, D] -> [B, T, D]. seed [2] i32 (per-step) enables DropPath; `stream` tells the blocks'
   * masks apart (each block uses streams 2*stream and 2*stream+1).
   */
  forward(x: Value, opts: { seed?: Value; stream?: number } = {}): Value {
    const g = this.g;
    const B = x.shape[0];
    const p = this.cfg.dropPath;
    const keep = (k: number): Value | null =>
      p > 0 && opts.seed
        ? dropPathMask(g, opts.seed, B, p, 2 * (opts.stream ?? 0) + k, `${this.name}.keep${k + 1}`)
        : null;
    // Under mixed precision the norms' outputs, read only by the qkv and fc1 gemms, are stored in
    // bf16, and so (following their inputs) are qkv, the attention output, fc1 and the two branch
    // outputs; the residual stream x stays f32.
    const act = g.activationDtype === 'bf16' ? 'bf16' : 'f32';
    const a = this.attn.forward(this.norm1.forward(x, act));
    x = residualAdd(g, x, a, this.gamma1, keep(0), `${this.name}.res1`);
    const m = this.mlp.forward(this.norm2.forward(x, act));
    return residualAdd(g, x, m, this.gamma2, keep(1), `${this.name}.res2`);
  }
}

/** Stochastic depth rates rising linearly from 0 to `max` over `depth` blocks (timm's linspace). */
export function dropPathRates(depth: number, max: number): number[] {
  return Array.from({ length: depth }, (_, i) => (depth > 1 ? (max * i) / (depth - 1) : 0));
}
