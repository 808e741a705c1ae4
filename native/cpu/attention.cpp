// Multi-head self-attention (fused, flash style) and the row softmax, forward and backward.
//
// Shape letters: B batch, T tokens, H heads, Hd head dim; R rows, C columns for the plain softmax.
//   attention      qkv [B, T, 3*H*Hd] (per token [3][H][Hd], as timm's qkv.reshape(B, T, 3, H, Hd))
//                  -> o [B, T, H*Hd] (heads concatenated), lse [B, H, T] (log-sum-exp of each score row)
//   attention_bwd  do [B, T, H*Hd], qkv, o, lse -> dqkv [B, T, 3*H*Hd] (overwrite, or add when acc=1)
//   softmax        x [R, C] -> y = softmax(scale * x) along C;  softmax_bwd: y, dy -> dx (acc)
//
// Scores are S = scale * q k^T. The forward walks key blocks of BK keys for a block of BQ queries,
// keeping a running row max m and sum l (online softmax), so only a BQ x BK tile of scores exists at a
// time; lse = m + log(l) is kept for the backward. Tiles are held transposed (S^T: keys x queries) so
// K and V rows are read in place, only Q^T (and dO^T in the backward) is packed, and the per-query
// softmax statistics are lane-wise vectors. The backward is FlashAttention-2's: with
// D_t = dO_t . O_t it recomputes P = exp(S - lse) tile by tile and forms dV = P^T dO, dP = dO V^T,
// dS = P * (dP - D), dQ = scale dS K, dK = scale dS^T Q.
//
// Work split (ctx.pool): forward items are (b, h, query block); backward items are (b, h, group of key
// blocks), one group per head unless there are fewer heads than threads, in which case a head's key
// blocks are split in G groups and their dQ partials are summed afterwards.
//
// The tile products and the exp-heavy softmax passes live in attention_isa.inc, compiled three times
// (AVX-512, AVX2 + FMA, scalar; the target attributes of isa.h) and chosen at run time by cpu_isa().
// bf16 attention on a CPU with AVX512-BF16 takes attention_dpbf16.inc instead: the same tiles with
// their products on vdpbf16ps (bf16 operands, P and dS rounded to bf16; ops.h, Precision), for about
// 1.4x (forward) and 1.7x (backward) the speed of fp32 products on widened rows at ViT-B's shapes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>
#include <vector>

#include "medic/engine.h"
#include "medic/op_args.h"
#include "medic/ops.h"
#include "medic/threads.h"

#include "bf16_io.h"
#include "isa.h"
#if MEDIC_X86
#include <immintrin.h>

#include "transpose16.h"
#endif

