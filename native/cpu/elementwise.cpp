// Elementwise ops: fill, copy, cast, add, sum_to, GELU (erf and quick), LayerScale + DropPath + residual
// (scale_add) and the drop-path keep mask. Contracts in ops.h; shapes are checked in op_checks.cpp.
//
// Shape letters: n flat element count; R rows (all leading dims flattened); C (or S) the last dim(s);
// B batch (dim 0 of scale_add's x).
//
// All of these are memory-bound: the loops are plain, branch-free and contiguous so the compiler
// vectorises them at the baseline ISA, and the work is split over ctx.pool in large contiguous ranges.
// Reductions over rows (sum_to, dgamma) split the *columns* between threads, so every output element
// is summed by one thread in row order: results do not depend on the thread count. The exception is
// sum_to with few columns over many rows, which adds per-thread row-block partials in thread order
// (deterministic for a given thread count only).
//
// Mixed precision: copy, add, sum_to, the GELUs and scale_add (and backwards) are templated on the
// storage of their activations (bf16_io.h): bf16 is widened and rounded in registers, the arithmetic
// being the fp32 kernel's, so the bits are those of the fp32 kernel on widened copies (ops.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "medic/engine.h"
#include "medic/op_args.h"
#include "medic/ops.h"
#include "medic/rng.h"
#include "medic/threads.h"

#include "bf16_io.h"
#include "isa.h"

namespace medic::cpu {

namespace {

// Elements per task for flat elementwise loops: big enough that a task outweighs the wake-up cost.
constexpr int64_t kGrain = 16384;
// Columns per task in column-split reductions (a multiple of the vector width).
constexpr int64_t kColGrain = 64;
// Columns summed together in one pass over the rows.
constexpr int64_t kStrip = 64;

// Rows per task so that a task holds about kGrain elements.
int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, cols)); }

ThreadPool& pool(const OpCall& c) { return *c.ctx->pool; }

// Split [0, n) over the pool; fn(i0, i1) on contiguous ranges.
template <class F>
void par(const OpCall& c, int64_t n, int64_t grain, F&& fn) {
  pool(c).parallel_for(n, grain, [&](int64_t a, int64_t b) { fn(a, b); });
}

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
constexpr float kQuickGelu = 1.702f;

// ---- Memory-bound bodies (copy, add, sum_to, scale_add and its backward) ---------------------
// One argument block for all of them; T is the storage of the activations (f32, or bf16 widened and
// rounded in registers: bf16_io.h). Each body is compiled three times (baseline, AVX2, AVX-512, picked
// at run time, isa.h) because the bf16 conversions only vectorise well with the wider ISAs. The
// variants are compiled with fp-contract off: no multiply-add is fused, so every path (and f32 and
// bf16 alike) rounds each product and sum as the baseline does, giving the same bits.
// TY, the storage of y, may differ from T's in scale_add and its backward: the mixed-precision step
// adds a bf16 branch output into the f32 residual stream (and its backward reads that bf16 y). TO, the
// storage of out, differs from T's in scale_add_bwd's mixed form: the f32 stream's gradient dx in, the
// bf16 branch's gradient dy out (a gradient the branch's gemms read as bf16 anyway).
template <class T, class TY = T, class TO = T>
struct Ew {
  const T* x;   // the op's input (copy, add: a; scale_add_bwd: dx)
  const TY* y;  // add: b; scale_add (and bwd): the branch output y
  TO* out;      // copy/add: y; scale_add: x; scale_add_bwd: dy
  const float *gamma, *keep;
  float* f;  // sum_to: y; scale_add_bwd: dgamma (or null)
  float alpha;
  bool acc;
  int64_t C, R, L;  // row width, rows, rows per sample (keep)
};

template <class T>
MEDIC_INLINE void copy_body(const Ew<T>& e, int64_t a, int64_t b, float*) {
  const T* x = e.x;
  T* y = e.out;
  const float alpha = e.alpha;
  if (e.acc)
    for (int64_t i = a; i < b; ++i) st(y, i, alpha * ld(x, i) + ld(y, i));
  else
    for (int64_t i = a; i < b; ++i) st(y, i, alpha * ld(x, i));
}

