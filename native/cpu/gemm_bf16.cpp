// gemm with bf16 operands or output (ops.h, "gemm"): C = act(alpha * op(A) op(B) + bias) (+ C when
// acc=1) where A or B is bf16 or attr bf16=1 (the bf16 product: every operand element rounded to
// bf16, products summed in fp32) or C is bf16 (the fp32 result rounded once, to nearest even, when it is stored).
//
// Two implementations with one result contract:
//   - gemm_bf16_reference: rounds the operands to bf16, widens them to f32 scratch, runs the fp32
//     gemm (gemm.cpp) and rounds the result to C's dtype. Readable, and the fallback on CPUs
//     without AVX512-BF16 (and under MEDIC_CPU_ISA=avx512|avx2|scalar).
//   - the AVX512-BF16 kernel below: `vdpbf16ps` multiplies pairs of bf16 and adds both products
//     into an fp32 lane, so operands are packed as k-pairs: a 32-bit word holds op(X)[.., k] in its
//     low half and op(X)[.., k+1] in its high half. f32 operands are rounded while they are packed
//     (VCVTNEPS2BF16: nearest even, denormals flushed to zero), so a weight kept in fp32 (the master
//     copy) needs no separate cast.
// The two differ only in the fp32 summation order (ulps of fp32, far below bf16's 2^-8).
//
// Structure as gemm.cpp (BLIS / Goto): NC column blocks, KC slices of K, MC row blocks, an MR x NR
// register tile; threads own bands of rows of C against a B they packed together (one B block and
// one K slice: every ViT-B product), else rectangles of C. The micro-kernel leaves its fp32 tile in
// a small buffer and one epilogue applies alpha, the partial sums of earlier K slices, acc, bias
// and GELU, then stores f32 or rounds to bf16 (a whole tile of a one-slice product without GELU is
// stored straight from the accumulators, same arithmetic). With a bf16 C and K over one slice, the
// partial sums live in an fp32 scratch (rounding them to bf16 between slices would lose precision);
// KC (3072) is long enough that every ViT-B product takes one slice, MC shrinking with the slice
// (see KC below).
//
// Where the CPU has AMX (and Linux grants the tile state), the same blocks run on tile registers
// instead (gemm_amx.inc: TDPBF16PS on 32 x 32 blocks of C).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "gemm_bf16.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gelu_simd.h"
#include "medic/engine.h"
#include "medic/op_args.h"
#include "medic/threads.h"
#include "transpose16.h"

#define MEDIC_BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,fma")))

namespace medic::cpu {

// The bf16 product: an operand is bf16, or attr bf16=1 asks for it with f32 operands.
static bool product16(const OpCall& call) {
  return call.x(0).dtype == DType::BF16 || call.x(1).dtype == DType::BF16 || call.ai("bf16", 0) != 0;
}

bool gemm_is_bf16(const OpCall& call) { return product16(call) || call.y(0).dtype == DType::BF16; }

// ---- Reference / fallback -------------------------------------------------------------------------
namespace {

// x as f32; rounded through bf16 first when `round` (an f32 operand of a bf16 product).
std::vector<float> widen(const Tensor& t, bool round) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (t.dtype == DType::BF16) {
    for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_f32(t.bf16()[i]);
  } else {
    for (size_t i = 0; i < out.size(); ++i) out[i] = round ? bf16_to_f32(f32_to_bf16(t.f32()[i])) : t.f32()[i];
  }
  return out;
}

void store(const Tensor& t, const std::vector<float>& v) {
  if (t.dtype == DType::BF16)
    for (size_t i = 0; i < v.size(); ++i) t.bf16()[i] = f32_to_bf16(v[i]);
  else
    std::memcpy(t.data, v.data(), v.size() * sizeof(float));
}

Tensor f32_view(const Tensor& like, std::vector<float>& v) {
  Tensor t = like;
  t.dtype = DType::F32;
  t.data = v.data();
  return t;
}

}  // namespace

void gemm_bf16_reference(const OpCall& call) {
  const bool p16 = product16(call);
  std::vector<float> a = widen(call.x(0), p16), b = widen(call.x(1), p16);
  const bool act = call.ai("act", 0) == 1;
  std::vector<float> c = call.ai("acc", 0) ? widen(call.y(0), false) : std::vector<float>(call.y(0).numel());
  std::vector<float> pre(act ? call.y(1).numel() : 0);
  Tensor in[3] = {f32_view(call.x(0), a), f32_view(call.x(1), b), call.has_in(2) ? call.x(2) : Tensor{}};
  Tensor out[2] = {f32_view(call.y(0), c), act ? f32_view(call.y(1), pre) : Tensor{}};
  OpCall f = call;
  f.in = in;
  f.out = out;
  gemm_f32(f);  // not gemm(): f keeps attr bf16=1, which would route it back here
  store(call.y(0), c);
  if (act) store(call.y(1), pre);
}

