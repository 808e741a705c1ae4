// MLP: Linear(D, hidden) -> activation -> Linear(hidden, D).
// 'gelu' (erf) is fused into fc1's gemm epilogue (act=1, pre-activation kept for the backward);
// 'quick_gelu' (CLIP) is a separate op.
import { type Graph, type Value, quickGelu } from '../graph/index.js';
import { Linear } from './linear.js';
import type { InitSpec } from '../graph/index.js';
import { truncNormal } from './init.js';

export interface MlpConfig {
  dim: number;
  hidden: number;
  act: 'gelu' | 'quick_gelu';
  /** Divisor of fc2's weight init std (BEiT's sqrt(2 * layer_id)). */
  fc2InitDivisor?: number;
  group?: 'train' | 'frozen';
  /** Param names of the two layers: timm fc1/fc2 (default) or CLIP's c_fc/c_proj. */
  names?: [string, string];
  /** Init overrides (default: truncated normal 0.02, biases 0). */
  init?: { fc1?: InitSpec; fc1Bias?: InitSpec; fc2?: InitSpec; fc2Bias?: InitSpec };
}

export class Mlp {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(
    readonly g: Graph,
    readonly name: string,
    readonly cfg: MlpConfig,
  ) {
    const [n1, n2] = cfg.names ?? ['fc1', 'fc2'];
    const i = cfg.init ?? {};
    this.fc1 = new Linear(g, `${name}.${n1}`, cfg.dim, cfg.hidden, {
      group: cfg.group,
      weightInit: i.fc1,
      biasInit: i.fc1Bias,
    });
    this.fc2 = new Linear(g, `${name}.${n2}`, cfg.hidden, cfg.dim, {
      group: cfg.group,
      weightInit: i.fc2 ?? truncNormal(0.02, cfg.fc2InitDivisor ?? 1),
      biasInit: i.fc2Bias,
    });
  }

  forward(x: Value): Value {
    // QuickGELU (the frozen teacher, built with gradients off) overwrites fc1's output, read by nothing else.
    const h =
      this.cfg.act === 'gelu'
        ? this.fc1.forward(x, { act: 'gelu' })
        : quickGelu(this.g, this.fc1.forward(x), `${this.name}.act`, { inPlace: !this.g.gradEnabled });
    return this.fc2.forward(h);
  }
}
