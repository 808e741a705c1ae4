// Init specs (docs/METHOD.md, Student; timm/BEiT conventions): Linear weights truncated normal
// std 0.02 (absolute bounds +-2 as torch's trunc_normal_), biases 0, LayerNorm weight 1 / bias 0, tokens and position
// embeddings truncated normal std 0.02. BEiT's fix_init_weight divides each block's attn.proj and
// mlp.fc2 weights by sqrt(2 * layer_id) (1-based): the same distribution as std 0.02 / s with bounds / s.
import type { InitSpec } from '../graph/index.js';

export const zeros: InitSpec = { kind: 'zeros' };
export const ones: InitSpec = { kind: 'ones' };

export function truncNormal(std = 0.02, divisor = 1): InitSpec {
  return { kind: 'trunc_normal', std: std / divisor, lo: -2 / divisor, hi: 2 / divisor };
}

/** Uniform on [-bound, bound): PyTorch's default Linear/Conv init is bound = 1 / sqrt(fan_in). */
export function uniform(bound: number): InitSpec {
  return { kind: 'uniform', lo: -bound, hi: bound };
}

/** Normal(0, std), effectively untruncated (bounds at +-6 std). */
export function normal(std: number): InitSpec {
  return { kind: 'trunc_normal', std, lo: -6 * std, hi: 6 * std };
}

export function constant(value: number): InitSpec {
  return { kind: 'const', value };
}

/** The divisor of BEiT's fix_init_weight for block `layerId` (1-based). */
export function rescaleDivisor(layerId: number): number {
  return Math.sqrt(2 * layerId);
}