template <class T>
MEDIC_INLINE void add_body(const Ew<T>& e, int64_t r0, int64_t r1, float*) {
  const int64_t S = e.C;
  for (int64_t r = r0; r < r1; ++r) {
    const T* ar = e.x + r * S;
    T* yr = e.out + r * S;
    for (int64_t s = 0; s < S; ++s) st(yr, s, ld(ar, s) + ld(e.y, s));
  }
}

// sum_to, columns [c0, c1) over all rows, in strips of kStrip columns: the running sums stay in L1
// and each strip is one forward stream.
template <class T>
MEDIC_INLINE void sum_cols_body(const Ew<T>& e, int64_t c0, int64_t c1, float*) {
  const int64_t S = e.C;
  float part[kStrip];
  for (int64_t s0 = c0; s0 < c1; s0 += kStrip) {
    const int64_t w = std::min<int64_t>(kStrip, c1 - s0);
    for (int64_t s = 0; s < w; ++s) part[s] = 0.0f;
    for (int64_t r = 0; r < e.R; ++r) {
      const T* xr = e.x + r * S + s0;
      for (int64_t s = 0; s < w; ++s) part[s] += ld(xr, s);
    }
    float* ys = e.f + s0;
    for (int64_t s = 0; s < w; ++s) ys[s] = e.acc ? ys[s] + part[s] : part[s];
  }
}

// sum_to, rows [r0, r1) into the partial p [S].
template <class T>
MEDIC_INLINE void sum_rows_body(const Ew<T>& e, int64_t r0, int64_t r1, float* p) {
  const int64_t S = e.C;
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = e.x + r * S;
    for (int64_t s = 0; s < S; ++s) p[s] += ld(xr, s);
  }
}

template <class T, class TY>
MEDIC_INLINE void scale_add_body(const Ew<T, TY>& e, int64_t r0, int64_t r1, float*) {
  const int64_t C = e.C;
  const float* gamma = e.gamma;
  for (int64_t r = r0; r < r1; ++r) {
    float k = e.keep ? e.keep[r / e.L] : 1.0f;
    if (k == 0.0f) continue;
    T* xr = e.out + r * C;
    const TY* yr = e.y + r * C;
    if (gamma) {
      for (int64_t j = 0; j < C; ++j) st(xr, j, ld(xr, j) + k * (gamma[j] * ld(yr, j)));
    } else if (k == 1.0f) {
      for (int64_t j = 0; j < C; ++j) st(xr, j, ld(xr, j) + ld(yr, j));
    } else {
      for (int64_t j = 0; j < C; ++j) st(xr, j, ld(xr, j) + k * ld(yr, j));
    }
  }
}

// scale_add_bwd, columns [c0, c1) over all rows, in strips of kStrip columns (running dgamma sums
// stay in L1).
template <class T, class TY, class TO>
MEDIC_INLINE void sab_cols_body(const Ew<T, TY, TO>& e, int64_t c0, int64_t c1, float*) {
  const int64_t C = e.C;
  float* dgamma = e.f;
  float dg[kStrip];
  for (int64_t j0 = c0; j0 < c1; j0 += kStrip) {
    const int64_t w = std::min<int64_t>(kStrip, c1 - j0);
    for (int64_t j = 0; j < w; ++j) dg[j] = 0.0f;
    const float* g = e.gamma ? e.gamma + j0 : nullptr;
    for (int64_t r = 0; r < e.R; ++r) {
      float k = e.keep ? e.keep[r / e.L] : 1.0f;
      const T* dxr = e.x + r * C + j0;
      const TY* yr = e.y + r * C + j0;
      TO* dyr = e.out + r * C + j0;
      if (e.acc) {
        if (g)
          for (int64_t j = 0; j < w; ++j) st(dyr, j, ld(dyr, j) + k * (g[j] * ld(dxr, j)));
        else
          for (int64_t j = 0; j < w; ++j) st(dyr, j, ld(dyr, j) + k * ld(dxr, j));
      } else {
        if (g)
          for (int64_t j = 0; j < w; ++j) st(dyr, j, k * (g[j] * ld(dxr, j)));
        else
          for (int64_t j = 0; j < w; ++j) st(dyr, j, k * ld(dxr, j));
      }
      if (dgamma && k != 0.0f)
        for (int64_t j = 0; j < w; ++j) dg[j] += k * (ld(dxr, j) * ld(yr, j));
    }
    if (dgamma)
      for (int64_t j = 0; j < w; ++j) dgamma[j0 + j] += dg[j];
  }
}