namespace medic::cpu {

namespace {

constexpr int kBQ = 64;  // queries per tile
constexpr int kBK = 64;  // keys per tile: a 64 x 64 score tile is 16 KiB, comfortably in L1/L2

using AttnDims = AttentionDims;  // B, T, H, Hd, scale, acc: decoded in medic/op_args.h

// dst[c * ldd + j] = scale * src[j * ld + c] for j < n rows, c < Hd, and 0 for n <= j < npad: rows of
// a head (Q or dO) as columns, so that a score tile is (row of K or V) x (contiguous row of dst).
template <class ST>
inline void pack_transposed(const ST* src, int64_t lds, int n, int Hd, float scale, float* dst, int64_t ldd, int npad) {
  // 16 source rows at a time (16 x Hd floats stay in L1) so each destination row gets a contiguous run
  for (int j0 = 0; j0 < n; j0 += 16) {
    const int jn = n - j0 < 16 ? n - j0 : 16;
    for (int c = 0; c < Hd; ++c)
      for (int j = 0; j < jn; ++j) dst[c * ldd + j0 + j] = scale * ld(src, (j0 + j) * lds + c);
  }
  for (int c = 0; c < Hd; ++c)
    for (int j = n; j < npad; ++j) dst[c * ldd + j] = 0.0f;
}

inline void scale_row(float* x, int64_t n, float a) {
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

// dst (storage ST: f32, or bf16 rounded as it is stored) = src (+ dst when acc).
template <class ST>
inline void store_row(ST* dst, const float* src, int n, bool acc) {
  if (acc)
    for (int i = 0; i < n; ++i) st(dst, i, ld(dst, i) + src[i]);
  else
    for (int i = 0; i < n; ++i) st(dst, i, src[i]);
}

// dst[j * Hd + c] = src[j * ld + c] for j < n, c < Hd: the rows of one head widened to f32 (bf16 only).
inline void widen_rows(const uint16_t* src, int64_t lds, int n, int Hd, float* dst) {
  for (int j = 0; j < n; ++j)
    for (int c = 0; c < Hd; ++c) dst[static_cast<int64_t>(j) * Hd + c] = ld(src, j * lds + c);
}

#if MEDIC_X86
// GCC 12 reports its own _mm512_undefined_ps() (used inside the reduce/roundscale intrinsics) as
// maybe-uninitialized; the warning is about the header, not this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
namespace isa_avx512 {
#define ATTN_ISA 512
#include "attention_isa.inc"
#undef ATTN_ISA
#include "attention_dpbf16.inc"
}  // namespace isa_avx512
namespace isa_avx2 {
#define ATTN_ISA 256
#include "attention_isa.inc"
#undef ATTN_ISA
}  // namespace isa_avx2
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif
namespace isa_scalar {
#define ATTN_ISA 0
#include "attention_isa.inc"
#undef ATTN_ISA
}  // namespace isa_scalar

struct Kernels {
  decltype(&isa_scalar::fwd_range<float>) fwd;
  decltype(&isa_scalar::fwd_range<uint16_t>) fwd16;
  decltype(&isa_scalar::bwd_range<float>) bwd;
  decltype(&isa_scalar::bwd_range<uint16_t>) bwd16;
  decltype(&isa_scalar::softmax_rows) softmax;
  decltype(&isa_scalar::softmax_bwd_rows) softmax_bwd;
  // bf16 on vdpbf16ps (attention_dpbf16.inc): set when the CPU has AVX512-BF16, else null
  decltype(&isa_scalar::fwd_range<uint16_t>) fwd16_dp = nullptr;
  void (*bwd16_dp)(const AttnDims&, int, const void*, bool, const uint16_t*, const uint16_t*, const float*, void*, bool,
                   float*, bool, int64_t, int64_t) = nullptr;
};

#define MEDIC_ATTN_KERNELS(ns)                                                                                      \
  Kernels {                                                                                                         \
    ns::fwd_range<float>, ns::fwd_range<uint16_t>, ns::bwd_range<float>, ns::bwd_range<uint16_t>, ns::softmax_rows, \
        ns::softmax_bwd_rows                                                                                        \
  }
const Kernels& kernels() {
  static const Kernels k = [] {
#if MEDIC_X86
    const Isa isa = cpu_isa();
    if (isa == Isa::avx512) {
      Kernels k512 = MEDIC_ATTN_KERNELS(isa_avx512);
      if (cpu_features().avx512_bf16)
        k512.fwd16_dp = isa_avx512::fwd_range_dp, k512.bwd16_dp = isa_avx512::bwd_range_dp;
      return k512;
    }
    if (isa == Isa::avx2) return MEDIC_ATTN_KERNELS(isa_avx2);
#endif
    return MEDIC_ATTN_KERNELS(isa_scalar);
  }();
  return k;
}
#undef MEDIC_ATTN_KERNELS

void parallel(const OpCall& c, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (c.ctx && c.ctx->pool && n > grain)
    c.ctx->pool->parallel_for(n, grain, fn);
  else if (n > 0)
    fn(0, n);
}

int threads(const OpCall& c) { return c.ctx && c.ctx->pool ? c.ctx->pool->size() : 1; }

template <class ST>
void attention_t(const OpCall& c) {
  const AttnDims d = attention_dims(c);
  const ST* qkv = static_cast<const ST*>(c.x(0).data);
  ST* o = static_cast<ST*>(c.y(0).data);
  float* lse = c.y(1).f32();
  const bool dp = std::is_same<ST, uint16_t>::value && kernels().fwd16_dp && d.Hd % 2 == 0;
  const int64_t nqb = (d.T + kBQ - 1) / kBQ;
  const auto fwd = [&] {
    if constexpr (std::is_same<ST, float>::value)
      return kernels().fwd;
    else
      return dp ? kernels().fwd16_dp : kernels().fwd16;
  }();
  parallel(c, d.B * d.H * nqb, 1, [&](int64_t b0, int64_t b1) { fwd(d, qkv, o, lse, b0, b1); });
}

// Work groups per head of the backward: a head's key blocks are split only when heads alone cannot
// keep the threads busy.
int key_groups(const OpCall& c, const AttnDims& d) {
  const int64_t BH = d.B * d.H, nkb = (d.T + kBK - 1) / kBK;
  return static_cast<int>(std::min<int64_t>(nkb, std::max<int64_t>(1, (threads(c) + BH - 1) / BH)));
}

// The dQ rows of dqkv (storage GT) = the sum of their G partials (+ dqkv when acc).
template <class GT>
void sum_dq_partials(const OpCall& c, const AttnDims& d, int G, const float* part, GT* dqkv, bool acc) {
  const int64_t ld = 3 * d.H * d.Hd;
  parallel(c, d.B * d.H * d.T, 64, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(d.Hd));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t bh = r / d.T, t = r % d.T, b = bh / d.H, h = bh % d.H;
      const float* src = part + (bh * G * d.T + t) * d.Hd;
      for (int64_t e = 0; e < d.Hd; ++e) {
        float s = 0.0f;
        for (int g = 0; g < G; ++g) s += src[g * d.T * d.Hd + e];
        row[e] = s;
      }
      store_row(dqkv + (b * d.T + t) * ld + h * d.Hd, row.data(), static_cast<int>(d.Hd), acc);
    }
  });
}

