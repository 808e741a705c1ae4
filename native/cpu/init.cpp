// Parameter initialisation from the counter-based RNG (medic/rng.h).
//
// Shape letters: n the element count of the output (any shape, filled in flat order).
//
// Element i is a pure function of (seed, stream, i): the result does not depend on the thread count
// or the backend. The per-element math lives in medic/init_math.h, shared with native/cuda/init.cu and
// written with correctly rounded operations only (own log, AS241 normal quantile, explicit fmas), so
// CPU and CUDA produce the same floats bit for bit.
// attrs seed (a double below 2^53, cast to uint64), stream=0: decoded in medic/op_args.h.
#include <cmath>
#include <cstdint>

#include "medic/init_math.h"
#include "medic/op_args.h"
#include "medic/ops.h"
#include "medic/rng.h"
#include "medic/threads.h"

namespace medic::cpu {

// init_normal: out x = normal(mean, std) truncated to [lo, hi] (absolute bounds), as
// torch.nn.init.trunc_normal_: inverse-CDF sampling, u uniform in (Phi(a), Phi(b)) with
// a = (lo - mean) / std, b = (hi - mean) / std, x = mean + std Phi^-1(u), clamped to [lo, hi].
// attrs mean=0, std=1, lo=-2, hi=2, seed, stream=0.
void init_normal(const OpCall& c) {
  const InitArgs a = init_args(c);
  const TruncNormal t = trunc_normal_params(a.mean, a.std, a.lo, a.hi);
  const uint64_t seed = a.seed_u, stream = a.stream_u;
  float* x = c.y(0).f32();
  c.ctx->pool->parallel_for(c.y(0).numel(), 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] = trunc_normal_value(t, seed, stream, static_cast<uint64_t>(i));
  });
}

// init_uniform: out x = uniform[lo, hi) from 24 random bits per element. attrs lo=0, hi=1, seed, stream=0.
// The f32 rounding of lo + (hi - lo) u could reach hi; such values are moved one ulp below it.
void init_uniform(const OpCall& c) {
  const InitArgs a = init_args(c);
  const double lo = a.lo, hi = a.hi;
  const uint64_t seed = a.seed_u, stream = a.stream_u;
  const float hi_f = static_cast<float>(hi), below_hi = std::nextafter(hi_f, -INFINITY);
  float* x = c.y(0).f32();
  c.ctx->pool->parallel_for(c.y(0).numel(), 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      x[i] = uniform_value(lo, hi, hi_f, below_hi, seed, stream, static_cast<uint64_t>(i));
  });
}

}  // namespace medic::cpu
