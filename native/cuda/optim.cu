// The optimiser ops on the GPU: the global gradient norm and the fused AdamW update.
// CPU reference: native/cpu/optim.cpp; contracts in ops.h.
//
// Shape letters: n the flat element count (the whole parameter buffer is one flat tensor).
//
// grad_norm: deterministic two-pass. The buffer is cut into fixed chunks of kChunk elements (fixed by
// n only, not by the GPU); a block sums a chunk's squares in double (per-thread double accumulators, a
// fixed block tree), writing one partial per chunk to the workspace; one block then adds the partials
// in a fixed order and writes sqrt(total). Same bits on every run and every GPU.
//
// adamw: one grid-stride pass, float4 loads of grad/param/m/v (uchar4 of the mask) when aligned. The
// step's hyper-parameters (lr, weight decay, step) and the clip norm are read from device memory by
// the kernel, so a training step needs no host round trip and can be captured in a CUDA graph. The
// per-step constants are computed in double by one thread per block, exactly as the CPU computes them,
// and the per-element update uses the non-contractible correctly rounded intrinsics (__fmul_rn, ...)
// in the CPU's operation order, so the update matches the CPU bit for bit given the same constants
// (pow() on the device may differ from glibc's in the last bit of a double, which the rounding of the
// constants to f32 almost always hides; and --use_fast_math flushes f32 denormals to zero, e.g. a v
// below 1.2e-38, where the CPU keeps them).
#include <cstdint>

#include "common.cuh"
#include "medic/op_args.h"
#include "ops_util.cuh"

namespace medic::cuda {

using namespace memops;

namespace {

constexpr int64_t kChunk = 8192;
constexpr int kFinal = 256;

__global__ void __launch_bounds__(kBlock)
    sumsq_chunks(const float* __restrict__ g, int64_t n, int64_t chunks, bool vec, double* __restrict__ part) {
  __shared__ double sm[kWarps];
  for (int64_t k = blockIdx.x; k < chunks; k += gridDim.x) {
    const int64_t b = k * kChunk, e = b + kChunk < n ? b + kChunk : n;
    double acc = 0.0;
    if (vec && e - b == kChunk) {
      const float4* g4 = reinterpret_cast<const float4*>(g + b);
#pragma unroll 4
      for (int i = threadIdx.x; i < kChunk / 4; i += kBlock) {
        const float4 v = g4[i];
        acc += static_cast<double>(v.x) * v.x;
        acc += static_cast<double>(v.y) * v.y;
        acc += static_cast<double>(v.z) * v.z;
        acc += static_cast<double>(v.w) * v.w;
      }
    } else {
      for (int64_t i = b + threadIdx.x; i < e; i += kBlock) acc += static_cast<double>(g[i]) * g[i];
    }
    acc = block_sum<kBlock>(acc, sm);
    if (threadIdx.x == 0) part[k] = acc;
  }
}

__global__ void __launch_bounds__(kFinal)
    sumsq_final(const double* __restrict__ part, int64_t chunks, float* __restrict__ norm) {
  __shared__ double sm[kFinal / 32];
  const int64_t per = (chunks + kFinal - 1) / kFinal;
  const int64_t b = threadIdx.x * per, e = b + per < chunks ? b + per : chunks;
  double s = 0.0;
  for (int64_t k = b; k < e; ++k) s += part[k];
  s = block_sum<kFinal>(s, sm);
  if (threadIdx.x == 0) norm[0] = static_cast<float>(sqrt(s));
}

using AdamAttrs = AdamwArgs;  // beta1, beta2, eps, max_norm (medic/op_args.h), passed by value

struct AdamStep {
  float gscale, decay, beta1, one_m_beta1, beta2, one_m_beta2, step_size, bc2_sqrt, eps;
  float lrwd;  // lr * weight_decay in f32, for the per-element lr scale
  bool valid;
};

// The CPU's constants (optim.cpp), in double, without fma contraction.
__device__ AdamStep adam_step(const float* hyper, const float* norm, AdamAttrs at) {
  AdamStep k;
  const double lr = hyper[0], wd = hyper[1], step = hyper[2];
  k.valid = step >= 1 && step == floor(step);
  double gscale = 1.0;
  if (at.max_norm > 0) gscale = fmin(1.0, __ddiv_rn(at.max_norm, __dadd_rn(static_cast<double>(norm[0]), 1e-6)));
  k.gscale = static_cast<float>(gscale);
  k.decay = static_cast<float>(__dsub_rn(1.0, __dmul_rn(lr, wd)));
  k.beta1 = static_cast<float>(at.beta1);
  k.one_m_beta1 = static_cast<float>(1.0 - at.beta1);
  k.beta2 = static_cast<float>(at.beta2);
  k.one_m_beta2 = static_cast<float>(1.0 - at.beta2);
  k.step_size = static_cast<float>(__ddiv_rn(lr, __dsub_rn(1.0, pow(at.beta1, step))));
  k.bc2_sqrt = static_cast<float>(__dsqrt_rn(__dsub_rn(1.0, pow(at.beta2, step))));
  k.eps = static_cast<float>(at.eps);
  k.lrwd = static_cast<float>(__dmul_rn(lr, wd));
  return k;
}

// One element, in the CPU's order of correctly rounded operations.
__device__ __forceinline__ void adam_elem(const AdamStep& k, float g, uint8_t mask, float& p, float& m, float& v) {
  const float gi = __fmul_rn(g, k.gscale);
  const float pi = __fmul_rn(p, mask != 0 ? k.decay : 1.0f);
  const float mi = __fadd_rn(__fmul_rn(k.beta1, m), __fmul_rn(k.one_m_beta1, gi));
  const float vi = __fadd_rn(__fmul_rn(k.beta2, v), __fmul_rn(k.one_m_beta2, __fmul_rn(gi, gi)));
  m = mi;
  v = vi;
  p = __fsub_rn(pi, __fmul_rn(k.step_size, __fdiv_rn(mi, __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), k.bc2_sqrt), k.eps))));
}