template <class ST>
void attention_bwd_t(const OpCall& c) {
  const AttnDims d = attention_dims(c);
  const ST *dout = static_cast<const ST*>(c.x(0).data), *qkv = static_cast<const ST*>(c.x(1).data),
           *o = static_cast<const ST*>(c.x(2).data);
  const float* lse = c.x(3).f32();
  ST* dqkv = static_cast<ST*>(c.y(0).data);
  if (d.B * d.H == 0 || d.T == 0) return;
  const int G = key_groups(c, d);
  std::vector<float> dq_part(G > 1 ? static_cast<size_t>(d.B * d.H * G * d.T * d.Hd) : 0);
  const auto bwd = [] {
    if constexpr (std::is_same<ST, float>::value)
      return kernels().bwd;
    else
      return kernels().bwd16;
  }();
  parallel(c, d.B * d.H * G, 1,
           [&](int64_t b0, int64_t b1) { bwd(d, G, dout, qkv, o, lse, dqkv, dq_part.data(), d.acc, b0, b1); });
  if (G > 1) sum_dq_partials(c, d, G, dq_part.data(), dqkv, d.acc);
}

// The AVX512-BF16 backward: qkv and o bf16, do and dqkv of either storage (the mixed-precision graph
// keeps these gradients f32).
void attention_bwd_dp(const OpCall& c) {
  const AttnDims d = attention_dims(c);
  if (d.B * d.H == 0 || d.T == 0) return;
  const Tensor &dout = c.x(0), &dqkv = c.y(0);
  const bool do16 = dout.dtype == DType::BF16, dq16 = dqkv.dtype == DType::BF16;
  const int G = key_groups(c, d);
  std::vector<float> dq_part(G > 1 ? static_cast<size_t>(d.B * d.H * G * d.T * d.Hd) : 0);
  parallel(c, d.B * d.H * G, 1, [&](int64_t b0, int64_t b1) {
    kernels().bwd16_dp(d, G, dout.data, do16, c.x(1).bf16(), c.x(2).bf16(), c.x(3).f32(), dqkv.data, dq16,
                       dq_part.data(), d.acc, b0, b1);
  });
  if (G == 1) return;
  if (dq16)
    sum_dq_partials(c, d, G, dq_part.data(), dqkv.bf16(), d.acc);
  else
    sum_dq_partials(c, d, G, dq_part.data(), dqkv.f32(), d.acc);
}

}  // namespace

// attention / attention_bwd on f32 or bf16 activations (qkv, o, do, dqkv of one storage), or on
// widened copies when the storages are mixed; on a CPU with AVX512-BF16 (and an even Hd) bf16 qkv
// and o take the vdpbf16ps kernels, the backward with do and dqkv of either storage.
void attention(const OpCall& c) {
  switch (storage_of({&c.x(0), &c.y(0)})) {
    case Storage::f32: return attention_t<float>(c);
    case Storage::bf16: return attention_t<uint16_t>(c);
    case Storage::mixed: return run_widened(c, attention);
  }
}

