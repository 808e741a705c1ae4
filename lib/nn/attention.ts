// Multi-head self-attention: qkv Linear(D, 3D) -> fused attention -> proj Linear(D, D).
//
// qkv bias variants:
//   'qv'   BEiT/MEDiC student: learnable q_bias and v_bias [D], the k bias fixed at zero; the [3D] bias
//          is assembled each step as concat(q_bias, 0, v_bias) (its backward copies the two windows out);
//   'full' a plain learnable [3D] bias (teacher, decoder);
//   'none' no bias.
import { type Graph, type Value, attention, concat1d } from '../graph/index.js';
import { Linear } from './linear.js';
import type { InitSpec } from '../graph/index.js';
import { truncNormal, zeros } from './init.js';

export interface AttentionConfig {
  dim: number;
  heads: number;
  qkvBias: 'qv' | 'full' | 'none';
  /** Divisor of the proj weight's init std (BEiT's sqrt(2 * layer_id)); 1 = none. */
  projInitDivisor?: number;
  group?: 'train' | 'frozen';
  /** Param naming: 'timm' (qkv, proj) or 'openai' (in_proj_weight/in_proj_bias, out_proj). */
  naming?: 'timm' | 'openai';
  /** Init overrides (default: truncated normal 0.02, biases 0). */
  init?: { qkv?: InitSpec; proj?: InitSpec };
}

export class Attention {
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly qBias: Value | null = null;
  readonly vBias: Value | null = null;
  /** The packed qkv of the latest forward() (a tap for the attention map, see attentionProbs). */
  lastQkv: Value | null = null;

  constructor(
    readonly g: Graph,
    readonly name: string,
    readonly cfg: AttentionConfig,
  ) {
    const { dim, group } = cfg;
    if (dim % cfg.heads) throw new Error(`${name}: dim ${dim} is not divisible by ${cfg.heads} heads`);
    const openai = cfg.naming === 'openai';
    this.qkv = new Linear(g, openai ? `${name}.in_proj` : `${name}.qkv`, dim, 3 * dim, {
      bias: cfg.qkvBias === 'full',
      group,
      weightName: openai ? `${name}.in_proj_weight` : undefined,
      weightInit: cfg.init?.qkv,
      biasName: openai ? `${name}.in_proj_bias` : undefined,
    });
    if (cfg.qkvBias === 'qv') {
      this.qBias = g.param(`${name}.q_bias`, [dim], zeros, { group });
      this.vBias = g.param(`${name}.v_bias`, [dim], zeros, { group });
    }
    this.proj = new Linear(g, openai ? `${name}.out_proj` : `${name}.proj`, dim, dim, {
      group,
      weightInit: cfg.init?.proj ?? truncNormal(0.02, cfg.projInitDivisor ?? 1),
    });
  }

  /** x [B, T, D] -> [B, T, D]. */
  forward(x: Value): Value {
    const g = this.g;
    const bias =
      this.qBias && this.vBias
        ? concat1d(g, [this.qBias, this.cfg.dim, this.vBias], `${this.name}.qkv_bias`)
        : undefined;
    const qkv = this.qkv.forward(x, { bias });
    this.lastQkv = qkv;
    const o = attention(g, qkv, this.cfg.heads, { hint: `${this.name}.core` });
    return this.proj.forward(o);
  }
}
