// GELU (erf form) for the GEMM epilogues: the scalar definition and the AVX-512 vector form shared by
// the fp32 gemm (gemm.cpp) and the bf16 gemm (gemm_bf16.cpp). Included only by those kernels' files.
#pragma once

#include <immintrin.h>

#include <cmath>

// A subset of every AVX-512 target the gemm files compile with, so these inline into each of them.
#define MEDIC_GELU_AVX512 __attribute__((target("avx512f,avx512vl,fma")))

namespace medic::cpu {
namespace {

// ---- GELU, erf form: x * Phi(x) = x * 0.5 * erfc(-x / sqrt2) --------------------------------
// erfc via Numerical Recipes' erfcc (fractional error < 1.2e-7 for z >= 0) and a Cephes-style exp.
// Using erfc of |z| keeps the negative tail relative-accurate (1 + erf(x) cancels there).
constexpr float kRsqrt2 = 0.70710678118654752f;
constexpr float kErfc[10] = {-1.26551223f, 1.00002368f,  0.37409196f, 0.09678418f,  -0.18628806f,
                             0.27886807f,  -1.13520398f, 1.48851587f, -0.82215223f, 0.17087277f};
constexpr float kExp[6] = {1.9875691500E-4f, 1.3981999507E-3f, 8.3334519073E-3f,
                           4.1665795894E-2f, 1.6666665459E-1f, 5.0000001201E-1f};

static inline float gelu_scalar(float x) { return x * 0.5f * std::erfc(-x * kRsqrt2); }

MEDIC_GELU_AVX512 static inline __m512 exp_avx512(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.f)), _mm512_set1_ps(-87.f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
  x = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  x = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), x);
  __m512 y = _mm512_set1_ps(kExp[0]);
  for (int i = 1; i < 6; ++i) y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(kExp[i]));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(y, n);
}

// GELU is one long dependency chain (two polynomials, a division, exp): four vectors go through it
// side by side so their latencies overlap.
MEDIC_GELU_AVX512 static inline void gelu4_avx512(__m512 (&x)[4]) {
  __m512 z[4], t[4], p[4];
#pragma GCC unroll 4
  for (int v = 0; v < 4; ++v) {
    z[v] = _mm512_mul_ps(_mm512_abs_ps(x[v]), _mm512_set1_ps(kRsqrt2));
    // t = 1 / (1 + z/2): rcp14 plus one Newton step (relative error ~2^-27, below fp32 rounding).
    __m512 d = _mm512_fmadd_ps(z[v], _mm512_set1_ps(0.5f), _mm512_set1_ps(1.f)), r = _mm512_rcp14_ps(d);
    t[v] = _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.f)));
    p[v] = _mm512_set1_ps(kErfc[9]);
  }
  for (int i = 8; i >= 0; --i)
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) p[v] = _mm512_fmadd_ps(p[v], t[v], _mm512_set1_ps(kErfc[i]));
#pragma GCC unroll 4
  for (int v = 0; v < 4; ++v) {
    __m512 h = _mm512_mul_ps(_mm512_mul_ps(t[v], exp_avx512(_mm512_fnmadd_ps(z[v], z[v], p[v]))), _mm512_set1_ps(0.5f));
    __mmask16 neg = _mm512_cmp_ps_mask(x[v], _mm512_setzero_ps(), _CMP_LT_OQ);  // Phi = h below 0, 1 - h above
    x[v] = _mm512_mul_ps(x[v], _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(1.f), h), h));
  }
}

}  // namespace
}  // namespace medic::cpu
