// Parameter initialisation from the counter-based RNG (medic/rng.h).
//
// Shape letters: n the element count of the output (any shape, filled in flat order).
//
// Element i is a pure function of (seed, stream, i): the result does not depend on the thread count
// or the backend, and a CUDA kernel computing the same double-precision formula gets the same floats
// (up to the last-ulp agreement of the two erf implementations, which the final f32 rounding hides).
// attrs seed (a double below 2^53, cast to uint64), stream=0.
#include <cmath>
#include <cstdint>
#include <string>

#include "medic/ops.h"
#include "medic/rng.h"
#include "medic/threads.h"

namespace medic::cpu {

namespace {

// erfinv in double: Giles' single-precision approximation ("Approximating the erfinv function", GPU
// Computing Gems, 2011), then two Newton steps on erf(x) = y, which take its ~1e-7 relative error to
// full double precision (Newton converges quadratically).
double erfinv(double y) {
  if (y <= -1.0) return -INFINITY;
  if (y >= 1.0) return INFINITY;
  double w = -std::log((1.0 - y) * (1.0 + y)), p;
  if (w < 5.0) {
    w -= 2.5;
    p = 2.81022636e-08;
    p = 3.43273939e-07 + p * w;
    p = -3.5233877e-06 + p * w;
    p = -4.39150654e-06 + p * w;
    p = 0.00021858087 + p * w;
    p = -0.00125372503 + p * w;
    p = -0.00417768164 + p * w;
    p = 0.246640727 + p * w;
    p = 1.50140941 + p * w;
  } else {
    w = std::sqrt(w) - 3.0;
    p = -0.000200214257;
    p = 0.000100950558 + p * w;
    p = 0.00134934322 + p * w;
    p = -0.00367342844 + p * w;
    p = 0.00573950773 + p * w;
    p = -0.0076224613 + p * w;
    p = 0.00943887047 + p * w;
    p = 1.00167406 + p * w;
    p = 2.83297682 + p * w;
  }
  double x = p * y;
  const double two_over_sqrt_pi = 1.1283791670955126;
  for (int it = 0; it < 2; ++it) x -= (std::erf(x) - y) / (two_over_sqrt_pi * std::exp(-x * x));
  return x;
}

double std_normal_cdf(double x) { return 0.5 * std::erfc(-x * 0.7071067811865476); }

// The seed and stream attrs are doubles; they must be integers a double holds exactly.
uint64_t counter_attr(const OpCall& c, const char* key, double def) {
  double v = c.attrs->get(key, def);
  if (!(v >= 0 && v < 9007199254740992.0) || v != std::floor(v))
    throw Error(std::string(c.def->name) + ": attr " + key + " must be an integer in [0, 2^53), got " + std::to_string(v));
  return static_cast<uint64_t>(v);
}

}  // namespace

// init_normal: out x = normal(mean, std) truncated to [lo, hi] (absolute bounds), as
// torch.nn.init.trunc_normal_: inverse-CDF sampling, u uniform in (Phi(a), Phi(b)) with
// a = (lo - mean) / std, b = (hi - mean) / std, x = mean + std sqrt2 erfinv(2u - 1), clamped to [lo, hi].
// attrs mean=0, std=1, lo=-2, hi=2, seed, stream=0.
void init_normal(const OpCall& c) {
  const double mean = c.attrs->get("mean", 0.0), sd = c.attrs->get("std", 1.0);
  const double lo = c.attrs->get("lo", -2.0), hi = c.attrs->get("hi", 2.0);
  const uint64_t seed = counter_attr(c, "seed", 0.0), stream = counter_attr(c, "stream", 0.0);
  const double pa = std_normal_cdf((lo - mean) / sd), pb = std_normal_cdf((hi - mean) / sd);
  float* x = c.y(0).f32();
  c.ctx->pool->parallel_for(c.y(0).numel(), 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      double u = pa + (pb - pa) * rng_uniform_open(seed, stream, static_cast<uint64_t>(i));
      double v = mean + sd * 1.4142135623730951 * erfinv(2.0 * u - 1.0);
      if (!(v >= lo)) v = lo;  // also catches a NaN
      if (v > hi) v = hi;
      x[i] = static_cast<float>(v);
    }
  });
}

// init_uniform: out x = uniform[lo, hi) from 24 random bits per element. attrs lo=0, hi=1, seed, stream=0.
// The f32 rounding of lo + (hi - lo) u could reach hi; such values are moved one ulp below it.
void init_uniform(const OpCall& c) {
  const double lo = c.attrs->get("lo", 0.0), hi = c.attrs->get("hi", 1.0);
  const uint64_t seed = counter_attr(c, "seed", 0.0), stream = counter_attr(c, "stream", 0.0);
  const float hi_f = static_cast<float>(hi), below_hi = std::nextafter(hi_f, -INFINITY);
  float* x = c.y(0).f32();
  c.ctx->pool->parallel_for(c.y(0).numel(), 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float v = static_cast<float>(lo + (hi - lo) * static_cast<double>(rng_uniform(seed, stream, static_cast<uint64_t>(i))));
      x[i] = v >= hi_f ? below_hi : v;
    }
  });
}

}  // namespace medic::cpu