// ---- AVX512-BF16 kernel ---------------------------------------------------------------------------
namespace {

constexpr int MR = 12, NR = 32;  // 24 zmm accumulators, as the fp32 AVX-512 tile
// KC: the longest K slice (even). Up to 3072 every ViT-B product takes one slice: no fp32 partial sums
// go through memory between slices (with a bf16 C they live in a scratch of M x N floats, well past
// L2, and their round trip per slice cost 10-20 % on K = 2304 / 3072). MC shrinks as the slice grows
// so that the packed A block (MC x KC bf16) keeps to kABytes, resident in L2 while the B micro-panels
// stream past it; the KC x NR B micro-panel (up to 192 KiB) comes from L2 as well, which the
// micro-kernel's 176 bytes per 24 vdpbf16ps leave ample bandwidth for.
constexpr int64_t KC = 3072, MC = 240, NC = 3072;
constexpr int64_t kABytes = 384 * 1024;
// Rows per A block for a slice of kc: a multiple of MR, at most MC.
static int64_t mc_limit(int64_t kc) {
  return std::max<int64_t>(MR, std::min<int64_t>(MC, kABytes / (2 * kc) / MR * MR));
}

// A read-only operand as the packers see it: element (s, k) of a panel source is p[s * ld + k]
// ("stream" form: k contiguous) or p[k * ld + s] ("rows" form: s contiguous).
struct Src {
  const void* p;
  bool bf16;
  int64_t ld;
  bool stream;
  const void* at(int64_t s, int64_t k) const {
    const int64_t off = stream ? s * ld + k : k * ld + s;
    return bf16 ? static_cast<const void*>(static_cast<const uint16_t*>(p) + off)
                : static_cast<const void*>(static_cast<const float*>(p) + off);
  }
  uint16_t elem(int64_t s, int64_t k) const {
    return bf16 ? *static_cast<const uint16_t*>(at(s, k)) : f32_to_bf16(*static_cast<const float*>(at(s, k)));
  }
};

MEDIC_BF16 static inline __m128i cvt8(const float* p) {  // 8 f32 -> 8 bf16 (nearest even)
  return reinterpret_cast<__m128i>(_mm256_cvtneps_pbh(_mm256_loadu_ps(p)));
}
MEDIC_BF16 static inline __m128i load8(const Src& s, int64_t i, int64_t k) {  // 8 bf16 from (i, k) on
  const void* p = s.at(i, k);
  return s.bf16 ? _mm_loadu_si128(static_cast<const __m128i*>(p)) : cvt8(static_cast<const float*>(p));
}
// 32 bf16 from (i, k) on (k contiguous).
MEDIC_BF16 static inline __m512i load32(const Src& s, int64_t i, int64_t k) {
  const void* p = s.at(i, k);
  if (s.bf16) return _mm512_loadu_si512(p);
  const float* f = static_cast<const float*>(p);
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(_mm512_loadu_ps(f + 16), _mm512_loadu_ps(f)));
}
// A packed line of 16 pairs at dst. `stream` (B packed into the buffer all threads read): a
// non-temporal store where dst is a whole aligned line, so the line goes to memory without first being
// read for ownership, which here mostly means taking it back from the other core that read it in the
// previous product. Measured on the ViT-B step's B operands (2 threads): 0.51-0.91 -> 0.23-0.34 ns
// per element in the stream form, 0.31 -> 0.21 in the rows form from bf16 (bench/README.md).
MEDIC_BF16 static inline void store_line(uint32_t* dst, __m512i v, bool stream) {
  if (stream && (reinterpret_cast<uintptr_t>(dst) & 63) == 0)
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst), v);
  else
    _mm512_storeu_si512(dst, v);
}

