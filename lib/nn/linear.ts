// Linear(in, out): weight [out, in] (torch convention; gemm trans_b=1), optional bias [out].
import { type Graph, type InitSpec, type Value, linear } from '../graph/index.js';
import { truncNormal, zeros } from './init.js';

export interface LinearConfig {
  bias?: boolean;
  weightInit?: InitSpec;
  biasInit?: InitSpec;
  group?: 'train' | 'frozen';
  /** Full param names when they do not follow `<name>.weight` (OpenAI CLIP's in_proj_weight). */
  weightName?: string;
  biasName?: string;
}

export class Linear {
  readonly weight: Value;
  readonly bias: Value | null;

  /** Params `<name>.weight` and `<name>.bias`. */
  constructor(
    readonly g: Graph,
    readonly name: string,
    readonly inFeatures: number,
    readonly outFeatures: number,
    cfg: LinearConfig = {},
  ) {
    const group = cfg.group ?? 'train';
    this.weight = g.param(
      cfg.weightName ?? `${name}.weight`,
      [outFeatures, inFeatures],
      cfg.weightInit ?? truncNormal(),
      { group },
    );
    this.bias =
      cfg.bias === false
        ? null
        : g.param(cfg.biasName ?? `${name}.bias`, [outFeatures], cfg.biasInit ?? zeros, { group });
  }

  /** y = x W^T + b over the last dim of x; act 'gelu' fuses GELU into the gemm. */
  forward(x: Value, opts: { act?: 'none' | 'gelu'; bias?: Value | null } = {}): Value {
    const b = opts.bias !== undefined ? opts.bias : this.bias;
    return linear(this.g, x, this.weight, b, { act: opts.act, hint: this.name });
  }
}
