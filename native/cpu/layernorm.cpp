// LayerNorm (forward, backward) and MAE's per-patch pixel normalisation. Contracts in ops.h.
//
// Shape letters: R rows (all leading dims of x flattened), C features per row (P pixels for pixel_norm).
//
//   layernorm:  mean = sum(x) / C,  var = sum((x - mean)^2) / d, d = C (biased, as F.layer_norm) or
//               C - 1 (unbiased=1, as torch's var()),  rstd = 1 / sqrt(var + eps),  y = (x - mean) * rstd [* w + b].
//   backward:   xhat = (x - mean) rstd,  g = dy [* w],
//               dx = rstd (g - mean(g) - xhat sum(g xhat) / d),  dw += sum_r dy xhat,  db += sum_r dy.
//   pixel_norm: y = (x - mean) / sqrt(sum((x - mean)^2) / (C - 1) + eps)  (unbiased, as MAE's target).
//
// Statistics are two-pass (mean first, then squared deviations) for accuracy. Row sums use 16 lane
// accumulators, a fixed summation order that the compiler turns into vector code without any
// reassociation licence (no fast-math). The row kernels are written once and compiled three times
// (baseline, AVX2+FMA, AVX-512) through always-inline bodies; cpu_features() picks one at run time.
// Rows are split over ctx.pool; the parameter gradients of the backward go to per-thread partials
// that are added in thread order (deterministic for a given thread count).
// layernorm and its backward are templated on the storage of x, y, dy, dx (f32 or bf16, bf16_io.h):
// bf16 is widened and rounded in registers, with the fp32 kernel's arithmetic and bits.
#include <algorithm>
#include <cmath>
#include <vector>

#include "medic/engine.h"
#include "medic/op_args.h"
#include "medic/ops.h"
#include "medic/threads.h"

#include "bf16_io.h"
#include "isa.h"