// With the per-element lr scale s (layer-wise lr decay), as the CPU's adamw_scaled_range.
__device__ __forceinline__ void adam_elem_scaled(const AdamStep& k, float g, uint8_t mask, float s, float& p, float& m,
                                                 float& v) {
  const float gi = __fmul_rn(g, k.gscale);
  const float pi = __fmul_rn(p, mask != 0 ? __fsub_rn(1.0f, __fmul_rn(k.lrwd, s)) : 1.0f);
  const float mi = __fadd_rn(__fmul_rn(k.beta1, m), __fmul_rn(k.one_m_beta1, gi));
  const float vi = __fadd_rn(__fmul_rn(k.beta2, v), __fmul_rn(k.one_m_beta2, __fmul_rn(gi, gi)));
  m = mi;
  v = vi;
  p = __fsub_rn(
      pi, __fmul_rn(__fmul_rn(k.step_size, s), __fdiv_rn(mi, __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), k.bc2_sqrt), k.eps))));
}

__global__ void __launch_bounds__(kBlock)
    adamw_scaled_kernel(const float* __restrict__ g, const uint8_t* __restrict__ mask, const float* __restrict__ hyper,
                        const float* __restrict__ norm, const float* __restrict__ scale, float* __restrict__ p,
                        float* __restrict__ m, float* __restrict__ v, int64_t n, AdamAttrs at) {
  __shared__ AdamStep sk;
  if (threadIdx.x == 0) sk = adam_step(hyper, norm, at);
  __syncthreads();
  const AdamStep k = sk;
  if (!k.valid) return;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float pi = p[i], mi = m[i], vi = v[i];
    adam_elem_scaled(k, g[i], mask[i], scale[i], pi, mi, vi);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

// sgd: the sums of squares of p and of d = g + wd p per fixed chunk (LARS norms), then their ordered
// total, then the update; lr and wd are read from device memory (graph-capturable, like adamw).
__global__ void __launch_bounds__(kBlock)
    sgd_sumsq_chunks(const float* __restrict__ g, const float* __restrict__ p, const float* __restrict__ hyper,
                     int64_t n, int64_t chunks, double* __restrict__ part) {
  __shared__ double sm[kWarps];
  const float wd = hyper[1];
  for (int64_t k = blockIdx.x; k < chunks; k += gridDim.x) {
    const int64_t b = k * kChunk, e = b + kChunk < n ? b + kChunk : n;
    double ap = 0.0, ad = 0.0;
    for (int64_t i = b + threadIdx.x; i < e; i += kBlock) {
      const float d = __fadd_rn(g[i], __fmul_rn(wd, p[i]));
      ap += static_cast<double>(p[i]) * p[i];
      ad += static_cast<double>(d) * d;
    }
    ap = block_sum<kBlock>(ap, sm);
    ad = block_sum<kBlock>(ad, sm);
    if (threadIdx.x == 0) part[2 * k] = ap, part[2 * k + 1] = ad;
  }
}

__global__ void __launch_bounds__(kFinal)
    sgd_sumsq_final(const double* __restrict__ part, int64_t chunks, float* __restrict__ norms) {
  __shared__ double sm[kFinal / 32];
  const int64_t per = (chunks + kFinal - 1) / kFinal;
  const int64_t b = threadIdx.x * per, e = b + per < chunks ? b + per : chunks;
  double sp = 0.0, sd = 0.0;
  for (int64_t k = b; k < e; ++k) sp += part[2 * k], sd += part[2 * k + 1];
  sp = block_sum<kFinal>(sp, sm);
  sd = block_sum<kFinal>(sd, sm);
  if (threadIdx.x == 0) norms[0] = static_cast<float>(sqrt(sp)), norms[1] = static_cast<float>(sqrt(sd));
}

__global__ void __launch_bounds__(kBlock)
    sgd_kernel(const float* __restrict__ g, const float* __restrict__ hyper, const float* __restrict__ norms,
               float* __restrict__ p, float* __restrict__ mu, int64_t n, float momentum, double trust) {
  const float lr = hyper[0], wd = hyper[1];
  float q = 1.0f;
  if (norms && trust > 0) {
    // The CPU's norms are doubles rounded to f32 for output; the ratio uses the f32 values here.
    const double pn = norms[0], dn = norms[1];
    if (pn > 0 && dn > 0) q = static_cast<float>(__ddiv_rn(__dmul_rn(trust, pn), dn));
  }
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float d = __fmul_rn(__fadd_rn(g[i], __fmul_rn(wd, p[i])), q);
    const float mi = __fadd_rn(__fmul_rn(momentum, mu[i]), d);
    mu[i] = mi;
    p[i] = __fsub_rn(p[i], __fmul_rn(lr, mi));
  }
}