void attention_bwd(const OpCall& c) {
  if (kernels().bwd16_dp && c.x(1).dtype == DType::BF16 && c.x(2).dtype == DType::BF16 && attention_dims(c).Hd % 2 == 0)
    return attention_bwd_dp(c);
  switch (storage_of({&c.x(0), &c.x(1), &c.x(2), &c.y(0)})) {
    case Storage::f32: return attention_bwd_t<float>(c);
    case Storage::bf16: return attention_bwd_t<uint16_t>(c);
    case Storage::mixed: return run_widened(c, attention_bwd);
  }
}

void softmax(const OpCall& c) {
  const SoftmaxArgs a = softmax_args(c);
  const int64_t C = a.C, R = a.R;
  const float scale = a.scale;
  const float* xp = c.x(0).f32();
  float* yp = c.y(0).f32();
  const auto fn = kernels().softmax;
  parallel(c, R, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)),
           [&](int64_t r0, int64_t r1) { fn(xp, yp, C, scale, r0, r1); });
}

void softmax_bwd(const OpCall& c) {
  const SoftmaxArgs a = softmax_args(c);
  const int64_t C = a.C, R = a.R;
  const float scale = a.scale;
  const bool acc = a.acc;
  const float *yp = c.x(0).f32(), *dyp = c.x(1).f32();
  float* dxp = c.y(0).f32();
  const auto fn = kernels().softmax_bwd;
  parallel(c, R, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)),
           [&](int64_t r0, int64_t r1) { fn(yp, dyp, dxp, C, scale, acc, r0, r1); });
}

// attention_probs: items are (b, block of kQB kept query rows). Each item packs K^T of every head of
// its image ([H][Hd][T], contiguous over keys) so that a row's scores are built as
// sc[j] += q[e] * kt[e][j], e ascending: a loop over independent keys that vectorises without
// reordering any sum (the same bits on every thread count and ISA width). Then per head the softmax
// over all T keys and 1/H of it added into the output row, heads in order.
void attention_probs(const OpCall& c) {
  constexpr int64_t kQB = 16;
  const AttnProbsArgs a = attention_probs_args(c);
  const float* qkv = c.x(0).f32();
  float* out = c.y(0).f32();
  const int64_t ld = 3 * a.H * a.Hd, HHd = a.H * a.Hd, T = a.T;
  const int64_t blocks = (a.N + kQB - 1) / kQB;
  const float inv_h = 1.0f / static_cast<float>(a.H);
  parallel(c, a.B * blocks, 1, [&](int64_t r0, int64_t r1) {
    std::vector<float> kt(static_cast<size_t>(HHd * T)), sc(static_cast<size_t>(T));
    int64_t packed = -1;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / blocks, i0 = a.prefix + (r % blocks) * kQB, i1 = std::min(a.prefix + a.N, i0 + kQB);
      const float* base = qkv + b * T * ld;
      if (packed != b) {
        for (int64_t j = 0; j < T; ++j)
          for (int64_t e = 0; e < HHd; ++e) kt[e * T + j] = base[j * ld + HHd + e];
        packed = b;
      }
      for (int64_t i = i0; i < i1; ++i) {
        float* orow = out + (b * a.N + i - a.prefix) * a.N;
        std::fill(orow, orow + a.N, 0.0f);
        for (int64_t h = 0; h < a.H; ++h) {
          const float* q = base + i * ld + h * a.Hd;
          std::fill(sc.begin(), sc.end(), 0.0f);
          for (int64_t e = 0; e < a.Hd; ++e) {
            const float qe = q[e];
            const float* k = kt.data() + (h * a.Hd + e) * T;
            for (int64_t j = 0; j < T; ++j) sc[j] += qe * k[j];
          }
          float m = -INFINITY;
          for (int64_t j = 0; j < T; ++j) m = std::max(m, sc[j] *= a.scale);
          float sum = 0.0f;
          for (int64_t j = 0; j < T; ++j) sum += (sc[j] = std::exp(sc[j] - m));
          const float w = inv_h / sum;
          for (int64_t j = 0; j < a.N; ++j) orow[j] += sc[a.prefix + j] * w;
        }
      }
    }
  });
}

}  // namespace medic::cpu