// scale_add_bwd without dgamma, rows [r0, r1).
template <class T, class TY, class TO>
MEDIC_INLINE void sab_rows_body(const Ew<T, TY, TO>& e, int64_t r0, int64_t r1, float*) {
  const int64_t C = e.C;
  for (int64_t r = r0; r < r1; ++r) {
    float k = e.keep ? e.keep[r / e.L] : 1.0f;
    const T* dxr = e.x + r * C;
    TO* dyr = e.out + r * C;
    for (int64_t j = 0; j < C; ++j) {
      float v = k * (e.gamma ? e.gamma[j] * ld(dxr, j) : ld(dxr, j));
      st(dyr, j, e.acc ? ld(dyr, j) + v : v);
    }
  }
}

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#define MEDIC_EW_VARIANTS(name)                                                               \
  template <class T, class TY = T, class TO = T>                                              \
  void name##_k_base(const Ew<T, TY, TO>& e, int64_t a, int64_t b, float* p) {                \
    name##_body(e, a, b, p);                                                                  \
  }                                                                                           \
  template <class T, class TY = T, class TO = T>                                              \
  MEDIC_AVX2 void name##_k_avx2(const Ew<T, TY, TO>& e, int64_t a, int64_t b, float* p) {     \
    name##_body(e, a, b, p);                                                                  \
  }                                                                                           \
  template <class T, class TY = T, class TO = T>                                              \
  MEDIC_AVX512 void name##_k_avx512(const Ew<T, TY, TO>& e, int64_t a, int64_t b, float* p) { \
    name##_body(e, a, b, p);                                                                  \
  }
MEDIC_EW_VARIANTS(copy)
MEDIC_EW_VARIANTS(add)
MEDIC_EW_VARIANTS(sum_cols)
MEDIC_EW_VARIANTS(sum_rows)
MEDIC_EW_VARIANTS(scale_add)
MEDIC_EW_VARIANTS(sab_cols)
MEDIC_EW_VARIANTS(sab_rows)
#undef MEDIC_EW_VARIANTS
#pragma GCC pop_options

}  // namespace

// ---------------------------------------------------------------------------------------------
// fill: x = value, converted to x's dtype (bf16 rounds to nearest even; i32/u8 truncate as a C cast).
void fill(const OpCall& c) {
  const Tensor& x = c.y(0);
  int64_t n = x.numel();
  double v = fill_value(c);
  switch (x.dtype) {
    case DType::F32: {
      float f = static_cast<float>(v);
      float* p = x.f32();
      par(c, n, kGrain, [&](int64_t a, int64_t b) { std::fill(p + a, p + b, f); });
      break;
    }
    case DType::BF16: {
      uint16_t h = f32_to_bf16(static_cast<float>(v));
      uint16_t* p = x.bf16();
      par(c, n, kGrain, [&](int64_t a, int64_t b) { std::fill(p + a, p + b, h); });
      break;
    }
    case DType::I32: {
      int32_t k = static_cast<int32_t>(v);
      int32_t* p = x.i32();
      par(c, n, kGrain, [&](int64_t a, int64_t b) { std::fill(p + a, p + b, k); });
      break;
    }
    case DType::U8: {
      uint8_t k = static_cast<uint8_t>(static_cast<int32_t>(v));
      std::memset(x.u8(), k, static_cast<size_t>(n));
      break;
    }
  }
}

