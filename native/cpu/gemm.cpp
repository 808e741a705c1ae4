// gemm: C = act(alpha * op(A) op(B) + bias) (+ C when acc=1), fp32 on the CPU.
//
// Shape letters: M rows of C, N columns of C, K the inner dim, nb the batch count (1 unless B has
// more than 2 dims). op(A) is [M, K], op(B) is [K, N], C and preact are [M, N] per batch.
//
// Structure (BLIS / Goto): for each NC-wide column block of C and each KC-deep slice of K, op(B)'s
// slice is packed into NR-wide panels (k-major, zero padded); for each MC-tall row block, op(A)'s
// slice is packed into MR-tall panels; then a register-blocked MR x NR micro-kernel runs over all
// panel pairs. Packing absorbs all four transpose combinations, so one micro-kernel serves them.
// The KC slice of B panel sits in L1 while A panels stream from L2.
//
// The epilogue is fused into the micro-kernel's write-back: the first K slice writes
// alpha*AB (+ C when acc=1); later slices add to it; the last slice adds the bias, and with act=1
// the finished tile (still in L1) is copied to preact and replaced by its GELU.
//
// Instruction sets are chosen at run time by cpu_isa() (isa.h; MEDIC_CPU_ISA=avx2|scalar caps it):
// AVX-512 12x32 (24 zmm accumulators), AVX2+FMA 6x16 (12 ymm accumulators), and a portable
// scalar 4x8 kernel. Code paths are compiled with target attributes, never -march=native.
//
// Threads: each thread owns a rectangle of C (a split along M and/or N chosen to keep every thread
// busy with whole micro-tiles) and runs the blocked loops on it with its own packing buffers.
// Packing is then partly redundant across threads (each packs the B columns / A rows it needs),
// which costs O((M + N) K) against O(M N K) of compute, and needs no barrier. Products under 96^3
// multiply-adds run on the calling thread alone. The K summation order of every element depends only
// on K, so results are bit-identical for any thread count.
//
// Measured on Zen 5 (2 threads, ViT-B shapes): on par with OpenBLAS 0.3.21's AVX-512 kernels, and the
// AVX2 path on par with OpenBLAS's Haswell kernels (bench/gemm_vs_openblas.ts).

// GCC 12's AVX-512 headers build results from _mm512_undefined_ps() and then warn about it.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gelu_simd.h"
#include "gemm_bf16.h"
#include "medic/engine.h"
#include "medic/op_args.h"
#include "medic/ops.h"
#include "medic/threads.h"

#include "isa.h"

namespace medic::cpu {
namespace {

// One micro-tile: acc = sum_k a[k*MR + i] * b[k*NR + j] over kc; then for i < m, j < n:
//   c[i*ldc + j] = alpha * acc (+ c when load_c) (+ bias[j] when bias != nullptr).
using MicroFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int m, int n, float alpha,
                         bool load_c, const float* bias);
// GELU of one finished m x n tile (row stride ld for both): pre = c; c = gelu(c).
using GeluFn = void (*)(float* c, float* pre, int64_t ld, int m, int n);

// One instruction set's micro-kernel and block sizes (cpu_isa() in isa.h picks the set).
struct GemmKernels {
  int mr, nr;
  int64_t kc, mc, nc;  // block limits (kc in K, mc rows, nc columns)
  MicroFn micro;
  GeluFn gelu;
};

static void gelu_tile_scalar(float* c, float* pre, int64_t ld, int m, int n) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      pre[i * ld + j] = c[i * ld + j];
      c[i * ld + j] = gelu_scalar(c[i * ld + j]);
    }
}