namespace medic::cpu {

namespace {

constexpr int kLanes = 16;

MEDIC_INLINE float lanes_total(const float* a) {
  // Pairwise, so the vector code folds halves.
  float t[8];
  for (int l = 0; l < 8; ++l) t[l] = a[l] + a[l + 8];
  for (int l = 0; l < 4; ++l) t[l] += t[l + 4];
  return (t[0] + t[2]) + (t[1] + t[3]);
}

template <class T>
MEDIC_INLINE float row_sum(const T* x, int64_t n) {
  float a[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) a[l] += ld(x, j + l);
  for (int l = 0; j < n; ++j, ++l) a[l] += ld(x, j);
  return lanes_total(a);
}

template <class T>
MEDIC_INLINE float row_sq_dev(const T* x, int64_t n, float m) {
  float a[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      float d = ld(x, j + l) - m;
      a[l] += d * d;
    }
  for (int l = 0; j < n; ++j, ++l) {
    float d = ld(x, j) - m;
    a[l] += d * d;
  }
  return lanes_total(a);
}

// T: the storage of x, TY: of y (bf16_io.h; the mixed-precision step normalises its f32 residual
// stream into bf16, TY = bf16 beside T = f32); parameters and statistics are f32.
template <class T, class TY = T>
struct LnFwd {
  const T* x;
  const float *w, *b;
  TY* y;
  float *mean, *rstd;
  int64_t C;
  float eps, var_div;
};

template <class T, class TY>
MEDIC_INLINE void ln_fwd_body(const LnFwd<T, TY>& a, int64_t r0, int64_t r1) {
  const int64_t C = a.C;
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = a.x + r * C;
    TY* yr = a.y + r * C;
    float m = row_sum(xr, C) / static_cast<float>(C);
    float var = row_sq_dev(xr, C, m) / a.var_div;
    float rs = 1.0f / std::sqrt(var + a.eps);
    a.mean[r] = m;
    a.rstd[r] = rs;
    if (a.w && a.b) {
      for (int64_t j = 0; j < C; ++j) st(yr, j, (ld(xr, j) - m) * rs * a.w[j] + a.b[j]);
    } else if (a.w) {
      for (int64_t j = 0; j < C; ++j) st(yr, j, (ld(xr, j) - m) * rs * a.w[j]);
    } else {
      for (int64_t j = 0; j < C; ++j) st(yr, j, (ld(xr, j) - m) * rs);
    }
  }
}

// T: the storage of dy, x and dx.
template <class T>
struct LnBwd {
  const T *dy, *x;
  const float *mean, *rstd, *w;
  T* dx;
  int64_t C;
  float var_div;
  bool acc;
};

// Rows [r0, r1); dw/db (per-thread partials, may be null) accumulate.
template <class T>
MEDIC_INLINE void ln_bwd_body(const LnBwd<T>& a, int64_t r0, int64_t r1, float* dw, float* db) {
  const int64_t C = a.C;
  const float inv_c = 1.0f / static_cast<float>(C), inv_d = 1.0f / a.var_div;
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = a.x + r * C;
    const T* dyr = a.dy + r * C;
    T* dxr = a.dx + r * C;
    const float m = a.mean[r], rs = a.rstd[r];
    // sg = sum g, sgx = sum g xhat, with g = dy w.
    float s1[kLanes] = {}, s2[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= C; j += kLanes)
      for (int l = 0; l < kLanes; ++l) {
        float g = a.w ? ld(dyr, j + l) * a.w[j + l] : ld(dyr, j + l);
        s1[l] += g;
        s2[l] += g * ((ld(xr, j + l) - m) * rs);
      }
    for (int l = 0; j < C; ++j, ++l) {
      float g = a.w ? ld(dyr, j) * a.w[j] : ld(dyr, j);
      s1[l] += g;
      s2[l] += g * ((ld(xr, j) - m) * rs);
    }
    const float mg = lanes_total(s1) * inv_c, mgx = lanes_total(s2) * inv_d;
    if (a.w) {
      for (int64_t k = 0; k < C; ++k) {
        float xh = (ld(xr, k) - m) * rs;
        float v = rs * (ld(dyr, k) * a.w[k] - mg - xh * mgx);
        st(dxr, k, a.acc ? ld(dxr, k) + v : v);
      }
    } else {
      for (int64_t k = 0; k < C; ++k) {
        float xh = (ld(xr, k) - m) * rs;
        float v = rs * (ld(dyr, k) - mg - xh * mgx);
        st(dxr, k, a.acc ? ld(dxr, k) + v : v);
      }
    }
    if (dw)
      for (int64_t k = 0; k < C; ++k) dw[k] += ld(dyr, k) * ((ld(xr, k) - m) * rs);
    if (db)
      for (int64_t k = 0; k < C; ++k) db[k] += ld(dyr, k);
  }
}

struct PixNorm {
  const float* x;
  float* y;
  int64_t C;
  float eps;
};

MEDIC_INLINE void pix_body(const PixNorm& a, int64_t r0, int64_t r1) {
  const int64_t C = a.C;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = a.x + r * C;
    float* yr = a.y + r * C;
    float m = row_sum(xr, C) / static_cast<float>(C);
    float var = row_sq_dev(xr, C, m) / static_cast<float>(C - 1);
    float rs = 1.0f / std::sqrt(var + a.eps);
    for (int64_t j = 0; j < C; ++j) yr[j] = (xr[j] - m) * rs;
  }
}