// The stream form (k contiguous), one panel of w lanes (ns of them real, the rest zero) over kc values
// of k from (s0, k0): dst[p * w + s] = pair (elem(s, k0 + 2p), elem(s, k0 + 2p + 1)), the second zero
// past kc. (The rows form is pack_rows, below.) `stream`: as store_line.
MEDIC_BF16 static void pack_pairs(const Src& src, int64_t s0, int64_t k0, int ns, int w, int64_t kc, uint32_t* dst,
                                  bool stream = false) {
  const int64_t kp = (kc + 1) / 2;
  auto pair = [&](int64_t s, int64_t k) -> uint32_t {
    const uint32_t lo = src.elem(s0 + s, k0 + k);
    const uint32_t hi = k + 1 < kc ? src.elem(s0 + s, k0 + k + 1) : 0;
    return lo | hi << 16;
  };
  int s = 0;
  // Sixteen lanes at a time where a panel holds whole groups of 16 (B's NR = 32): 32 k of each lane
  // (16 pairs, a zmm) transposed as 16 x 16 words (transpose16.h) into 16 rows of pairs, each stored
  // as one whole line (the 4-lane form below writes a quarter line at a time: B's forward operand,
  // the weights, 0.52 -> 0.41 ns per element on 2 threads). The last pairs (kc not a multiple of 32)
  // one at a time.
  if (w % 16 == 0)
    for (; s + 16 <= ns; s += 16) {
      int64_t p = 0;
      for (; 2 * p + 32 <= kc; p += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; ++i) r[i] = _mm512_castsi512_ps(load32(src, s0 + s + i, k0 + 2 * p));
        transpose16(r);
        for (int i = 0; i < 16; ++i) store_line(dst + (p + i) * w + s, _mm512_castps_si512(r[i]), stream);
      }
      for (; p < kp; ++p)
        for (int q = 0; q < 16; ++q) dst[p * w + s + q] = pair(s + q, 2 * p);
    }
  // Four lanes at a time: 32 k of each (16 pairs, a zmm) and a 4 x 4 transpose of 32-bit pairs in
  // each 128-bit lane, then 8 k at a time (xmm) for the rest.
  for (; s + 4 <= ns; s += 4) {
    int64_t p = 0;
    for (; 2 * p + 32 <= kc; p += 16) {
      const __m512i r0 = load32(src, s0 + s, k0 + 2 * p), r1 = load32(src, s0 + s + 1, k0 + 2 * p);
      const __m512i r2 = load32(src, s0 + s + 2, k0 + 2 * p), r3 = load32(src, s0 + s + 3, k0 + 2 * p);
      const __m512i t0 = _mm512_unpacklo_epi32(r0, r1), t1 = _mm512_unpacklo_epi32(r2, r3);
      const __m512i t2 = _mm512_unpackhi_epi32(r0, r1), t3 = _mm512_unpackhi_epi32(r2, r3);
      // u[q], 128-bit lane j: pair p + 4j + q of lanes s .. s + 3
      const __m512i u[4] = {_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1), _mm512_unpacklo_epi64(t2, t3),
                            _mm512_unpackhi_epi64(t2, t3)};
      uint32_t* o = dst + p * w + s;
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o + q * w), _mm512_castsi512_si128(u[q]));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o + (4 + q) * w), _mm512_extracti32x4_epi32(u[q], 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o + (8 + q) * w), _mm512_extracti32x4_epi32(u[q], 2));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o + (12 + q) * w), _mm512_extracti32x4_epi32(u[q], 3));
      }
    }
    for (; 2 * p + 8 <= kc; p += 4) {
      __m128 r0 = _mm_castsi128_ps(load8(src, s0 + s, k0 + 2 * p)),
             r1 = _mm_castsi128_ps(load8(src, s0 + s + 1, k0 + 2 * p));
      __m128 r2 = _mm_castsi128_ps(load8(src, s0 + s + 2, k0 + 2 * p)),
             r3 = _mm_castsi128_ps(load8(src, s0 + s + 3, k0 + 2 * p));
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      uint32_t* o = dst + p * w + s;
      _mm_storeu_ps(reinterpret_cast<float*>(o), r0);
      _mm_storeu_ps(reinterpret_cast<float*>(o + w), r1);
      _mm_storeu_ps(reinterpret_cast<float*>(o + 2 * w), r2);
      _mm_storeu_ps(reinterpret_cast<float*>(o + 3 * w), r3);
    }
    for (; p < kp; ++p)
      for (int q = 0; q < 4; ++q) dst[p * w + s + q] = pair(s + q, 2 * p);
  }
  for (; s < ns; ++s)
    for (int64_t p = 0; p < kp; ++p) dst[p * w + s] = pair(s, 2 * p);
  for (int64_t p = 0; p < kp; ++p)
    for (int z = s; z < w; ++z) dst[p * w + z] = 0;
}

// Up to 16 values of a rows-form source from (s, k) on, as bf16 in a ymm (the rest zero; nothing past
// them is read).
MEDIC_BF16 static inline __m256i load16(const Src& src, int64_t s, int64_t k, __mmask16 mk) {
  const void* p = src.at(s, k);
  if (src.bf16) return _mm256_maskz_loadu_epi16(mk, p);
  return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mk, static_cast<const float*>(p))));
}

