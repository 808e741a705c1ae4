// A 16 x 16 transpose of 32-bit words in sixteen zmm registers, shared by the kernels that repack
// bf16 pairs (one pair is one 32-bit word): attention_dpbf16.inc (Q^T, dO^T) and the AMX path of
// gemm_bf16.cpp (A as rows of k-pairs). Included only by files that compile AVX-512 code.
#pragma once

#include <immintrin.h>

namespace medic::cpu {
namespace {

// r[i] (row i of the block) becomes column i: three rounds of interleaves, the usual AVX-512
// transpose (words, then word pairs, then 128-bit lanes twice).
__attribute__((target("avx512f"), always_inline)) inline void transpose16(__m512 (&r)[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2)
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]), t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44), r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xee);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44), r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xee);
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i)
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88),
            t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
  for (int i = 0; i < 8; ++i)
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88), r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
}

}  // namespace
}  // namespace medic::cpu