// copy: y = alpha * x (+ y when acc). y may alias x. T: the storage of x and y (bf16_io.h).
template <class T>
static void copy_t(const OpCall& c) {
  Ew<T> e{};
  e.x = static_cast<const T*>(c.x(0).data);
  e.out = static_cast<T*>(c.y(0).data);
  const CopyArgs args = copy_args(c);
  e.alpha = args.alpha;
  e.acc = args.acc;
  const auto fn = pick_isa_variant(copy_k_base<T>, copy_k_avx2<T>, copy_k_avx512<T>);
  par(c, c.x(0).numel(), kGrain, [&](int64_t a, int64_t b) {
    if (!e.acc && e.alpha == 1.0f) {
      if (e.out != e.x) std::memmove(e.out + a, e.x + a, static_cast<size_t>(b - a) * sizeof(T));
    } else {
      fn(e, a, b, nullptr);
    }
  });
}

void copy(const OpCall& c) {
  switch (storage_of({&c.x(0), &c.y(0)})) {
    case Storage::f32: return copy_t<float>(c);
    case Storage::bf16: return copy_t<uint16_t>(c);
    case Storage::mixed: return run_widened(c, copy);
  }
}

// cast: f32 -> bf16 rounds to nearest even (NaN stays NaN); bf16 -> f32 is exact; same dtype copies.
void cast(const OpCall& c) {
  const Tensor &x = c.x(0), &y = c.y(0);
  int64_t n = x.numel();
  if (x.dtype == y.dtype) {
    if (x.data != y.data) std::memmove(y.data, x.data, x.nbytes());
    return;
  }
  if (x.dtype == DType::F32) {
    const float* s = x.f32();
    uint16_t* d = y.bf16();
    par(c, n, kGrain, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) d[i] = f32_to_bf16(s[i]);
    });
  } else {
    const uint16_t* s = x.bf16();
    float* d = y.f32();
    par(c, n, kGrain, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) d[i] = bf16_to_f32(s[i]);
    });
  }
}

// add: y [R, S] = a [R, S] + b [S]. y may alias a.
template <class T>
static void add_t(const OpCall& c) {
  Ew<T> e{};
  e.x = static_cast<const T*>(c.x(0).data);
  e.y = static_cast<const T*>(c.x(1).data);
  e.out = static_cast<T*>(c.y(0).data);
  e.C = c.x(1).numel();
  const int64_t R = e.C ? c.x(0).numel() / e.C : 0;
  const auto fn = pick_isa_variant(add_k_base<T>, add_k_avx2<T>, add_k_avx512<T>);
  par(c, R, row_grain(e.C), [&](int64_t r0, int64_t r1) { fn(e, r0, r1, nullptr); });
}

void add(const OpCall& c) {
  switch (storage_of({&c.x(0), &c.x(1), &c.y(0)})) {
    case Storage::f32: return add_t<float>(c);
    case Storage::bf16: return add_t<uint16_t>(c);
    case Storage::mixed: return run_widened(c, add);
  }
}

// sum_to: y [S] = sum over rows of x [R, S] (+ y when acc). Column split: each y[s] is summed in row
// order by one thread. With few columns (S < 2 * kColGrain) rows are split instead, each thread
// summing a row block into its own partial, then the partials are added in thread order.
// TX: the storage of x (y is f32).
template <class TX>
static void sum_to_t(const OpCall& c) {
  Ew<TX> e{};
  e.x = static_cast<const TX*>(c.x(0).data);
  float* y = c.y(0).f32();
  e.f = y;
  e.C = c.y(0).numel();
  const int64_t S = e.C;
  e.R = S ? c.x(0).numel() / S : 0;
  const int64_t R = e.R;
  e.acc = accumulates(c);
  int nt = pool(c).size();
  if (S >= 2 * kColGrain || nt == 1 || R * S < 4 * kGrain) {
    const auto fn = pick_isa_variant(sum_cols_k_base<TX>, sum_cols_k_avx2<TX>, sum_cols_k_avx512<TX>);
    par(c, S, S >= 2 * kColGrain ? kColGrain : S, [&](int64_t c0, int64_t c1) { fn(e, c0, c1, nullptr); });
    return;
  }
  std::vector<float> parts(static_cast<size_t>(nt) * S, 0.0f);
  const auto fn = pick_isa_variant(sum_rows_k_base<TX>, sum_rows_k_avx2<TX>, sum_rows_k_avx512<TX>);
  pool(c).run(
      [&](int tid, int n) { fn(e, R * tid / n, R * (tid + 1) / n, parts.data() + static_cast<size_t>(tid) * S); });
  for (int64_t s = 0; s < S; ++s) {
    float t = 0.0f;
    for (int k = 0; k < nt; ++k) t += parts[static_cast<size_t>(k) * S + s];
    y[s] = e.acc ? y[s] + t : t;
  }
}