// ---- AVX-512 ----------------------------------------------------------------------------------
MEDIC_AVX512 static void gelu_tile_avx512(float* c, float* pre, int64_t ld, int m, int n) {
  const int nv = (n + 15) / 16, slots = m * nv;  // one slot = 16 columns of one row
  for (int s0 = 0; s0 < slots; s0 += 4) {
    __m512 x[4];
    float* at[4];
    __mmask16 mk[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      const int s = std::min(s0 + v, slots - 1), i = s / nv, j = 16 * (s % nv);
      at[v] = c + i * ld + j;
      mk[v] = s0 + v >= slots ? 0
              : n - j >= 16   ? static_cast<__mmask16>(0xFFFF)
                              : static_cast<__mmask16>((1u << (n - j)) - 1);
      x[v] = _mm512_maskz_loadu_ps(mk[v], at[v]);
      float* pp = pre + i * ld + j;
      // preact is read only by the backward, much later: full aligned vectors bypass the cache
      // (no read-for-ownership of lines that are entirely overwritten).
      if (mk[v] == 0xFFFF && (reinterpret_cast<uintptr_t>(pp) & 63) == 0)
        _mm512_stream_ps(pp, x[v]);
      else
        _mm512_mask_storeu_ps(pp, mk[v], x[v]);
    }
    gelu4_avx512(x);
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) _mm512_mask_storeu_ps(at[v], mk[v], x[v]);
  }
}

template <int MR, int NV>  // MR rows x NV zmm columns (NR = 16 NV)
MEDIC_AVX512 static void micro_avx512_t(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int m, int n,
                                        float alpha, bool load_c, const float* bias) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  // The C tile is read (or its lines allocated) after the k loop: fetch it now, behind the FMAs.
  for (int i = 0; i < m; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16 * NV - 1), _MM_HINT_T0);
  }
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      __m512 ai = _mm512_set1_ps(a[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
    }
    a += MR;
    b += 16 * NV;
  }
  __mmask16 mk[NV];
  __m512 bs[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    int r = n - 16 * v;
    mk[v] = r >= 16 ? static_cast<__mmask16>(0xFFFF) : r > 0 ? static_cast<__mmask16>((1u << r) - 1) : 0;
    bs[v] = bias ? _mm512_maskz_loadu_ps(mk[v], bias + 16 * v) : _mm512_setzero_ps();
  }
  const __m512 va = _mm512_set1_ps(alpha);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
    float* cr = c + i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      __m512 x = _mm512_mul_ps(acc[i][v], va);
      if (load_c) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mk[v], cr + 16 * v));
      if (bias) x = _mm512_add_ps(x, bs[v]);
      _mm512_mask_storeu_ps(cr + 16 * v, mk[v], x);
    }
  }
}

// ---- AVX2 + FMA -------------------------------------------------------------------------------
MEDIC_AVX2 static inline __m256 exp_avx2(__m256 x) {
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.f)), _mm256_set1_ps(-87.f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(kExp[0]);
  for (int i = 1; i < 6; ++i) y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(kExp[i]));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.f)));
  // 2^n for n in [-126, 127]: build the exponent bits directly.
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

MEDIC_AVX2 static inline __m256i tail_mask_avx2(int64_t n) {  // lanes j < n set
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<int64_t>(n, 8))),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

MEDIC_AVX2 static inline void gelu4_avx2(__m256 (&x)[4]) {  // as gelu4_avx512
  __m256 z[4], t[4], p[4];
#pragma GCC unroll 4
  for (int v = 0; v < 4; ++v) {
    z[v] = _mm256_mul_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), x[v]), _mm256_set1_ps(kRsqrt2));
    // t = 1 / (1 + z/2): rcp (12 bits) plus one Newton step (~2^-23 relative).
    __m256 d = _mm256_fmadd_ps(z[v], _mm256_set1_ps(0.5f), _mm256_set1_ps(1.f)), r = _mm256_rcp_ps(d);
    t[v] = _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.f)));
    p[v] = _mm256_set1_ps(kErfc[9]);
  }
  for (int i = 8; i >= 0; --i)
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) p[v] = _mm256_fmadd_ps(p[v], t[v], _mm256_set1_ps(kErfc[i]));
#pragma GCC unroll 4
  for (int v = 0; v < 4; ++v) {
    __m256 h = _mm256_mul_ps(_mm256_mul_ps(t[v], exp_avx2(_mm256_fnmadd_ps(z[v], z[v], p[v]))), _mm256_set1_ps(0.5f));
    __m256 neg = _mm256_cmp_ps(x[v], _mm256_setzero_ps(), _CMP_LT_OQ);
    x[v] = _mm256_mul_ps(x[v], _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(1.f), h), h, neg));
  }
}