// The three compilations of each body.
template <class T, class TY>
void ln_fwd_base(const LnFwd<T, TY>& a, int64_t r0, int64_t r1) {
  ln_fwd_body(a, r0, r1);
}
template <class T, class TY>
MEDIC_AVX2 void ln_fwd_avx2(const LnFwd<T, TY>& a, int64_t r0, int64_t r1) {
  ln_fwd_body(a, r0, r1);
}
template <class T, class TY>
MEDIC_AVX512 void ln_fwd_avx512(const LnFwd<T, TY>& a, int64_t r0, int64_t r1) {
  ln_fwd_body(a, r0, r1);
}
template <class T>
void ln_bwd_base(const LnBwd<T>& a, int64_t r0, int64_t r1, float* dw, float* db) {
  ln_bwd_body(a, r0, r1, dw, db);
}
template <class T>
MEDIC_AVX2 void ln_bwd_avx2(const LnBwd<T>& a, int64_t r0, int64_t r1, float* dw, float* db) {
  ln_bwd_body(a, r0, r1, dw, db);
}
template <class T>
MEDIC_AVX512 void ln_bwd_avx512(const LnBwd<T>& a, int64_t r0, int64_t r1, float* dw, float* db) {
  ln_bwd_body(a, r0, r1, dw, db);
}
void pix_base(const PixNorm& a, int64_t r0, int64_t r1) { pix_body(a, r0, r1); }
MEDIC_AVX2 void pix_avx2(const PixNorm& a, int64_t r0, int64_t r1) { pix_body(a, r0, r1); }
MEDIC_AVX512 void pix_avx512(const PixNorm& a, int64_t r0, int64_t r1) { pix_body(a, r0, r1); }

int64_t row_grain(int64_t C) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(1, C)); }

}  // namespace

template <class T, class TY>
static void layernorm_t(const OpCall& c) {
  const Tensor& X = c.x(0);
  const NormArgs n = norm_args(c);
  LnFwd<T, TY> a{static_cast<const T*>(X.data),
                 c.has_in(1) ? c.x(1).f32() : nullptr,
                 c.has_in(2) ? c.x(2).f32() : nullptr,
                 static_cast<TY*>(c.y(0).data),
                 c.y(1).f32(),
                 c.y(2).f32(),
                 n.C,
                 n.eps,
                 n.var_div};
  auto fn = pick_isa_variant(ln_fwd_base<T, TY>, ln_fwd_avx2<T, TY>, ln_fwd_avx512<T, TY>);
  c.ctx->pool->parallel_for(n.R, row_grain(a.C), [&](int64_t r0, int64_t r1) { fn(a, r0, r1); });
}

template <class T>
static void layernorm_bwd_t(const OpCall& c) {
  const Tensor& X = c.x(1);
  const NormArgs n = norm_args(c);
  LnBwd<T> a{static_cast<const T*>(c.x(0).data),
             static_cast<const T*>(X.data),
             c.x(2).f32(),
             c.x(3).f32(),
             c.has_in(4) ? c.x(4).f32() : nullptr,
             static_cast<T*>(c.y(0).data),
             n.C,
             n.var_div,
             n.acc};
  float* dw = c.has_out(1) ? c.y(1).f32() : nullptr;
  float* db = c.has_out(2) ? c.y(2).f32() : nullptr;
  const int64_t R = n.R, C = n.C;
  auto fn = pick_isa_variant(ln_bwd_base<T>, ln_bwd_avx2<T>, ln_bwd_avx512<T>);
  ThreadPool& pool = *c.ctx->pool;
  if (!dw && !db) {
    pool.parallel_for(R, row_grain(C), [&](int64_t r0, int64_t r1) { fn(a, r0, r1, nullptr, nullptr); });
    return;
  }
  // Same split as parallel_for, with one partial (dw, db) per part, added in part order.
  int64_t parts = std::min<int64_t>(pool.size(), (R + row_grain(C) - 1) / row_grain(C));
  parts = std::max<int64_t>(parts, 1);
  std::vector<float> part(static_cast<size_t>(parts * 2 * C), 0.0f);
  auto work = [&](int64_t p) {
    float* pw = part.data() + p * 2 * C;
    fn(a, R * p / parts, R * (p + 1) / parts, dw ? pw : nullptr, db ? pw + C : nullptr);
  };
  if (parts == 1)
    work(0);
  else
    pool.run([&](int tid, int) {
      if (tid < parts) work(tid);
    });
  for (int64_t p = 0; p < parts; ++p) {
    const float* pw = part.data() + p * 2 * C;
    if (dw)
      for (int64_t k = 0; k < C; ++k) dw[k] += pw[k];
    if (db)
      for (int64_t k = 0; k < C; ++k) db[k] += pw[C + k];
  }
}