void sum_to(const OpCall& c) {
  if (c.x(0).dtype == DType::BF16) return sum_to_t<uint16_t>(c);
  sum_to_t<float>(c);
}

// ---------------------------------------------------------------------------------------------
// GELU, erf form: y = x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2; dy/dx = Phi(x) + x phi(x).
// QuickGELU (CLIP): y = x s, s = sigmoid(1.702 x); dy/dx = s + 1.702 x s (1 - s).
//
// std::erf / std::exp are scalar library calls (~10 ns each); these ops run on the 4*D-wide MLP
// activations, so they get branch-free versions that the compiler vectorises:
//   vexp: exp by 2^n scaling and a degree-7 Taylor polynomial on |r| <= ln2 / 2 (error < 1e-8 relative
//         before rounding), argument clamped to the normal f32 range (NaN passes through).
//   erfc: Numerical Recipes' erfcc (Chebyshev fit, fractional error < 1.2e-7 for all z >= 0):
//         erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2).
// Phi from erfc of |z| is accurate in relative terms on both tails (no 1 + erf cancellation for x < 0).
// The bodies are compiled three times (baseline, AVX2+FMA, AVX-512) and picked by cpu_features() (isa.h).

namespace {

MEDIC_INLINE float vexp(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float n = (x * 1.44269504088896341f + magic) - magic;
  float r = x - n * 0.693145751953125f;  // ln 2 split in a high part exact in f32 ...
  r = r - n * 1.428606765330187e-06f;    // ... and the rest
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &bits, 4);
  return p * scale;
}

// erfc(z) for z >= 0.
MEDIC_INLINE float erfc_pos(float z) {
  float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  return t * vexp(p - z * z);
}

// Phi(x) = P(N(0,1) <= x).
MEDIC_INLINE float norm_cdf(float x) {
  float h = 0.5f * erfc_pos(std::fabs(x) * kInvSqrt2);
  return x < 0.0f ? h : 1.0f - h;
}

// Bodies templated on the storage T of x, y, dy and dx (float, or uint16_t for bf16: bf16_io.h).
template <class T>
MEDIC_INLINE void gelu_body(const T* x, T* y, int64_t a, int64_t b) {
  for (int64_t i = a; i < b; ++i) {
    const float v = ld(x, i);
    st(y, i, v * norm_cdf(v));
  }
}

// A forward body on bf16 storage, a chunk at a time through f32 stack buffers: the widening, the
// arithmetic and the rounding each vectorise as their own loop (one fused loop of all three left
// quick_gelu 1.7x slower on bf16 than on f32 here, for half the bytes). The same values, so the same bits.
template <void (*Body)(const float*, float*, int64_t, int64_t)>
MEDIC_INLINE void bf16_chunks(const uint16_t* x, uint16_t* y, int64_t a, int64_t b) {
  constexpr int64_t kChunk = 512;
  alignas(64) float xf[kChunk], yf[kChunk];
  for (int64_t i = a; i < b; i += kChunk) {
    const int64_t n = std::min(kChunk, b - i);
    for (int64_t j = 0; j < n; ++j) xf[j] = ld(x, i + j);
    Body(xf, yf, 0, n);
    for (int64_t j = 0; j < n; ++j) st(y, i + j, yf[j]);
  }
}

// The backwards read x in TX (the step's bf16 pre-activation beside f32 gradients, or T) and write dx
// in TO (T, or the step's bf16 gradient of a pre-activation, which only bf16 gemms and a bias read).
template <class T, class TX, class TO = T>
MEDIC_INLINE void gelu_bwd_body(const TX* x, const T* dy, TO* dx, bool acc, int64_t a, int64_t b) {
  for (int64_t i = a; i < b; ++i) {
    float v = ld(x, i);
    float g = ld(dy, i) * (norm_cdf(v) + v * (kInvSqrt2Pi * vexp(-0.5f * v * v)));
    st(dx, i, acc ? ld(dx, i) + g : g);
  }
}