// The rows form (s contiguous: every weight gradient's A = dY^T and B = X, every dX's B = W), a block
// of ns lanes at once into ceil(ns / w) panels of w lanes, laid out as pack_pairs' panels one after
// another (kps > kp: each panel holds kps pairs, those past kp zero). Each pair of source rows is read once, front to
// back, for the whole block (packed panel by panel, a row's line was fetched again for every panel, ld apart, and those
// reads missed). Up to 16 lanes a step, never across a panel's edge (w is 12 or 32): row k's values widened to 32 bits,
// row k + 1's shifted into the high halves. The rows kAhead pairs further on are prefetched: a block's part of a row is
// often a few lines on its own page (A of a dW: mc lanes of a row M long), which the hardware prefetcher does not
// follow. Both changes together: the five weight-gradient shapes of bench/cases/gemm.ts 10-14 % faster in the step's
// operand forms (bench/README.md). `stream`: as store_line, for the steps that fill a whole line.
constexpr int64_t kAhead = 2;
MEDIC_BF16 static void pack_rows(const Src& src, int64_t s0, int64_t k0, int64_t ns, int w, int64_t kc, uint32_t* dst,
                                 int64_t kps = 0, bool stream = false) {
  const int64_t kp = (kc + 1) / 2, panel = std::max(kp, kps) * w;
  for (int64_t p = 0; p < kp; ++p) {
    const int64_t k = k0 + 2 * p;
    const bool has1 = 2 * p + 1 < kc;
    uint32_t* o = dst + p * w;
    int lane = 0;                     // s % w, kept as a counter
    if (2 * (p + kAhead) + 1 < kc) {  // both rows inside the slice
      const size_t esz = src.bf16 ? 2 : 4;
      const char* r0 = static_cast<const char*>(src.at(s0, k + 2 * kAhead));
      const char* r1 = static_cast<const char*>(src.at(s0, k + 2 * kAhead + 1));
      for (int64_t b = 0; b < ns * static_cast<int64_t>(esz); b += 64) {
        _mm_prefetch(r0 + b, _MM_HINT_T0);
        _mm_prefetch(r1 + b, _MM_HINT_T0);
      }
    }
    for (int64_t s = 0; s < ns;) {
      const int r = static_cast<int>(std::min<int64_t>(std::min(16, w - lane), ns - s));
      const __mmask16 mk = static_cast<__mmask16>((1u << r) - 1);
      const __m512i lo = _mm512_cvtepu16_epi32(load16(src, s0 + s, k, mk));
      const __m512i hi =
          has1 ? _mm512_slli_epi32(_mm512_cvtepu16_epi32(load16(src, s0 + s, k + 1, mk)), 16) : _mm512_setzero_si512();
      if (r == 16)
        store_line(o + lane, _mm512_or_si512(lo, hi), stream);
      else
        _mm512_mask_storeu_epi32(o + lane, mk, _mm512_or_si512(lo, hi));
      s += r;
      lane += r;
      if (lane == w) lane = 0, o += panel;
    }
    if (lane != 0)  // the last panel's lanes past the data
      for (int z = lane; z < w; ++z) o[z] = 0;
  }
  if (panel > kp * w)  // each panel's pairs from kp to kps (the AMX path's whole tiles of 16 pairs): zero
    for (int64_t q = 0; q * w < ns; ++q) std::memset(dst + q * panel + kp * w, 0, (panel - kp * w) * 4);
}

// acc[i][v] = sum over kp pairs of a[p * MR + i] . b[p * NR + 16 v + ..] (two bf16 products each).
__attribute__((always_inline)) MEDIC_BF16 static inline void micro_sums(int64_t kp, const uint32_t* a,
                                                                        const uint32_t* b, __m512 (&acc)[MR][2]) {
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int64_t p = 0; p < kp; ++p) {
    const __m512bh b0 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b)),
                   b1 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + 16));
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512bh ai = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(a[i])));
      // (the broadcast operand last: it can then be folded into the instruction as {1to16})
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], b0, ai);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], b1, ai);
    }
    a += MR;
    b += NR;
  }
}

// tile[i * NR + j]: the sums, for epilogue() below.
MEDIC_BF16 static void micro(int64_t kp, const uint32_t* a, const uint32_t* b, float* tile) {
  __m512 acc[MR][2];
  micro_sums(kp, a, b, acc);
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    _mm512_store_ps(tile + i * NR, acc[i][0]);
    _mm512_store_ps(tile + i * NR + 16, acc[i][1]);
  }
}

// Where one finished tile goes (pointers at the tile's top-left element).
struct Epilogue {
  float alpha;
  bool first, last;   // first / last K slice
  bool acc;           // add C's incoming value (first slice only)
  const float* bias;  // last slice only; nullptr for none
  bool gelu;          // last slice only: preact = value, C = GELU(value)
  void* c;            // C (f32 or bf16), row stride ldc
  void* pre;          // preact, same dtype and stride as C
  bool c16;           // C and preact are bf16
  int64_t ldc;
  float* part;  // fp32 partial sums between K slices (C itself when C is f32), row stride ldp
  int64_t ldp;
};

MEDIC_BF16 static inline __m512 load_out(const void* base, bool b16, int64_t off, __mmask16 mk) {
  if (!b16) return _mm512_maskz_loadu_ps(mk, static_cast<const float*>(base) + off);
  const __m256i h = _mm256_maskz_loadu_epi16(mk, static_cast<const uint16_t*>(base) + off);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
MEDIC_BF16 static inline void store_out(void* base, bool b16, int64_t off, __mmask16 mk, __m512 x) {
  if (!b16) return _mm512_mask_storeu_ps(static_cast<float*>(base) + off, mk, x);
  _mm256_mask_storeu_epi16(static_cast<uint16_t*>(base) + off, mk, reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(x)));
}