__global__ void __launch_bounds__(kBlock)
    adamw_kernel(const float* __restrict__ g, const uint8_t* __restrict__ mask, const float* __restrict__ hyper,
                 const float* __restrict__ norm, float* __restrict__ p, float* __restrict__ m, float* __restrict__ v,
                 int64_t n, AdamAttrs at, bool vec) {
  __shared__ AdamStep sk;
  if (threadIdx.x == 0) sk = adam_step(hyper, norm, at);
  __syncthreads();
  const AdamStep k = sk;
  if (!k.valid) return;  // a step count that is not an integer >= 1: no update (the CPU throws)
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vec) {
    const int64_t n4 = n >> 2;
    for (int64_t i = tid; i < n4; i += stride) {
      const float4 gv = reinterpret_cast<const float4*>(g)[i];
      const uchar4 mk = reinterpret_cast<const uchar4*>(mask)[i];
      float4 pv = reinterpret_cast<float4*>(p)[i];
      float4 mv = reinterpret_cast<float4*>(m)[i];
      float4 vv = reinterpret_cast<float4*>(v)[i];
      adam_elem(k, gv.x, mk.x, pv.x, mv.x, vv.x);
      adam_elem(k, gv.y, mk.y, pv.y, mv.y, vv.y);
      adam_elem(k, gv.z, mk.z, pv.z, mv.z, vv.z);
      adam_elem(k, gv.w, mk.w, pv.w, mv.w, vv.w);
      reinterpret_cast<float4*>(p)[i] = pv;
      reinterpret_cast<float4*>(m)[i] = mv;
      reinterpret_cast<float4*>(v)[i] = vv;
    }
    done = n4 << 2;
  }
  for (int64_t i = done + tid; i < n; i += stride) {
    float pi = p[i], mi = m[i], vi = v[i];
    adam_elem(k, g[i], mask[i], pi, mi, vi);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace

void grad_norm(const OpCall& c) {
  const float* g = c.x(0).f32();
  const int64_t n = c.x(0).numel();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  double* part =
      static_cast<double*>(workspace(ctx_of(c), static_cast<size_t>(chunks > 0 ? chunks : 1) * sizeof(double)));
  if (chunks > 0) {
    sumsq_chunks<<<grid_for(c, chunks, 1), kBlock, 0, stream_of(c)>>>(g, n, chunks, aligned16(g), part);
    check_launch("grad_norm");
  }
  sumsq_final<<<1, kFinal, 0, stream_of(c)>>>(part, chunks, c.y(0).f32());
  check_launch("grad_norm");
}

void adamw(const OpCall& c) {
  const int64_t n = c.x(0).numel();
  const AdamAttrs at = adamw_args(c);
  if (n <= 0) return;
  const float* g = c.x(0).f32();
  const uint8_t* mask = c.x(1).u8();
  float *p = c.y(0).f32(), *m = c.y(1).f32(), *v = c.y(2).f32();
  if (c.has_in(4)) {
    adamw_scaled_kernel<<<grid_for(c, n), kBlock, 0, stream_of(c)>>>(
        g, mask, c.x(2).f32(), c.has_in(3) ? c.x(3).f32() : nullptr, c.x(4).f32(), p, m, v, n, at);
    check_launch("adamw");
    return;
  }
  const bool vec =
      aligned16(g) && aligned16(p) && aligned16(m) && aligned16(v) && (reinterpret_cast<uintptr_t>(mask) & 3) == 0;
  adamw_kernel<<<grid_for(c, vec ? (n + 3) / 4 : n), kBlock, 0, stream_of(c)>>>(
      g, mask, c.x(2).f32(), c.has_in(3) ? c.x(3).f32() : nullptr, p, m, v, n, at, vec);
  check_launch("adamw");
}

void sgd(const OpCall& c) {
  const int64_t n = c.x(0).numel();
  const float* g = c.x(0).f32();
  const float* hyper = c.x(1).f32();
  float *p = c.y(0).f32(), *mu = c.y(1).f32();
  float* norms = c.has_out(2) ? c.y(2).f32() : nullptr;
  if (norms) {
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    double* part =
        static_cast<double*>(workspace(ctx_of(c), static_cast<size_t>(chunks > 0 ? 2 * chunks : 2) * sizeof(double)));
    if (chunks > 0) {
      sgd_sumsq_chunks<<<grid_for(c, chunks, 1), kBlock, 0, stream_of(c)>>>(g, p, hyper, n, chunks, part);
      check_launch("sgd");
    }
    sgd_sumsq_final<<<1, kFinal, 0, stream_of(c)>>>(part, chunks, norms);
    check_launch("sgd");
  }
  if (n <= 0) return;
  sgd_kernel<<<grid_for(c, n), kBlock, 0, stream_of(c)>>>(g, hyper, norms, p, mu, n, sgd_args(c).momentum,
                                                          sgd_args(c).trust);
  check_launch("sgd");
}

}  // namespace medic::cuda