// vmaskmovps stores are microcoded on AMD: masked loads/stores only for the ragged right edge.
MEDIC_AVX2 static void gelu_tile_avx2(float* c, float* pre, int64_t ld, int m, int n) {
  const int nv = (n + 7) / 8, slots = m * nv;  // one slot = 8 columns of one row
  const bool ragged = n % 8 != 0;
  for (int s0 = 0; s0 < slots; s0 += 4) {
    __m256 x[4], pre_x[4];
    float *at[4], *pp[4];
    __m256i mk[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      const int s = std::min(s0 + v, slots - 1), i = s / nv, j = 8 * (s % nv);
      at[v] = c + i * ld + j;
      pp[v] = pre + i * ld + j;
      mk[v] = s0 + v >= slots ? _mm256_setzero_si256() : tail_mask_avx2(n - j);
      x[v] = pre_x[v] = ragged ? _mm256_maskload_ps(at[v], mk[v]) : _mm256_loadu_ps(at[v]);
    }
    gelu4_avx2(x);
    // (slots past the end repeat the last slot: recomputed, and stored only through a zero mask)
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      if (!ragged && s0 + v < slots) {
        _mm256_storeu_ps(pp[v], pre_x[v]);
        _mm256_storeu_ps(at[v], x[v]);
      } else {
        _mm256_maskstore_ps(pp[v], mk[v], pre_x[v]);
        _mm256_maskstore_ps(at[v], mk[v], x[v]);
      }
    }
  }
}

MEDIC_AVX2 static void micro_avx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int m, int n,
                                  float alpha, bool load_c, const float* bias) {
  constexpr int MR = 6;
  __m256 acc[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int i = 0; i < m; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 15), _MM_HINT_T0);
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      __m256 ai = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += MR;
    b += 16;
  }
  const __m256i m0 = tail_mask_avx2(n), m1 = tail_mask_avx2(n - 8);
  const __m256 va = _mm256_set1_ps(alpha);
  __m256 bias0 = _mm256_setzero_ps(), bias1 = _mm256_setzero_ps();
  if (bias) {
    bias0 = _mm256_maskload_ps(bias, m0);
    bias1 = _mm256_maskload_ps(bias + 8, m1);
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
    float* cr = c + i * ldc;
    __m256 v0 = _mm256_mul_ps(acc[i][0], va), v1 = _mm256_mul_ps(acc[i][1], va);
    if (load_c) {  // (vmaskmovps only on the ragged edge: it is slow on AMD)
      v0 = _mm256_add_ps(v0, n >= 16 ? _mm256_loadu_ps(cr) : _mm256_maskload_ps(cr, m0));
      v1 = _mm256_add_ps(v1, n >= 16 ? _mm256_loadu_ps(cr + 8) : _mm256_maskload_ps(cr + 8, m1));
    }
    if (bias) {
      v0 = _mm256_add_ps(v0, bias0);
      v1 = _mm256_add_ps(v1, bias1);
    }
    if (n >= 16) {
      _mm256_storeu_ps(cr, v0);
      _mm256_storeu_ps(cr + 8, v1);
    } else {
      _mm256_maskstore_ps(cr, m0, v0);
      _mm256_maskstore_ps(cr + 8, m1, v1);
    }
  }
}

// ---- Portable scalar --------------------------------------------------------------------------
static void micro_scalar(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int m, int n, float alpha,
                         bool load_c, const float* bias) {
  constexpr int MR = 4, NR = 8;
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k, a += MR, b += NR)
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      float v = alpha * acc[i][j];
      if (load_c) v += c[i * ldc + j];
      if (bias) v += bias[j];
      c[i * ldc + j] = v;
    }
}

// Block sizes: the KC x NR B panel (40 KiB at KC=320) fills most of a 48 KiB L1 but the A panel streams;
// MC x KC of A (300 KiB) sits in L2. Measured on Zen 5: 12x32, 14x32, 8x48 and 6x64 tiles all run
// at the same speed, and the C prefetch matters more than KC between 256 and 512.
const GemmKernels kAvx512{12, 32, 320, 240, 3072, micro_avx512_t<12, 2>, gelu_tile_avx512};
const GemmKernels kAvx2{6, 16, 256, 144, 3072, micro_avx2, gelu_tile_avx2};
const GemmKernels kScalar{4, 8, 256, 128, 2048, micro_scalar, gelu_tile_scalar};

const GemmKernels& pick_kernels() { return *pick_isa_variant(&kScalar, &kAvx2, &kAvx512); }