// Brings the m rows of the tile's destination into L2 while the micro-kernel runs: rows of C are a
// whole row of the product apart, too far for the hardware prefetcher, so without this every
// epilogue row starts with a miss to memory (a read for acc or partial sums, a line fill for a store).
// L2, not L1: the micro-kernel's B panel (up to 192 KiB) streams through L1 and would evict them.
static inline void prefetch_rows(const void* base, int64_t ld, size_t esz, int m) {
  for (int i = 0; i < m; ++i) {
    const char* row = static_cast<const char*>(base) + i * ld * esz;
    _mm_prefetch(row, _MM_HINT_T1);
    _mm_prefetch(row + NR * esz - 1, _MM_HINT_T1);
  }
}
static void prefetch_tile(const Epilogue& e, int m) {
  const size_t esz = e.c16 ? 2 : 4;
  if (!e.first) prefetch_rows(e.part, e.ldp, 4, m);
  if (e.last || e.part == e.c) prefetch_rows(e.c, e.ldc, esz, m);
  if (e.last && e.gelu) prefetch_rows(e.pre, e.ldc, esz, m);
}

// The epilogue's arithmetic on one vector: alpha * sums + base (C's incoming value with acc, earlier
// slices' partial sums, or 0) in one fma, then + bias. Written as an explicit fma so that both
// epilogues below round alike: a separate multiply and add may or may not be contracted into an fma
// by the compiler (-ffp-contract=fast), differently in each function.
MEDIC_BF16 static inline __m512 finish(__m512 sums, __m512 va, __m512 base, __m512 bias) {
  return _mm512_add_ps(_mm512_fmadd_ps(sums, va, base), bias);
}

MEDIC_BF16 static void epilogue(const float* tile, int m, int n, const Epilogue& e) {
  __mmask16 mk[2];
  __m512 bs[2];
  for (int v = 0; v < 2; ++v) {
    const int r = n - 16 * v;
    mk[v] = r >= 16 ? static_cast<__mmask16>(0xFFFF) : r > 0 ? static_cast<__mmask16>((1u << r) - 1) : 0;
    bs[v] = e.last && e.bias ? _mm512_maskz_loadu_ps(mk[v], e.bias + 16 * v) : _mm512_setzero_ps();
  }
  const __m512 va = _mm512_set1_ps(e.alpha);
  // Two rows at a time: GELU's dependency chain runs on four vectors side by side (gelu4_avx512).
  for (int i0 = 0; i0 < m; i0 += 2) {
    const int rows = std::min(2, m - i0);
    __m512 x[4];
    for (int r = 0; r < 2; ++r)
      for (int v = 0; v < 2; ++v) {
        const int i = i0 + r, q = 2 * r + v;
        x[q] = _mm512_setzero_ps();
        if (r >= rows) continue;
        const __m512 base = !e.first ? _mm512_maskz_loadu_ps(mk[v], e.part + i * e.ldp + 16 * v)
                            : e.acc  ? load_out(e.c, e.c16, i * e.ldc + 16 * v, mk[v])
                                     : _mm512_setzero_ps();
        x[q] = finish(_mm512_load_ps(tile + i * NR + 16 * v), va, base, bs[v]);
        if (!e.last)
          _mm512_mask_storeu_ps(e.part + i * e.ldp + 16 * v, mk[v], x[q]);
        else if (e.gelu)
          store_out(e.pre, e.c16, i * e.ldc + 16 * v, mk[v], x[q]);
      }
    if (!e.last) continue;
    if (e.gelu) gelu4_avx512(x);
    for (int r = 0; r < rows; ++r)
      for (int v = 0; v < 2; ++v) store_out(e.c, e.c16, (i0 + r) * e.ldc + 16 * v, mk[v], x[2 * r + v]);
  }
}

// A whole tile (MR x NR) of a product in one K slice without GELU, the common case: epilogue()'s
// arithmetic (the same operations in the same order, so the same bits) straight from the
// accumulators, without their round trip through the tile buffer (the decoder's qkv product, K = 512,
// 6.1 -> 5.8 ms).
MEDIC_BF16 static void micro_store(int64_t kp, const uint32_t* a, const uint32_t* b, const Epilogue& e) {
  __m512 acc[MR][2];
  micro_sums(kp, a, b, acc);
  const __m512 va = _mm512_set1_ps(e.alpha);
  const __m512 bs[2] = {e.bias ? _mm512_loadu_ps(e.bias) : _mm512_setzero_ps(),
                        e.bias ? _mm512_loadu_ps(e.bias + 16) : _mm512_setzero_ps()};
  const __mmask16 all = 0xFFFF;
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < 2; ++v) {
      const __m512 base = e.acc ? load_out(e.c, e.c16, i * e.ldc + 16 * v, all) : _mm512_setzero_ps();
      store_out(e.c, e.c16, i * e.ldc + 16 * v, all, finish(acc[i][v], va, base, bs[v]));
    }
}

