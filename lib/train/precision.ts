// --precision: which arithmetic the training step uses (native/include/medic/ops.h, Precision).
// 'auto' takes bf16 where the hardware multiplies bf16 pairs natively (the CPU's AVX512-BF16 or AMX
// dot products), else fp32. CUDA keeps fp32 storage for now: its gemms already multiply in bf16 on
// the tensor cores, and its other kernels do not read bf16 activations yet.
import type { Engine } from '../engine/index.js';
import type { PretrainConfig } from './config.js';

export type Precision = 'fp32' | 'bf16';

/** The precision a run uses and why, for its start line. Throws for bf16 on CUDA. */
export function resolvePrecision(
  want: PretrainConfig['precision'],
  engine: Engine,
): { precision: Precision; reason: string } {
  const cuda = engine.device.kind !== 'cpu';
  return precisionFor(want, cuda, cuda ? '' : engine.describe());
}

/** resolvePrecision from the device kind and the CPU feature string (cpu_features_string()). */
export function precisionFor(
  want: PretrainConfig['precision'],
  cuda: boolean,
  features: string,
): { precision: Precision; reason: string } {
  const dot = /avx512bf16|amx-bf16/.test(features);
  if (cuda) {
    if (want === 'bf16')
      throw new Error(
        '--precision bf16: not supported on CUDA yet (its kernels other than gemm do not read bf16 activations); use --precision fp32 or auto',
      );
    return {
      precision: 'fp32',
      reason: `precision fp32 (${want === 'auto' ? 'auto: ' : ''}CUDA stores activations in fp32 for now; its gemms multiply in bf16 on the tensor cores)`,
    };
  }
  if (want === 'fp32') return { precision: 'fp32', reason: 'precision fp32 (--precision fp32)' };
  if (want === 'bf16')
    return {
      precision: 'bf16',
      reason: dot
        ? 'precision bf16 (--precision bf16; bf16 dot products on this CPU)'
        : 'precision bf16 (--precision bf16), but this CPU has no bf16 dot products: emulated in fp32, slower than --precision fp32',
    };
  return dot
    ? {
        precision: 'bf16',
        reason:
          'precision bf16 (auto: this CPU has bf16 dot products: ' +
          features
            .split(' ')
            .filter((f) => /bf16/.test(f))
            .join(', ') +
          ')',
      }
    : { precision: 'fp32', reason: 'precision fp32 (auto: this CPU has no bf16 dot products, AVX512-BF16 or AMX)' };
}