template <class T>
MEDIC_INLINE void quick_body(const T* x, T* y, int64_t a, int64_t b) {
  for (int64_t i = a; i < b; ++i) {
    const float v = ld(x, i);
    st(y, i, v / (1.0f + vexp(-kQuickGelu * v)));
  }
}

template <class T, class TX, class TO = T>
MEDIC_INLINE void quick_bwd_body(const TX* x, const T* dy, TO* dx, bool acc, int64_t a, int64_t b) {
  for (int64_t i = a; i < b; ++i) {
    float v = ld(x, i);
    float s = 1.0f / (1.0f + vexp(-kQuickGelu * v));
    float g = ld(dy, i) * (s + kQuickGelu * v * s * (1.0f - s));
    st(dx, i, acc ? ld(dx, i) + g : g);
  }
}

template <class T>
using FwdFn = void (*)(const T*, T*, int64_t, int64_t);
template <class T, class TX, class TO = T>
using BwdFn = void (*)(const TX*, const T*, TO*, bool, int64_t, int64_t);

// T = float runs the body as it is; T = uint16_t (bf16) runs the f32 body in chunks (bf16_chunks).
template <class T, void (*Body)(const float*, float*, int64_t, int64_t)>
MEDIC_INLINE void fwd_storage(const T* x, T* y, int64_t a, int64_t b) {
  if constexpr (std::is_same_v<T, uint16_t>)
    bf16_chunks<Body>(x, y, a, b);
  else
    Body(x, y, a, b);
}
#define MEDIC_VARIANTS(body, name)                                          \
  template <class T>                                                        \
  void name##_base(const T* x, T* y, int64_t a, int64_t b) {                \
    fwd_storage<T, body<float>>(x, y, a, b);                                \
  }                                                                         \
  template <class T>                                                        \
  MEDIC_AVX2 void name##_avx2(const T* x, T* y, int64_t a, int64_t b) {     \
    fwd_storage<T, body<float>>(x, y, a, b);                                \
  }                                                                         \
  template <class T>                                                        \
  MEDIC_AVX512 void name##_avx512(const T* x, T* y, int64_t a, int64_t b) { \
    fwd_storage<T, body<float>>(x, y, a, b);                                \
  }
MEDIC_VARIANTS(gelu_body, gelu_k)
MEDIC_VARIANTS(quick_body, quick_k)
#undef MEDIC_VARIANTS
#define MEDIC_BWD_VARIANTS(body, name)                                                                \
  template <class T, class TX, class TO = T>                                                          \
  void name##_base(const TX* x, const T* dy, TO* dx, bool acc, int64_t a, int64_t b) {                \
    body<T, TX, TO>(x, dy, dx, acc, a, b);                                                            \
  }                                                                                                   \
  template <class T, class TX, class TO = T>                                                          \
  MEDIC_AVX2 void name##_avx2(const TX* x, const T* dy, TO* dx, bool acc, int64_t a, int64_t b) {     \
    body<T, TX, TO>(x, dy, dx, acc, a, b);                                                            \
  }                                                                                                   \
  template <class T, class TX, class TO = T>                                                          \
  MEDIC_AVX512 void name##_avx512(const TX* x, const T* dy, TO* dx, bool acc, int64_t a, int64_t b) { \
    body<T, TX, TO>(x, dy, dx, acc, a, b);                                                            \
  }
MEDIC_BWD_VARIANTS(gelu_bwd_body, gelu_bwd_k)
MEDIC_BWD_VARIANTS(quick_bwd_body, quick_bwd_k)
#undef MEDIC_BWD_VARIANTS

template <class T>
void run_fwd(const OpCall& c, FwdFn<T> fn) {
  const T* x = static_cast<const T*>(c.x(0).data);
  T* y = static_cast<T*>(c.y(0).data);
  pool(c).parallel_for(c.x(0).numel(), kGrain, [&](int64_t a, int64_t b) { fn(x, y, a, b); });
}