struct Problem {
  Src a, b;  // op(A) as (row i, k), op(B) as (column j, k)
  const float* bias;
  void *C, *P;
  bool c16, acc, gelu;
  float alpha;
  int64_t M, N, K;
};

// 64-byte aligned scratch, grown on demand, one per pool thread and role (as gemm.cpp's PackBuf).
struct Buf {
  void* p = nullptr;
  size_t cap = 0;
  Buf() = default;
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  void reserve(size_t bytes) {
    if (bytes <= cap) return;
    std::free(p);
    const size_t b = (bytes + 63) & ~size_t(63);
    p = std::aligned_alloc(64, b);
    cap = p ? b : 0;
    if (!p) throw Error("gemm (bf16): out of memory for packing buffers (" + std::to_string(b) + " bytes)");
  }
  ~Buf() { std::free(p); }
};
struct Workspace {
  std::vector<std::unique_ptr<Buf>> a, b, part;  // [tid]
  Buf shared_b;                                  // B packed by all threads together (gemm_bf16)
};
thread_local Workspace t_ws;

static int64_t even_block(int64_t total, int64_t limit, int64_t unit) {
  const int64_t nblk = (total + limit - 1) / limit;
  const int64_t b = (total + nblk - 1) / nblk;
  return std::min(limit, (b + unit - 1) / unit * unit);
}

// op(B)'s columns [j0, j0 + nc) over k in [k0, k0 + kc) as NR-lane panels of kps k-pairs (kps >= kp,
// the pairs past kp zero; kps = kp by default), column j0 + jr's panel at dst + jr * kps (jr a multiple
// of NR). `shared`: the buffer the threads pack together and all read (gemm_bf16's shared B): stored
// with non-temporal stores (store_line), fenced before the pool's barrier hands it to the others.
MEDIC_BF16 static void pack_b(const Problem& g, int64_t j0, int64_t nc, int64_t k0, int64_t kc, uint32_t* dst,
                              int64_t kps = 0, bool shared = false) {
  const int64_t kp = (kc + 1) / 2;
  kps = std::max(kp, kps);
  if (!g.b.stream) {
    pack_rows(g.b, j0, k0, nc, NR, kc, dst, kps, shared);
  } else {
    for (int64_t jr = 0; jr < nc; jr += NR) {
      pack_pairs(g.b, j0 + jr, k0, static_cast<int>(std::min<int64_t>(NR, nc - jr)), NR, kc, dst + jr * kps, shared);
      std::memset(dst + jr * kps + kp * NR, 0, (kps - kp) * NR * 4);
    }
  }
  if (shared) _mm_sfence();  // non-temporal stores are weakly ordered
}

// The epilogue of C's tile at (row, col) in the K slice [pc, pc + kc): rect's band starts at row m0
// and its column block at jc, ncb wide (the bf16-C partial sums' scratch is indexed from there).
static Epilogue tile_epilogue(const Problem& g, int64_t row, int64_t col, bool first, bool last, float* scratch,
                              int64_t m0, int64_t jc, int64_t ncb) {
  const size_t esz = g.c16 ? 2 : 4;
  const int64_t off = row * g.N + col;
  Epilogue e{};
  e.alpha = g.alpha;
  e.first = first;
  e.last = last;
  e.acc = g.acc;
  e.bias = g.bias ? g.bias + col : nullptr;
  e.gelu = g.gelu;
  e.c = static_cast<char*>(g.C) + off * esz;
  e.pre = g.P ? static_cast<char*>(g.P) + off * esz : nullptr;
  e.c16 = g.c16;
  e.ldc = g.N;
  if (g.c16) {
    e.part = scratch + (row - m0) * ncb + (col - jc);
    e.ldp = ncb;
  } else {
    e.part = static_cast<float*>(e.c);
    e.ldp = g.N;
  }
  return e;
}