// ---- Problem, packing, blocked loops ----------------------------------------------------------
struct Gemm {
  const float *A, *B, *bias;
  float *C, *P;  // P: preact (act=1 only)
  int64_t M, N, K;
  bool ta, tb, acc;
  int act;
  float alpha;
  int64_t lda, ldb;  // row strides of A and B as stored; C and P have row stride N
};

// dst[k*w + s] = src[s*ld + k] for s < ns, k < kc; lanes ns..w-1 zero. The transposing half of
// packing (rows of A, or rows of a [N, K] B, become k-major panels): 4x4 SSE transposes, which
// every x86-64 has, so one routine serves every ISA path.
static void pack_streams(const float* src, int64_t ld, int ns, int w, int64_t kc, float* dst) {
  int s = 0;
  for (; s + 4 <= ns; s += 4) {
    const float *r0 = src + s * ld, *r1 = r0 + ld, *r2 = r1 + ld, *r3 = r2 + ld;
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
      __m128 a = _mm_loadu_ps(r0 + k), b = _mm_loadu_ps(r1 + k), c = _mm_loadu_ps(r2 + k), d = _mm_loadu_ps(r3 + k);
      _MM_TRANSPOSE4_PS(a, b, c, d);
      float* o = dst + k * w + s;
      _mm_storeu_ps(o, a);
      _mm_storeu_ps(o + w, b);
      _mm_storeu_ps(o + 2 * w, c);
      _mm_storeu_ps(o + 3 * w, d);
    }
    for (; k < kc; ++k) {
      float* o = dst + k * w + s;
      o[0] = r0[k], o[1] = r1[k], o[2] = r2[k], o[3] = r3[k];
    }
  }
  for (; s < ns; ++s)
    for (int64_t k = 0; k < kc; ++k) dst[k * w + s] = src[s * ld + k];
  for (; s < w; ++s)
    for (int64_t k = 0; k < kc; ++k) dst[k * w + s] = 0.f;
}

// dst[k*w + j] = src[k*ld + j] for j < n, k < kc; lanes n..w-1 zero. The copying half of packing.
static void pack_rows(const float* src, int64_t ld, int n, int w, int64_t kc, float* dst) {
  for (int64_t k = 0; k < kc; ++k, src += ld, dst += w) {
    if (n == w) {
      std::memcpy(dst, src, sizeof(float) * w);
    } else {
      for (int j = 0; j < n; ++j) dst[j] = src[j];
      for (int j = n; j < w; ++j) dst[j] = 0.f;
    }
  }
}

// op(A)[i0 .. i0+mc, k0 .. k0+kc] into MR-row panels: dst[panel][k][i], rows past M zero.
static void pack_a(const Gemm& g, const float* A, int64_t i0, int64_t mc, int64_t k0, int64_t kc, int mr, float* dst) {
  for (int64_t ip = 0; ip < mc; ip += mr, dst += mr * kc) {
    const int m = static_cast<int>(std::min<int64_t>(mr, mc - ip));
    if (g.ta)  // A stored [K, M]: each k is a contiguous run of rows
      pack_rows(A + k0 * g.lda + i0 + ip, g.lda, m, mr, kc, dst);
    else  // A stored [M, K]
      pack_streams(A + (i0 + ip) * g.lda + k0, g.lda, m, mr, kc, dst);
  }
}

// op(B)[k0 .. k0+kc, j0 .. j0+nc] into NR-column panels: dst[panel][k][j], columns past N zero.
static void pack_b(const Gemm& g, const float* B, int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr, float* dst) {
  for (int64_t jp = 0; jp < nc; jp += nr, dst += nr * kc) {
    const int n = static_cast<int>(std::min<int64_t>(nr, nc - jp));
    if (!g.tb)  // B stored [K, N]: each k is a contiguous run of columns
      pack_rows(B + k0 * g.ldb + j0 + jp, g.ldb, n, nr, kc, dst);
    else  // B stored [N, K] (a Linear weight)
      pack_streams(B + (j0 + jp) * g.ldb + k0, g.ldb, n, nr, kc, dst);
  }
}

