// --precision: which arithmetic the training step uses (native/include/medic/ops.h, Precision).
// 'auto' takes bf16 where the hardware multiplies bf16 pairs natively: on CUDA, tensor cores with bf16
// inputs (compute capability 8.0 and up: Ampere, Hopper); on the CPU, the AVX512-BF16 or AMX dot
// products. Elsewhere fp32. Every CUDA kernel reads and writes the bf16 activations itself; their
// parity with the CPU is checked on the CUDA emulator (docs/GPU.md), and the bf16 step's speed on a
// GPU is measured by bench/gpu-check.sh.
import { computeCapability } from '../engine/device.js';
import type { Engine } from '../engine/index.js';
import type { PretrainConfig } from './config.js';

export type Precision = 'fp32' | 'bf16';

/** The precision a run uses and why, for its start line. */
export function resolvePrecision(
  want: PretrainConfig['precision'],
  engine: Engine,
): { precision: Precision; reason: string } {
  return precisionFor(want, engine.device.kind !== 'cpu', engine.describe());
}

/**
 * resolvePrecision from the device kind and its description: the CPU feature string
 * (cpu_features_string()) on the CPU, the device description (with its compute capability) on CUDA.
 */
export function precisionFor(
  want: PretrainConfig['precision'],
  cuda: boolean,
  features: string,
): { precision: Precision; reason: string } {
  if (cuda) return cudaPrecision(want, features);
  const dot = /avx512bf16|amx-bf16/.test(features);
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

// The gemm kernels use bf16 mma.sync and cp.async, sm_80 instructions: below that no CUDA build runs
// (CMake builds sm_80 and sm_90), so the capability decides 'auto' only between fp32 and bf16 storage.
function cudaPrecision(want: PretrainConfig['precision'], describe: string): { precision: Precision; reason: string } {
  const cc = computeCapability(describe);
  const ccText = cc ? `compute capability ${cc.major}.${cc.minor}` : 'compute capability unknown';
  if (want === 'fp32')
    return { precision: 'fp32', reason: 'precision fp32 (--precision fp32; the gemms still multiply in bf16 on CUDA)' };
  if (want === 'bf16') return { precision: 'bf16', reason: `precision bf16 (--precision bf16; ${ccText})` };
  return cc && cc.major >= 8
    ? {
        precision: 'bf16',
        reason: `precision bf16 (auto: ${ccText}, bf16 tensor cores; activations stored in bf16)`,
      }
    : { precision: 'fp32', reason: `precision fp32 (auto: ${ccText}, below 8.0 there are no bf16 tensor cores)` };
}