// C[m0..m1, n0..n1] of one batch on one thread; `g` points at the batch. With `bshared` (a one-block,
// one-slice product whose whole B the threads packed together) B is read from there.
MEDIC_BF16 static void rect(const Problem& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1, uint32_t* apack,
                            uint32_t* bpack, float* scratch, const uint32_t* bshared = nullptr) {
  if (m0 >= m1 || n0 >= n1) return;
  alignas(64) float tile[MR * NR];
  const int64_t kcb = even_block(g.K, KC, 2), mcb = even_block(m1 - m0, mc_limit(kcb), MR),
                ncb = even_block(n1 - n0, NC, NR);
  for (int64_t jc = n0; jc < n1; jc += ncb) {
    const int64_t nc = std::min(ncb, n1 - jc);
    for (int64_t pc = 0; pc < g.K; pc += kcb) {
      const int64_t kc = std::min(kcb, g.K - pc), kp = (kc + 1) / 2;
      const bool first = pc == 0, last = pc + kc >= g.K;
      if (!bshared) pack_b(g, jc, nc, pc, kc, bpack);
      const uint32_t* bp = bshared ? bshared : bpack;
      for (int64_t ic = m0; ic < m1; ic += mcb) {
        const int64_t mc = std::min(mcb, m1 - ic);
        if (g.a.stream)
          for (int64_t ir = 0; ir < mc; ir += MR)
            pack_pairs(g.a, ic + ir, pc, static_cast<int>(std::min<int64_t>(MR, mc - ir)), MR, kc, apack + ir * kp);
        else
          pack_rows(g.a, ic, pc, mc, MR, kc, apack);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int n = static_cast<int>(std::min<int64_t>(NR, nc - jr));
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int m = static_cast<int>(std::min<int64_t>(MR, mc - ir));
            const Epilogue e = tile_epilogue(g, ic + ir, jc + jr, first, last, scratch, m0, jc, ncb);
            prefetch_tile(e, m);
            if (m == MR && n == NR && first && last && !g.gelu) {
              micro_store(kp, apack + ir * kp, bp + jr * kp, e);
            } else {
              micro(kp, apack + ir * kp, bp + jr * kp, tile);
              epilogue(tile, m, n, e);
            }
          }
        }
      }
    }
  }
}

#include "gemm_amx.inc"

// Whether this CPU runs the vdpbf16ps kernel (and so the AMX path where present).
bool dpbf16_cpu() {
  const CpuFeatures& f = cpu_features();
  return f.avx512_bf16 && f.avx512bw && f.fma;
}

bool fast_ok(const OpCall& call) { return dpbf16_cpu() && product16(call); }

}  // namespace