// Packing buffers, 64-byte aligned, one pair per pool thread. They are sized on the calling thread
// before the pool runs (so an allocation failure throws there, not on a worker), grown on demand
// and kept by that calling thread for later calls (thread_local: two callers never share them).
struct PackBuf {
  float* p = nullptr;
  size_t cap = 0;
  PackBuf() = default;
  PackBuf(const PackBuf&) = delete;
  PackBuf& operator=(const PackBuf&) = delete;
  float* reserve(size_t n) {
    if (n > cap) {
      std::free(p);
      size_t bytes = (n * sizeof(float) + 63) & ~size_t(63);
      p = static_cast<float*>(std::aligned_alloc(64, bytes));
      cap = p ? n : 0;
      if (!p) throw Error("gemm: out of memory for packing buffers (" + std::to_string(bytes) + " bytes)");
    }
    return p;
  }
  ~PackBuf() { std::free(p); }
};
struct Workspace {
  std::vector<std::unique_ptr<PackBuf>> a, b;  // [tid]
};
thread_local Workspace t_ws;

// Block size for `total` items split into equal blocks of at most `limit`, rounded up to `unit`.
static int64_t even_block(int64_t total, int64_t limit, int64_t unit) {
  int64_t nblk = (total + limit - 1) / limit;
  int64_t b = (total + nblk - 1) / nblk;
  return std::min(limit, (b + unit - 1) / unit * unit);
}

// C[m0..m1, n0..n1] of one batch, single-threaded. A, B, C, P point at the batch.
// apack holds isa.kc x isa.mc floats, bpack isa.kc x (N rounded up to NR, at most isa.nc).
static void gemm_rect(const Gemm& g, const GemmKernels& isa, const float* A, const float* B, float* C, float* P,
                      int64_t m0, int64_t m1, int64_t n0, int64_t n1, float* apack, float* bpack) {
  if (m0 >= m1 || n0 >= n1) return;
  const int mr = isa.mr, nr = isa.nr;
  const int64_t kcb = even_block(g.K, isa.kc, 1);
  const int64_t mcb = even_block(m1 - m0, isa.mc, mr);
  const int64_t ncb = even_block(n1 - n0, isa.nc, nr);
  for (int64_t jc = n0; jc < n1; jc += ncb) {
    const int64_t nc = std::min(ncb, n1 - jc);
    for (int64_t pc = 0; pc < g.K; pc += kcb) {
      const int64_t kc = std::min(kcb, g.K - pc);
      const bool first = pc == 0, last = pc + kc >= g.K;
      pack_b(g, B, pc, kc, jc, nc, nr, bpack);
      for (int64_t ic = m0; ic < m1; ic += mcb) {
        const int64_t mc = std::min(mcb, m1 - ic);
        pack_a(g, A, ic, mc, pc, kc, mr, apack);
        for (int64_t jr = 0; jr < nc; jr += nr) {
          const int n = static_cast<int>(std::min<int64_t>(nr, nc - jr));
          const float* bias = last && g.bias ? g.bias + jc + jr : nullptr;
          for (int64_t ir = 0; ir < mc; ir += mr) {
            const int m = static_cast<int>(std::min<int64_t>(mr, mc - ir));
            float* c = C + (ic + ir) * g.N + jc + jr;
            isa.micro(kc, apack + ir * kc, bpack + jr * kc, c, g.N, m, n, g.alpha, !first || g.acc, bias);
            if (last && g.act == 1) isa.gelu(c, P + (ic + ir) * g.N + jc + jr, g.N, m, n);
          }
        }
      }
    }
  }
  if (g.act == 1) _mm_sfence();  // order the streaming preact stores before the pool's hand-back
}

// K == 0: op(A) op(B) is all zeros, C = act(bias) (+ C).
static void gemm_k0(const Gemm& g, int64_t rows) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < g.N; ++j) {
      float v = (g.acc ? g.C[r * g.N + j] : 0.f) + (g.bias ? g.bias[j] : 0.f);
      if (g.act == 1) {
        g.P[r * g.N + j] = v;
        v = gelu_scalar(v);
      }
      g.C[r * g.N + j] = v;
    }
}

}  // namespace

void gemm(const OpCall& call) {
  if (gemm_is_bf16(call)) return gemm_bf16(call);  // gemm_bf16.cpp
  gemm_f32(call);
}

