// LayerNorm over the last dim: affine (weight 1, bias 0) or parameter-free (teacher targets).
import { type Graph, type Value, layerNorm, NORM_EPS } from '../graph/index.js';
import { ones, zeros } from './init.js';

export class LayerNorm {
  readonly weight: Value | null;
  readonly bias: Value | null;

  /** Params `<name>.weight`, `<name>.bias` unless affine is false. eps: 1e-6 (student), 1e-5 (CLIP). */
  constructor(
    readonly g: Graph,
    readonly name: string,
    readonly dim: number,
    readonly cfg: { eps?: number; affine?: boolean; group?: 'train' | 'frozen' } = {},
  ) {
    const affine = cfg.affine ?? true;
    const group = cfg.group ?? 'train';
    this.weight = affine ? g.param(`${name}.weight`, [dim], ones, { group }) : null;
    this.bias = affine ? g.param(`${name}.bias`, [dim], zeros, { group }) : null;
  }

  /** dtype: how the output is stored (default f32). */
  forward(x: Value, dtype: 'f32' | 'bf16' = 'f32'): Value {
    return layerNorm(this.g, x, this.weight, this.bias, { eps: this.cfg.eps ?? NORM_EPS, hint: this.name, dtype });
  }
}
