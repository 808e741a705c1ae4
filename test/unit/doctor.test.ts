// `medic-native doctor`'s report: the native binary it found and the kernel of the CPU's bf16 products.
import { describe, expect, it } from 'vitest';

import { doctorReport } from '../../lib/cli/doctor.js';

describe('doctor', () => {
  it('names the kernel of bf16 products from the CPU features: AMX tiles, vdpbf16ps, or the fp32 fallback', () => {
    const cpu = doctorReport().binaries.find((b) => b.variant === 'cpu');
    expect(cpu?.path).toBeTruthy();
    const features = cpu?.cpuFeatures ?? '';
    // AMX needs AVX512-BF16 beside it (the tiles reuse that kernel's packing and epilogue) and the
    // kernel's grant of the tile state, which a sandbox may refuse: then vdpbf16ps
    const expected = !features.includes('avx512bf16')
      ? /^fp32-fallback$/
      : features.includes('amx-bf16') && process.env.MEDIC_CPU_AMX !== '0'
        ? /^(amx-bf16|avx512bf16)$/
        : /^avx512bf16$/;
    expect(cpu?.bf16Kernel).toMatch(expected);
  });
});
