// The optimiser ops: the global gradient norm (for clipping and logging) and the AdamW update.
//
// Shape letters: n the flat element count (the whole parameter buffer is one flat tensor).
//
// grad_norm is deterministic for any thread count: the buffer is cut into fixed chunks of kChunk
// elements (not one range per thread), each chunk is summed into double in a fixed lane order, and the
// chunk sums are added in order on one thread.
// adamw is elementwise, so any split gives the same bits (29 bytes per element).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "medic/op_args.h"
#include "medic/ops.h"
#include "medic/threads.h"

#include "isa.h"

namespace medic::cpu {

namespace {

constexpr int64_t kChunk = 1 << 16;

// sum x^2 in double, 8 lanes in a fixed order (the same bits however the loop is vectorised).
double sum_sq(const float* x, int64_t n) {
  double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) a[j] += static_cast<double>(x[i + j]) * x[i + j];
  for (; i < n; ++i) a[i & 7] += static_cast<double>(x[i]) * x[i];
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

// Per-element constants of one AdamW step.
struct AdamStep {
  float gscale;  // clip factor applied to the gradient
  float decay;   // 1 - lr * weight_decay (where wd_mask != 0)
  float beta1, one_m_beta1, beta2, one_m_beta2;
  float step_size;  // lr / (1 - beta1^step)
  float bc2_sqrt;   // sqrt(1 - beta2^step)
  float eps;
};

// torch.optim.AdamW (single-tensor path), per element:
//   p *= 1 - lr wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= step_size * m / (sqrt(v) / sqrt(bc2) + eps)
// Branch-free so the compiler vectorises it. Compiled three times (baseline, AVX2, AVX-512: isa.h) and
// picked at run time: at SSE's four lanes the square root and the division, not the 29 bytes per
// element, set the pace (ViT-B's 112 M parameters on a Zen 5 core: 100-108 ms baseline, 55-76 ms
// AVX-512). fp-contract is off for all three, so no multiply-add is fused and every path rounds each
// product and sum as the baseline does (sqrt and / are exact in IEEE): the same bits on every x86
// machine (test/native/optim.test.ts runs each path).
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
MEDIC_INLINE void adamw_body(const AdamStep& kref, const float* __restrict g, const uint8_t* __restrict mask,
                             float* __restrict p, float* __restrict m, float* __restrict v, int64_t lo, int64_t hi) {
  const AdamStep k = kref;  // a local copy: loads through the reference would block if-conversion
  for (int64_t i = lo; i < hi; ++i) {
    float gi = g[i] * k.gscale;
    float keep = mask[i] != 0 ? k.decay : 1.0f;  // (this form if-converts; x * 1 is exact)
    float pi = p[i] * keep;
    float mi = k.beta1 * m[i] + k.one_m_beta1 * gi;
    float vi = k.beta2 * v[i] + k.one_m_beta2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - k.step_size * (mi / (std::sqrt(vi) / k.bc2_sqrt + k.eps));
  }
}

// With a per-element lr scale s (layer-wise lr decay): torch's parameter group of lr * s, per element.
// The scaled factors are products in f32: lr * s * wd and step_size * s (torch computes the group's lr
// in double; the difference is one f32 rounding of the lr).
MEDIC_INLINE void adamw_scaled_body(const AdamStep& kref, float lrwd, const float* __restrict g,
                                    const uint8_t* __restrict mask, const float* __restrict s, float* __restrict p,
                                    float* __restrict m, float* __restrict v, int64_t lo, int64_t hi) {
  const AdamStep k = kref;
  for (int64_t i = lo; i < hi; ++i) {
    float gi = g[i] * k.gscale;
    float keep = mask[i] != 0 ? 1.0f - lrwd * s[i] : 1.0f;
    float pi = p[i] * keep;
    float mi = k.beta1 * m[i] + k.one_m_beta1 * gi;
    float vi = k.beta2 * v[i] + k.one_m_beta2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - (k.step_size * s[i]) * (mi / (std::sqrt(vi) / k.bc2_sqrt + k.eps));
  }
}

// One range of the update; s = nullptr: no per-element lr scale.
struct AdamRange {
  const AdamStep* k;
  float lrwd;
  const float *g, *s;
  const uint8_t* mask;
  float *p, *m, *v;
};
#define MEDIC_ADAMW_VARIANT(suffix, attr)                                       \
  attr void adamw_##suffix(const AdamRange& a, int64_t lo, int64_t hi) {        \
    if (a.s)                                                                    \
      adamw_scaled_body(*a.k, a.lrwd, a.g, a.mask, a.s, a.p, a.m, a.v, lo, hi); \
    else                                                                        \
      adamw_body(*a.k, a.g, a.mask, a.p, a.m, a.v, lo, hi);                     \
  }
MEDIC_ADAMW_VARIANT(base, )
MEDIC_ADAMW_VARIANT(avx2, MEDIC_AVX2)
MEDIC_ADAMW_VARIANT(avx512, MEDIC_AVX512)
#undef MEDIC_ADAMW_VARIANT
#pragma GCC pop_options

// sum of squares of a + w b (w = 0: of a alone), deterministic like grad_norm's chunks.
double sum_sq_axpy(ThreadPool& pool, const float* a, const float* b, float w, int64_t n) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(static_cast<size_t>(chunks), 0.0);
  pool.parallel_for(chunks, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> tmp;
    for (int64_t k = lo; k < hi; ++k) {
      int64_t s = k * kChunk, e = std::min(n, s + kChunk);
      if (w == 0.0f || b == nullptr) {
        part[k] = sum_sq(a + s, e - s);
        continue;
      }
      tmp.resize(static_cast<size_t>(e - s));
      for (int64_t i = s; i < e; ++i) tmp[i - s] = a[i] + w * b[i];
      part[k] = sum_sq(tmp.data(), e - s);
    }
  });
  double total = 0;
  for (double x : part) total += x;
  return total;
}

}  // namespace