void gemm_bf16(const OpCall& call) {
  const GemmDims d = gemm_dims(call);
  if (d.M == 0 || d.N == 0 || d.nb == 0) return;
  if (d.K == 0 || !fast_ok(call)) return gemm_bf16_reference(call);
  const Tensor &A = call.x(0), &B = call.x(1), &C = call.y(0);
  Problem g{};
  g.a = {A.data, A.dtype == DType::BF16, d.lda, !d.ta};
  g.b = {B.data, B.dtype == DType::BF16, d.ldb, d.tb};
  g.bias = call.has_in(2) ? call.x(2).f32() : nullptr;
  g.C = C.data;
  g.P = d.act == 1 ? call.y(1).data : nullptr;
  g.c16 = C.dtype == DType::BF16;
  g.acc = d.acc;
  g.gelu = d.act == 1;
  g.alpha = d.alpha;
  g.M = d.M;
  g.N = d.N;
  g.K = d.K;
  const int64_t nb = d.nb;

  ThreadPool* pool = call.ctx ? call.ctx->pool : nullptr;
  const double work = static_cast<double>(nb) * g.M * g.N * g.K;
  int T = pool ? pool->size() : 1;
  if (work < 96.0 * 96 * 96) T = 1;
  const Amx amx = amx_mode();
  using RectFn =
      void (*)(const Problem&, int64_t, int64_t, int64_t, int64_t, uint32_t*, uint32_t*, float*, const uint32_t*);
  const RectFn run = amx == Amx::hw ? rect_amx<AmxHw> : amx == Amx::emulate ? rect_amx<AmxEmu> : rect;
  const int64_t mr = amx == Amx::off ? MR : AM;  // rows of C per register tile

  // Thread split (as gemm.cpp): whole batches per thread for many small products, else a tm x tn
  // grid of rectangles in whole micro-tiles minimising the largest rectangle's padded area.
  const int64_t mt = (g.M + mr - 1) / mr, ntl = (g.N + NR - 1) / NR;
  const bool by_batch = T > 1 && nb >= 2 * T && static_cast<double>(g.M) * g.N * g.K < 256.0 * 256 * 256;
  // One B block and one K slice (every ViT-B product): the threads first pack B together into one
  // shared buffer, then each computes a band of whole rows against it. (With rectangles, each thread
  // would pack the operand it shares with the others in full: T times the packing of A or of B.)
  const bool shared_b = T > 1 && !by_batch && nb == 1 && g.K <= KC && g.N <= NC && mt >= 2 * T;
  int tm = 1;
  if (T > 1 && !by_batch && !shared_b) {
    double best = 1e300;
    for (int cand = 1; cand <= T; ++cand) {
      if (T % cand) continue;
      const int cn = T / cand;
      const double rows = static_cast<double>((mt + cand - 1) / cand * mr);
      const double cols = static_cast<double>((ntl + cn - 1) / cn * NR);
      const double cost = rows * cols + 12.0 * (rows * std::ceil(cols / NC) + cols);
      if (cost < best) best = cost, tm = cand;
    }
  }
  const int tn = T / tm;

  Workspace& ws = t_ws;
  while (static_cast<int>(ws.a.size()) < T) {
    ws.a.push_back(std::make_unique<Buf>());
    ws.b.push_back(std::make_unique<Buf>());
    ws.part.push_back(std::make_unique<Buf>());
  }
  const int64_t kp_max = (std::min(KC, g.K) + 1) / 2;
  const int64_t kps_max = amx == Amx::off ? kp_max : tile_pairs(kp_max);  // B panels' pairs
  const int64_t nc_max = std::min<int64_t>(NC, ntl * NR);
  const int64_t rows_max = by_batch || T == 1 ? mt * mr : (mt + tm - 1) / tm * mr;
  // the A block (mcb <= MC rows of kp pairs), or for AMX the block and the rows form's staging copy
  // (rect_amx: each at most max(kABytes, AM rows of kps_max pairs))
  const size_t a_bytes = amx == Amx::off ? static_cast<size_t>(kp_max * MC) * 4
                                         : 2 * std::max<size_t>(kABytes, static_cast<size_t>(AM * kps_max) * 4);
  const bool need_part = g.c16 && g.K > KC;
  if (shared_b) ws.shared_b.reserve(static_cast<size_t>(kps_max * nc_max) * 4);  // all of B: K <= KC, N <= NC
  for (int t = 0; t < T; ++t) {
    ws.a[t]->reserve(a_bytes);
    if (!shared_b) ws.b[t]->reserve(static_cast<size_t>(kps_max * nc_max) * 4);
    if (need_part) ws.part[t]->reserve(static_cast<size_t>(rows_max * nc_max) * 4);
  }
  const size_t ea = g.a.bf16 ? 2 : 4, eb = g.b.bf16 ? 2 : 4, ec = g.c16 ? 2 : 4;
  const int64_t sa = g.M * g.K, sb = g.K * g.N, sc = g.M * g.N;
  auto batch_rect = [&](int tid, int64_t bi, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    Problem p = g;
    p.a.p = static_cast<const char*>(g.a.p) + bi * sa * ea;
    p.b.p = static_cast<const char*>(g.b.p) + bi * sb * eb;
    p.C = static_cast<char*>(g.C) + bi * sc * ec;
    p.P = g.P ? static_cast<char*>(g.P) + bi * sc * ec : nullptr;
    run(p, m0, m1, n0, n1, static_cast<uint32_t*>(ws.a[tid]->p), static_cast<uint32_t*>(ws.b[tid]->p),
        static_cast<float*>(ws.part[tid]->p), nullptr);
  };
  if (T == 1) {
    for (int64_t bi = 0; bi < nb; ++bi) batch_rect(0, bi, 0, g.M, 0, g.N);
    return;
  }
  if (by_batch) {
    pool->run([&](int tid, int nt) {
      for (int64_t bi = tid; bi < nb; bi += nt) batch_rect(tid, bi, 0, g.M, 0, g.N);
    });
    return;
  }
  if (shared_b) {
    uint32_t* bp = static_cast<uint32_t*>(ws.shared_b.p);
    pool->run([&](int tid, int nt) {  // each thread packs a run of whole panels
      const int64_t j0 = ntl * tid / nt * NR, j1 = std::min(g.N, ntl * (tid + 1) / nt * NR);
      if (j0 < j1) pack_b(g, j0, j1 - j0, 0, g.K, bp + j0 * kps_max, kps_max, true);
    });
    pool->run([&](int tid, int nt) {
      const int64_t m0 = std::min(g.M, mt * tid / nt * mr), m1 = std::min(g.M, mt * (tid + 1) / nt * mr);
      run(g, m0, m1, 0, g.N, static_cast<uint32_t*>(ws.a[tid]->p), nullptr, static_cast<float*>(ws.part[tid]->p), bp);
    });
    return;
  }
  pool->run([&](int tid, int) {
    const int im = tid / tn, in = tid % tn;
    const int64_t m0 = std::min(g.M, mt * im / tm * mr), m1 = std::min(g.M, mt * (im + 1) / tm * mr);
    const int64_t n0 = std::min(g.N, ntl * in / tn * NR), n1 = std::min(g.N, ntl * (in + 1) / tn * NR);
    for (int64_t bi = 0; bi < nb; ++bi) batch_rect(tid, bi, m0, m1, n0, n1);
  });
}

}  // namespace medic::cpu

namespace medic {

const char* cpu_bf16_gemm_kernel() {
  if (!cpu::dpbf16_cpu()) return "fp32-fallback";
  switch (cpu::amx_mode()) {
    case cpu::Amx::hw: return "amx-bf16";
    case cpu::Amx::emulate: return "amx-bf16 (emulated: MEDIC_CPU_AMX=emulate)";
    case cpu::Amx::off: break;
  }
  return "avx512bf16";
}

}  // namespace medic