template <class T, class TX, class TO = T>
void run_bwd(const OpCall& c, BwdFn<T, TX, TO> fn) {
  const TX* x = static_cast<const TX*>(c.x(0).data);
  const T* dy = static_cast<const T*>(c.x(1).data);
  TO* dx = static_cast<TO*>(c.y(0).data);
  bool acc = accumulates(c);
  pool(c).parallel_for(c.x(0).numel(), kGrain, [&](int64_t a, int64_t b) { fn(x, dy, dx, acc, a, b); });
}

}  // namespace

// Each op: its f32 or bf16 instantiation when x, y (dy, dx) share one storage; a backward with a bf16
// x and an f32 dy (the mixed-precision step's forms: dx f32, or bf16 for a gemm's pre-activation) has
// its own; any other mix runs the f32 kernel on widened copies.
#define MEDIC_FWD(op, k)                                                                                             \
  void op(const OpCall& c) {                                                                                         \
    switch (storage_of({&c.x(0), &c.y(0)})) {                                                                        \
      case Storage::f32:                                                                                             \
        return run_fwd<float>(c, pick_isa_variant(k##_base<float>, k##_avx2<float>, k##_avx512<float>));             \
      case Storage::bf16:                                                                                            \
        return run_fwd<uint16_t>(c, pick_isa_variant(k##_base<uint16_t>, k##_avx2<uint16_t>, k##_avx512<uint16_t>)); \
      case Storage::mixed: return run_widened(c, op);                                                                \
    }                                                                                                                \
  }
#define MEDIC_BWD(op, k)                                                                                \
  void op(const OpCall& c) {                                                                            \
    switch (storage_of({&c.x(0), &c.x(1), &c.y(0)})) {                                                  \
      case Storage::f32: return run_bwd<float, float>(c, MEDIC_PICK(k, float, float));                  \
      case Storage::bf16: return run_bwd<uint16_t, uint16_t>(c, MEDIC_PICK(k, uint16_t, uint16_t));     \
      case Storage::mixed:                                                                              \
        if (c.x(0).dtype == DType::BF16 && c.x(1).dtype == DType::F32)                                  \
          return c.y(0).dtype == DType::F32                                                             \
                     ? run_bwd<float, uint16_t>(c, MEDIC_PICK(k, float, uint16_t))                      \
                     : run_bwd<float, uint16_t, uint16_t>(c, MEDIC_PICK(k, float, uint16_t, uint16_t)); \
        return run_widened(c, op);                                                                      \
    }                                                                                                   \
  }
#define MEDIC_PICK(k, ...) pick_isa_variant(k##_base<__VA_ARGS__>, k##_avx2<__VA_ARGS__>, k##_avx512<__VA_ARGS__>)
MEDIC_FWD(gelu, gelu_k)
MEDIC_BWD(gelu_bwd, gelu_bwd_k)
MEDIC_FWD(quick_gelu, quick_k)
MEDIC_BWD(quick_gelu_bwd, quick_bwd_k)
#undef MEDIC_FWD
#undef MEDIC_BWD
#undef MEDIC_PICK

// ---------------------------------------------------------------------------------------------
// scale_add: x [B, L, C] += keep[b] * gamma[c] * y (L = the middle dims flattened). Rows whose keep is
// 0 (dropped paths) are skipped: x stays as it is.
// T: the storage of x, TY: of y.
template <class T, class TY>
static void scale_add_t(const OpCall& c) {
  const Tensor& X = c.y(0);
  Ew<T, TY> e{};
  e.out = static_cast<T*>(X.data);
  e.y = static_cast<const TY*>(c.x(0).data);
  e.gamma = c.has_in(1) ? c.x(1).f32() : nullptr;
  e.keep = c.has_in(2) ? c.x(2).f32() : nullptr;
  e.C = X.shape[-1];
  const int64_t R = X.shape.leading(1), B = X.shape[0];
  e.L = B ? R / B : 0;
  const auto fn = pick_isa_variant(scale_add_k_base<T, TY>, scale_add_k_avx2<T, TY>, scale_add_k_avx512<T, TY>);
  par(c, R, row_grain(e.C), [&](int64_t r0, int64_t r1) { fn(e, r0, r1, nullptr); });
}

// scale_add_bwd: dy = keep[b] gamma dx (+ dy when acc); dgamma[c] += sum_{b,l} keep[b] dx y.
// Column split so dgamma needs no cross-thread reduction.
// T: the storage of dx, TY: of y, TO: of dy.
template <class T, class TY, class TO = T>
static void scale_add_bwd_t(const OpCall& c) {
  const Tensor& DX = c.x(0);
  Ew<T, TY, TO> e{};
  e.x = static_cast<const T*>(DX.data);
  e.y = static_cast<const TY*>(c.x(1).data);
  e.gamma = c.has_in(2) ? c.x(2).f32() : nullptr;
  e.keep = c.has_in(3) ? c.x(3).f32() : nullptr;
  e.out = static_cast<TO*>(c.y(0).data);
  e.f = c.has_out(1) ? c.y(1).f32() : nullptr;  // dgamma
  e.acc = accumulates(c);
  e.C = DX.shape[-1];
  e.R = DX.shape.leading(1);
  const int64_t B = DX.shape[0];
  e.L = B ? e.R / B : 0;
  if (e.f || e.R < 4 * pool(c).size()) {
    const auto fn =
        pick_isa_variant(sab_cols_k_base<T, TY, TO>, sab_cols_k_avx2<T, TY, TO>, sab_cols_k_avx512<T, TY, TO>);
    par(c, e.C, kColGrain, [&](int64_t c0, int64_t c1) { fn(e, c0, c1, nullptr); });
  } else {
    // No reduction: split rows instead (better when C is narrow).
    const auto fn =
        pick_isa_variant(sab_rows_k_base<T, TY, TO>, sab_rows_k_avx2<T, TY, TO>, sab_rows_k_avx512<T, TY, TO>);
    par(c, e.R, row_grain(e.C), [&](int64_t r0, int64_t r1) { fn(e, r0, r1, nullptr); });
  }
}

// Both also take the mixed-precision step's form: a bf16 y beside the f32 stream and gradients (the
// backward's dy either f32 or bf16).
void scale_add(const OpCall& c) {
  switch (storage_of({&c.x(0), &c.y(0)})) {
    case Storage::f32: return scale_add_t<float, float>(c);
    case Storage::bf16: return scale_add_t<uint16_t, uint16_t>(c);
    case Storage::mixed:
      if (c.x(0).dtype == DType::BF16) return scale_add_t<float, uint16_t>(c);
      return run_widened(c, scale_add);
  }
}

void scale_add_bwd(const OpCall& c) {
  switch (storage_of({&c.x(0), &c.x(1), &c.y(0)})) {
    case Storage::f32: return scale_add_bwd_t<float, float>(c);
    case Storage::bf16: return scale_add_bwd_t<uint16_t, uint16_t>(c);
    case Storage::mixed:
      if (c.x(0).dtype == DType::F32 && c.x(1).dtype == DType::BF16)
        return c.y(0).dtype == DType::F32 ? scale_add_bwd_t<float, uint16_t>(c)
                                          : scale_add_bwd_t<float, uint16_t, uint16_t>(c);
      return run_widened(c, scale_add_bwd);
  }
}

// drop_path_mask: keep[b] = 0 with probability p, else 1 / (1 - p), from the counter-based RNG:
// u = rng_uniform(seed64, stream, row0 + b), seed64 = seed[0] | seed[1] << 32 (as uint32 words).
void drop_path_mask(const OpCall& c) {
  const int32_t* seed = c.x(0).i32();
  float* keep = c.y(0).f32();
  int64_t B = c.y(0).numel();
  const DropPathArgs a = drop_path_args(c);
  const float p = a.p;
  uint64_t seed64 = static_cast<uint64_t>(static_cast<uint32_t>(seed[0])) |
                    (static_cast<uint64_t>(static_cast<uint32_t>(seed[1])) << 32);
  const uint64_t stream = a.stream;
  float kept = 1.0f / (1.0f - p);
  const uint64_t row0 = a.row0;
  for (int64_t b = 0; b < B; ++b)
    keep[b] = rng_uniform(seed64, stream, row0 + static_cast<uint64_t>(b)) < p ? 0.0f : kept;
}

}  // namespace medic::cpu