void layernorm(const OpCall& c) {
  switch (storage_of({&c.x(0), &c.y(0)})) {
    case Storage::f32: return layernorm_t<float, float>(c);
    case Storage::bf16: return layernorm_t<uint16_t, uint16_t>(c);
    case Storage::mixed:
      if (c.y(0).dtype == DType::BF16) return layernorm_t<float, uint16_t>(c);  // the step's f32 -> bf16
      return run_widened(c, layernorm);
  }
}

void layernorm_bwd(const OpCall& c) {
  switch (storage_of({&c.x(0), &c.x(1), &c.y(0)})) {
    case Storage::f32: return layernorm_bwd_t<float>(c);
    case Storage::bf16: return layernorm_bwd_t<uint16_t>(c);
    case Storage::mixed: return run_widened(c, layernorm_bwd);
  }
}

void pixel_norm(const OpCall& c) {
  const NormArgs n = norm_args(c);
  PixNorm a{c.x(0).f32(), c.y(0).f32(), n.C, n.eps};
  auto fn = pick_isa_variant(pix_base, pix_avx2, pix_avx512);
  c.ctx->pool->parallel_for(n.R, row_grain(a.C), [&](int64_t r0, int64_t r1) { fn(a, r0, r1); });
}

// batchnorm: in x [R, C]; out y, run_mean [C], run_var [C]. BatchNorm1d(affine=False) as torch: train=1
// normalises with this batch's column mean and biased variance (two passes, in double) and moves the
// running statistics by momentum (the variance unbiased, R / (R - 1)); train=0 uses the running ones.
// Columns are split over the pool in blocks; each block walks the rows in order (deterministic).
void batchnorm(const OpCall& c) {
  const Tensor& X = c.x(0);
  const int64_t R = X.shape[0], C = X.shape[1];
  const float* x = X.f32();
  float *y = c.y(0).f32(), *rm = c.y(1).f32(), *rv = c.y(2).f32();
  const BatchNormArgs bn = batchnorm_args(c);
  const bool train = bn.train != 0;
  const double eps = bn.eps, mom = bn.momentum;
  constexpr int64_t kCols = 64;
  c.ctx->pool->parallel_for((C + kCols - 1) / kCols, 1, [&](int64_t b0, int64_t b1) {
    double mean[kCols], var[kCols];
    float shift[kCols], scale[kCols];
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t k0 = blk * kCols, nk = std::min(kCols, C - k0);
      if (train) {
        for (int64_t j = 0; j < nk; ++j) mean[j] = 0, var[j] = 0;
        for (int64_t r = 0; r < R; ++r)
          for (int64_t j = 0; j < nk; ++j) mean[j] += x[r * C + k0 + j];
        for (int64_t j = 0; j < nk; ++j) mean[j] /= static_cast<double>(R);
        for (int64_t r = 0; r < R; ++r)
          for (int64_t j = 0; j < nk; ++j) {
            const double d = x[r * C + k0 + j] - mean[j];
            var[j] += d * d;
          }
        for (int64_t j = 0; j < nk; ++j) {
          const double biased = var[j] / static_cast<double>(R);
          shift[j] = static_cast<float>(mean[j]);
          scale[j] = static_cast<float>(1.0 / std::sqrt(biased + eps));
          rm[k0 + j] = static_cast<float>((1.0 - mom) * rm[k0 + j] + mom * mean[j]);
          rv[k0 + j] = static_cast<float>((1.0 - mom) * rv[k0 + j] + mom * var[j] / static_cast<double>(R - 1));
        }
      } else {
        for (int64_t j = 0; j < nk; ++j) {
          shift[j] = rm[k0 + j];
          scale[j] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(rv[k0 + j]) + eps));
        }
      }
      for (int64_t r = 0; r < R; ++r)
        for (int64_t j = 0; j < nk; ++j) y[r * C + k0 + j] = (x[r * C + k0 + j] - shift[j]) * scale[j];
    }
  });
}

}  // namespace medic::cpu
