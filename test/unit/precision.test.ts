// --precision: what 'auto' picks from the device and the CPU features, and the errors for bad values.
import { describe, expect, it } from 'vitest';

import { resolveConfig } from '../../lib/train/config.js';
import { precisionFor } from '../../lib/train/precision.js';

describe('--precision', () => {
  it('auto: bf16 where the CPU has bf16 dot products (AVX512-BF16 or AMX), else fp32; fp32 on CUDA', () => {
    expect(precisionFor('auto', false, 'avx2 fma avx512f avx512bw avx512bf16')).toMatchObject({
      precision: 'bf16',
      reason: expect.stringMatching(/auto: this CPU has bf16 dot products: avx512bf16/),
    });
    expect(precisionFor('auto', false, 'avx2 fma avx512f avx512bw amx-bf16').precision).toBe('bf16');
    expect(precisionFor('auto', false, 'avx2 fma avx512f avx512bw')).toMatchObject({
      precision: 'fp32',
      reason: expect.stringMatching(/no bf16 dot products/),
    });
    expect(precisionFor('auto', true, '')).toMatchObject({ precision: 'fp32', reason: expect.stringMatching(/CUDA/) });
  });

  it('explicit values are kept (bf16 without dot products runs emulated, and says so); bf16 on CUDA is refused', () => {
    expect(precisionFor('fp32', false, 'avx512bf16').precision).toBe('fp32');
    expect(precisionFor('bf16', false, 'avx2 fma')).toMatchObject({
      precision: 'bf16',
      reason: expect.stringMatching(/emulated in fp32, slower/),
    });
    expect(() => precisionFor('bf16', true, '')).toThrow(/--precision bf16: not supported on CUDA yet/);
  });

  it('a bad value names the flag, what was expected and what was found', () => {
    expect(resolveConfig({}, { precision: 'auto' }).precision).toBe('auto');
    expect(() => resolveConfig({}, { precision: 'fp16' })).toThrow(
      /--precision: expected fp32, bf16 or auto, got "fp16"/,
    );
  });
});