// grad_norm: in g (any shape); out norm [1] = sqrt(sum g^2), accumulated in double.
void grad_norm(const OpCall& c) {
  const float* g = c.x(0).f32();
  const int64_t n = c.x(0).numel();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(static_cast<size_t>(chunks), 0.0);
  c.ctx->pool->parallel_for(chunks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      int64_t b = k * kChunk, e = std::min(n, b + kChunk);
      part[k] = sum_sq(g + b, e - b);
    }
  });
  double total = 0;
  for (double x : part) total += x;
  c.y(0).f32()[0] = static_cast<float>(std::sqrt(total));
}

// adamw: in grad [n], wd_mask [n] u8, hyper [3] = (lr, weight_decay, step), [norm [1]];
// out param, m, v [n] (read and written). attrs beta1=0.9, beta2=0.999, eps=1e-8, max_norm=0.
// With max_norm > 0 the gradient is scaled by min(1, max_norm / (norm + 1e-6)) as clip_grad_norm_;
// check_adamw requires the norm input then (rather than silently not clipping).
void adamw(const OpCall& c) {
  const int64_t n = c.x(0).numel();
  const float* hyper = c.x(2).f32();
  const double lr = hyper[0], wd = hyper[1], step = hyper[2];
  if (!(step >= 1) || step != std::floor(step))
    throw Error("adamw: hyper[2] (the step count) must be an integer >= 1, got " + std::to_string(step));
  const AdamwArgs at = adamw_args(c);
  const double beta1 = at.beta1, beta2 = at.beta2, eps = at.eps, max_norm = at.max_norm;

  double gscale = 1.0;
  if (max_norm > 0) {
    const double norm = c.x(3).f32()[0];
    gscale = std::min(1.0, max_norm / (norm + 1e-6));
  }
  AdamStep k;
  k.gscale = static_cast<float>(gscale);
  k.decay = static_cast<float>(1.0 - lr * wd);
  k.beta1 = static_cast<float>(beta1);
  k.one_m_beta1 = static_cast<float>(1.0 - beta1);
  k.beta2 = static_cast<float>(beta2);
  k.one_m_beta2 = static_cast<float>(1.0 - beta2);
  k.step_size = static_cast<float>(lr / (1.0 - std::pow(beta1, step)));
  k.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(beta2, step)));
  k.eps = static_cast<float>(eps);

  const float* g = c.x(0).f32();
  const uint8_t* mask = c.x(1).u8();
  float *p = c.y(0).f32(), *m = c.y(1).f32(), *v = c.y(2).f32();
  const AdamRange a{&k, static_cast<float>(lr * wd), g, c.has_in(4) ? c.x(4).f32() : nullptr, mask, p, m, v};
  const auto run = pick_isa_variant(adamw_base, adamw_avx2, adamw_avx512);
  c.ctx->pool->parallel_for(n, 1 << 14, [&](int64_t lo, int64_t hi) { run(a, lo, hi); });
}

// sgd: in grad [n], hyper [2] = (lr, weight_decay); out param, mu [n] (read and written), [norms [2]].
// attrs momentum=0.9, trust=0. torch.optim.SGD(momentum) with mu starting at 0 (its first step sets
// mu = d, the same as momentum * 0 + d), and with trust > 0 the LARS scaling of MAE's linear probe:
//   d = g + wd p;  q = trust |p| / |d| if |p| > 0 and |d| > 0 else 1;  mu = momentum mu + q d;  p -= lr mu.
void sgd(const OpCall& c) {
  const int64_t n = c.x(0).numel();
  const float* hyper = c.x(1).f32();
  const float lr = hyper[0], wd = hyper[1];
  const SgdArgs a = sgd_args(c);
  const float momentum = a.momentum;
  const double trust = a.trust;
  const float* g = c.x(0).f32();
  float *p = c.y(0).f32(), *mu = c.y(1).f32();
  float q = 1.0f;
  if (c.has_out(2)) {
    // The ratio uses the norms as written (f32), as the CUDA kernel, which reads them back, does.
    const double pn = static_cast<float>(std::sqrt(sum_sq_axpy(*c.ctx->pool, p, nullptr, 0.0f, n)));
    const double dn = static_cast<float>(std::sqrt(sum_sq_axpy(*c.ctx->pool, g, p, wd, n)));
    c.y(2).f32()[0] = static_cast<float>(pn);
    c.y(2).f32()[1] = static_cast<float>(dn);
    if (trust > 0 && pn > 0 && dn > 0) q = static_cast<float>(trust * pn / dn);
  }
  c.ctx->pool->parallel_for(n, 1 << 14, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float d = (g[i] + wd * p[i]) * q;
      const float mi = momentum * mu[i] + d;
      mu[i] = mi;
      p[i] = p[i] - lr * mi;
    }
  });
}

}  // namespace medic::cpu