void gemm_f32(const OpCall& call) {
  const GemmDims d = gemm_dims(call);  // shared with the CUDA kernel (medic/op_args.h)
  Gemm g{};
  g.ta = d.ta;
  g.tb = d.tb;
  g.acc = d.acc;
  g.act = d.act;
  g.alpha = d.alpha;
  g.A = call.x(0).f32();
  g.B = call.x(1).f32();
  g.bias = call.has_in(2) ? call.x(2).f32() : nullptr;
  g.C = call.y(0).f32();
  g.P = g.act == 1 ? call.y(1).f32() : nullptr;
  g.M = d.M;
  g.N = d.N;
  g.K = d.K;
  g.lda = d.lda;
  g.ldb = d.ldb;
  const int64_t nb = d.nb;
  if (g.M == 0 || g.N == 0 || nb == 0) return;
  if (g.K == 0) return gemm_k0(g, nb * g.M);

  const GemmKernels& isa = pick_kernels();
  // Threads: none for small products (the pool's wake-up costs more than the work).
  ThreadPool* pool = call.ctx ? call.ctx->pool : nullptr;
  const double work = static_cast<double>(nb) * g.M * g.N * g.K;
  int T = pool ? pool->size() : 1;
  if (work < 96.0 * 96 * 96) T = 1;

  Workspace& ws = t_ws;
  while (static_cast<int>(ws.a.size()) < T) {
    ws.a.push_back(std::make_unique<PackBuf>());
    ws.b.push_back(std::make_unique<PackBuf>());
  }
  const int64_t kc_max = std::min<int64_t>(isa.kc, g.K);
  const int64_t nc_max = std::min<int64_t>(isa.nc, (g.N + isa.nr - 1) / isa.nr * isa.nr);
  for (int t = 0; t < T; ++t) {
    ws.a[t]->reserve(static_cast<size_t>(kc_max * isa.mc));
    ws.b[t]->reserve(static_cast<size_t>(kc_max * nc_max));
  }
  const int64_t sa = g.M * g.K, sb = g.K * g.N, sc = g.M * g.N;
  auto batch_rect = [&](int tid, int64_t b, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    gemm_rect(g, isa, g.A + b * sa, g.B + b * sb, g.C + b * sc, g.P ? g.P + b * sc : nullptr, m0, m1, n0, n1,
              ws.a[tid]->p, ws.b[tid]->p);
  };
  if (T == 1) {
    for (int64_t b = 0; b < nb; ++b) batch_rect(0, b, 0, g.M, 0, g.N);
    return;
  }
  // Many small batched products: whole batches per thread.
  if (nb >= 2 * T && static_cast<double>(g.M) * g.N * g.K < 256.0 * 256 * 256) {
    pool->run([&](int tid, int nt) {
      for (int64_t b = tid; b < nb; b += nt) batch_rect(tid, b, 0, g.M, 0, g.N);
    });
    return;
  }
  // Otherwise each batch is split into a tm x tn grid of rectangles, one per thread, in whole
  // micro-tiles. The grid minimises the largest rectangle's padded area plus its packing work.
  const int64_t mt = (g.M + isa.mr - 1) / isa.mr, ntl = (g.N + isa.nr - 1) / isa.nr;
  int tm = 1;
  double best = 1e300;
  for (int cand = 1; cand <= T; ++cand) {
    if (T % cand) continue;
    int cn = T / cand;
    double rows = static_cast<double>((mt + cand - 1) / cand * isa.mr);
    double cols = static_cast<double>((ntl + cn - 1) / cn * isa.nr);
    double cost = rows * cols + 12.0 * (rows * std::ceil(cols / isa.nc) + cols);
    if (cost < best) best = cost, tm = cand;
  }
  const int tn = T / tm;
  pool->run([&](int tid, int) {
    const int im = tid / tn, in = tid % tn;
    const int64_t m0 = std::min(g.M, mt * im / tm * isa.mr), m1 = std::min(g.M, mt * (im + 1) / tm * isa.mr);
    const int64_t n0 = std::min(g.N, ntl * in / tn * isa.nr), n1 = std::min(g.N, ntl * (in + 1) / tn * isa.nr);
    for (int64_t b = 0; b < nb; ++b) batch_rect(tid, b, m0, m1, n0, n1);
  });
}

}  // namespace medic::cpu
