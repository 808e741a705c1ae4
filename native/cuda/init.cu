// Parameter initialisation on the GPU from the counter-based RNG (medic/rng.h).
// CPU reference: native/cpu/init.cpp; contracts in ops.h.
//
// Shape letters: n the element count of the output (any shape, filled in flat order).
//
// Element i is a pure function of (seed, stream, i), computed by the same MEDIC_HD functions as the CPU
// (medic/init_math.h: own log, AS241 normal quantile, explicit fmas, __dmul_rn/__dadd_rn on the
// device so nvcc cannot contract), so CPU and CUDA produce the same floats bit for bit. The
// per-call constants (Phi at the bounds, the f32 bound below hi) are computed on the host by the same
// code as the CPU's. Double-precision math is unaffected by --use_fast_math.
#include <cmath>
#include <cstdint>
#include <string>

#include "common.cuh"
#include "medic/init_math.h"
#include "medic/op_args.h"
#include "medic/rng.h"
#include "ops_util.cuh"

namespace medic::cuda {

using namespace memops;

namespace {

__global__ void init_normal_kernel(float* x, int64_t n, TruncNormal t, uint64_t seed, uint64_t stream) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    x[i] = trunc_normal_value(t, seed, stream, static_cast<uint64_t>(i));
}

__global__ void init_uniform_kernel(float* x, int64_t n, double lo, double hi, float hi_f, float below_hi,
                                    uint64_t seed, uint64_t stream) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    x[i] = uniform_value(lo, hi, hi_f, below_hi, seed, stream, static_cast<uint64_t>(i));
}

}  // namespace

void init_normal(const OpCall& c) {
  const InitArgs a = init_args(c);  // medic/op_args.h, as the checker and the CPU kernel
  const TruncNormal t = trunc_normal_params(a.mean, a.std, a.lo, a.hi);
  const uint64_t seed = a.seed_u, stream = a.stream_u;
  const int64_t n = c.y(0).numel();
  if (n <= 0) return;
  init_normal_kernel<<<grid_for(c, n), kBlock, 0, stream_of(c)>>>(c.y(0).f32(), n, t, seed, stream);
  check_launch("init_normal");
}

void init_uniform(const OpCall& c) {
  const InitArgs a = init_args(c);
  const double lo = a.lo, hi = a.hi;
  const uint64_t seed = a.seed_u, stream = a.stream_u;
  const float hi_f = static_cast<float>(hi), below_hi = std::nextafter(hi_f, -INFINITY);
  const int64_t n = c.y(0).numel();
  if (n <= 0) return;
  init_uniform_kernel<<<grid_for(c, n), kBlock, 0, stream_of(c)>>>(c.y(0).f32(), n, lo, hi, hi_f, below_hi, seed,
                                                                   stream);
  check_launch("init_uniform");
}

}  // namespace medic::cuda
