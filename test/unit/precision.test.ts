// --precision: what 'auto' picks from the device and the CPU features, and the errors for bad values.
import { describe, expect, it } from 'vitest';

import { computeCapability } from '../../lib/engine/device.js';
import { resolveConfig } from '../../lib/train/config.js';
import { precisionFor } from '../../lib/train/precision.js';

describe('--precision', () => {
  it('auto: bf16 where the CPU has bf16 dot products (AVX512-BF16 or AMX), else fp32', () => {
    expect(precisionFor('auto', false, 'avx2 fma avx512f avx512bw avx512bf16')).toMatchObject({
      precision: 'bf16',
      reason: expect.stringMatching(/auto: this CPU has bf16 dot products: avx512bf16/),
    });
    expect(precisionFor('auto', false, 'avx2 fma avx512f avx512bw amx-bf16').precision).toBe('bf16');
    expect(precisionFor('auto', false, 'avx2 fma avx512f avx512bw')).toMatchObject({
      precision: 'fp32',
      reason: expect.stringMatching(/no bf16 dot products/),
    });
  });

  it('auto on CUDA: bf16 from compute capability 8.0 (bf16 tensor cores), fp32 below or when unknown', () => {
    const h200 = 'cuda:0: NVIDIA H200, compute capability 9.0, 139.8 GiB, 132 SMs, driver CUDA 13.0, runtime 13.0';
    expect(precisionFor('auto', true, h200)).toEqual({
      precision: 'bf16',
      reason: 'precision bf16 (auto: compute capability 9.0, bf16 tensor cores; activations stored in bf16)',
    });
    expect(precisionFor('auto', true, 'cuda:0: A100, compute capability 8.0, 40.0 GiB').precision).toBe('bf16');
    expect(precisionFor('auto', true, 'cuda:0: V100, compute capability 7.0, 16.0 GiB')).toEqual({
      precision: 'fp32',
      reason: 'precision fp32 (auto: compute capability 7.0, below 8.0 there are no bf16 tensor cores)',
    });
    expect(precisionFor('auto', true, 'cuda:0: ?')).toMatchObject({
      precision: 'fp32',
      reason: expect.stringMatching(/compute capability unknown/),
    });
    expect(computeCapability('medic CUDA emulator (CPU), compute capability 9.0, 16.0 GiB')).toEqual({
      major: 9,
      minor: 0,
    });
    expect(computeCapability('cpu: 2 threads, avx2')).toBeNull();
  });

  it('explicit values are kept (bf16 without dot products runs emulated, and says so), on CUDA too', () => {
    expect(precisionFor('fp32', false, 'avx512bf16').precision).toBe('fp32');
    expect(precisionFor('bf16', false, 'avx2 fma')).toMatchObject({
      precision: 'bf16',
      reason: expect.stringMatching(/emulated in fp32, slower/),
    });
    expect(precisionFor('bf16', true, 'cuda:0: H200, compute capability 9.0')).toEqual({
      precision: 'bf16',
      reason: 'precision bf16 (--precision bf16; compute capability 9.0)',
    });
    expect(precisionFor('fp32', true, 'cuda:0: H200, compute capability 9.0').precision).toBe('fp32');
  });

  it('a bad value names the flag, what was expected and what was found', () => {
    expect(resolveConfig({}, { precision: 'auto' }).precision).toBe('auto');
    expect(() => resolveConfig({}, { precision: 'fp16' })).toThrow(
      /--precision: expected fp32, bf16 or auto, got "fp16"/,
    );
  });
});
