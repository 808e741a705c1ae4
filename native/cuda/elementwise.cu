// Elementwise ops on the GPU: fill, copy, cast, add, sum_to, GELU (erf and quick) and their backwards,
// LayerScale + DropPath + residual (scale_add, scale_add_bwd) and the drop-path keep mask.
// CPU reference: native/cpu/elementwise.cpp; contracts in ops.h.
//
// Shape letters: n flat element count; R rows (all leading dims flattened); C (or S) the last dim(s);
// B batch (dim 0 of scale_add's x), L = R / B rows per batch element.
//
// All memory-bound: grid-stride loops over 16-byte vectors (float4) when every pointer involved is
// 16-byte aligned and the row width allows, a scalar tail (or a scalar loop otherwise). The grid is a
// few waves of blocks per SM. Elementwise ops may run in place, so no __restrict__ on their pointers.
// Reductions over rows (sum_to, dgamma) use the deterministic two-pass column reduction of ops_util.cuh.
//
// Storage: float tensors are read and written through the FIn / FOut views of common.cuh, so every
// slot that ops.h lets be bf16 may be, in any mix; arithmetic stays fp32 and a bf16 output is rounded
// once when stored. Vector accesses are float4s for f32 and 8-byte groups of four for bf16.
//
// Precision: the build uses --use_fast_math, so expf/erff/division may be a few ulp off the CPU's;
// these ops are compared with the CPU at ~1e-5, except fill, copy, cast and drop_path_mask, which are
// exact (integer and correctly rounded operations only, in the CPU's order).
#include <cstdint>

#include "common.cuh"
#include "medic/op_args.h"
#include "medic/rng.h"
#include "ops_util.cuh"

namespace medic::cuda {

using namespace memops;

namespace {

// ---------------------------------------------------------------------------------------------
// fill: every element = v. The aligned bulk is written as 16-byte words holding 16 / sizeof(T) copies.
template <class T>
__global__ void fill_kernel(T* p, int64_t n, T v, bool vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vec) {
    constexpr int per = 16 / sizeof(T);
    union {
      uint4 u;
      T t[per];
    } w;
#pragma unroll
    for (int k = 0; k < per; ++k) w.t[k] = v;
    const int64_t n16 = n / per;
    uint4* q = reinterpret_cast<uint4*>(p);
    for (int64_t i = tid; i < n16; i += stride) q[i] = w.u;
    done = n16 * per;
  }
  for (int64_t i = done + tid; i < n; i += stride) p[i] = v;
}

template <class T>
void launch_fill(const OpCall& c, T* p, int64_t n, T v) {
  const bool vec = aligned16(p);
  fill_kernel<T><<<grid_for(c, vec ? n / (16 / sizeof(T)) + 1 : n), kBlock, 0, stream_of(c)>>>(p, n, v, vec);
  check_launch("fill");
}

// ---------------------------------------------------------------------------------------------
// The generic elementwise map: y[i] = f(a[i], b[i], y[i]) (b and the old y read only when used).
// F::kB: whether b is read; F::kY: whether the old y is read (acc). f's result is written to y.
template <class F>
__global__ void map_kernel(FIn a, FIn b, FOut y, int64_t n, bool vec, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vec) {
    const int64_t n4 = n >> 2;
    for (int64_t i = tid; i < n4; i += stride) {
      float4 av = a.ld4(4 * i), bv = av, yv = av;
      if (F::kB) bv = b.ld4(4 * i);
      if (F::kY) yv = y.ld4(4 * i);
      float4 r;
      r.x = f(av.x, bv.x, yv.x);
      r.y = f(av.y, bv.y, yv.y);
      r.z = f(av.z, bv.z, yv.z);
      r.w = f(av.w, bv.w, yv.w);
      y.st4(4 * i, r);
    }
    done = n4 << 2;
  }
  for (int64_t i = done + tid; i < n; i += stride) {
    float av = a[i];
    float bv = F::kB ? b[i] : av;
    float yv = F::kY ? y[i] : av;
    y.set(i, f(av, bv, yv));
  }
}

template <class F>
void launch_map(const OpCall& c, const char* what, FIn a, FIn b, FOut y, int64_t n, F f) {
  if (n <= 0) return;
  const bool vec = vec_base(a) && vec_base(y) && (!F::kB || vec_base(b));
  map_kernel<F><<<grid_for(c, vec ? (n + 3) / 4 : n), kBlock, 0, stream_of(c)>>>(a, b, y, n, vec, f);
  check_launch(what);
}

// copy
struct ScaleF {  // y = alpha x
  static constexpr bool kB = false, kY = false;
  float alpha;
  __device__ float operator()(float x, float, float) const { return alpha * x; }
};
struct ScaleAccF {  // y = alpha x + y, rounded twice as on the CPU (nvcc would contract it into one fma)
  static constexpr bool kB = false, kY = true;
  float alpha;
  __device__ float operator()(float x, float, float y) const { return __fadd_rn(__fmul_rn(alpha, x), y); }
};

// GELU (erf form): y = x Phi(x); dy/dx = Phi(x) + x phi(x).
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
constexpr float kQuickGelu = 1.702f;

struct GeluF {
  static constexpr bool kB = false, kY = false;
  __device__ float operator()(float x, float, float) const { return x * normcdff(x); }
};
template <bool ACC>
struct GeluBwdF {
  static constexpr bool kB = true, kY = ACC;
  __device__ float operator()(float x, float dy, float old) const {
    float g = dy * (normcdff(x) + x * (kInvSqrt2Pi * __expf(-0.5f * x * x)));
    return ACC ? old + g : g;
  }
};
// QuickGELU (CLIP): y = x s, s = sigmoid(1.702 x); dy/dx = s + 1.702 x s (1 - s).
struct QuickF {
  static constexpr bool kB = false, kY = false;
  __device__ float operator()(float x, float, float) const { return x / (1.0f + __expf(-kQuickGelu * x)); }
};
template <bool ACC>
struct QuickBwdF {
  static constexpr bool kB = true, kY = ACC;
  __device__ float operator()(float x, float dy, float old) const {
    float s = 1.0f / (1.0f + __expf(-kQuickGelu * x));
    float g = dy * (s + kQuickGelu * x * s * (1.0f - s));
    return ACC ? old + g : g;
  }
};

// ---------------------------------------------------------------------------------------------
// cast
__device__ __forceinline__ uint16_t f32_to_bf16_dev(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

__global__ void f32_to_bf16_kernel(const float* x, uint16_t* y, int64_t n, bool vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vec) {  // 4 floats in (16 bytes), 4 bf16 out (8 bytes)
    const int64_t n4 = n >> 2;
    for (int64_t i = tid; i < n4; i += stride) {
      float4 v = reinterpret_cast<const float4*>(x)[i];
      uint2 o;
      o.x = static_cast<uint32_t>(f32_to_bf16_dev(v.x)) | (static_cast<uint32_t>(f32_to_bf16_dev(v.y)) << 16);
      o.y = static_cast<uint32_t>(f32_to_bf16_dev(v.z)) | (static_cast<uint32_t>(f32_to_bf16_dev(v.w)) << 16);
      reinterpret_cast<uint2*>(y)[i] = o;
    }
    done = n4 << 2;
  }
  for (int64_t i = done + tid; i < n; i += stride) y[i] = f32_to_bf16_dev(x[i]);
}

__global__ void bf16_to_f32_kernel(const uint16_t* x, float* y, int64_t n, bool vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vec) {  // 4 bf16 in (8 bytes), 4 floats out (16 bytes)
    const int64_t n4 = n >> 2;
    for (int64_t i = tid; i < n4; i += stride) {
      uint2 v = reinterpret_cast<const uint2*>(x)[i];
      float4 o;
      o.x = __uint_as_float(v.x << 16);
      o.y = __uint_as_float(v.x & 0xffff0000u);
      o.z = __uint_as_float(v.y << 16);
      o.w = __uint_as_float(v.y & 0xffff0000u);
      reinterpret_cast<float4*>(y)[i] = o;
    }
    done = n4 << 2;
  }
  for (int64_t i = done + tid; i < n; i += stride) y[i] = __uint_as_float(static_cast<uint32_t>(x[i]) << 16);
}

// ---------------------------------------------------------------------------------------------
// add: y [R, S] = a [R, S] + b [S]. Vector path when S % 4 == 0 (then every float4 lies in one row).
__global__ void add_kernel(FIn a, FIn b, FOut y, int64_t n, int64_t S, bool vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vec) {
    const int64_t n4 = n >> 2, S4 = S >> 2;
    for (int64_t i = tid; i < n4; i += stride) {
      float4 av = a.ld4(4 * i);
      float4 bv = b.ld4(4 * (i % S4));
      y.st4(4 * i, make_float4(av.x + bv.x, av.y + bv.y, av.z + bv.z, av.w + bv.w));
    }
    return;
  }
  for (int64_t i = tid; i < n; i += stride) y.set(i, a[i] + b[i % S]);
}

// sum_to / scale_add_bwd / mask_fill_bwd functors for column_reduce.
struct SumRowsF {
  FIn x;
  int64_t S;
  __device__ void operator()(int64_t r, int64_t j, float (&v)[1]) const { v[0] = x[r * S + j]; }
};

// ---------------------------------------------------------------------------------------------
// scale_add: x [R, C] += keep[r / L] * (gamma[j] * y). Rows of a dropped path (keep 0) are not touched.
__global__ void scale_add_kernel(FOut x, FIn y, const float* gamma, const float* keep, int64_t n, int64_t C, int64_t LC,
                                 bool vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vec) {
    const int64_t n4 = n >> 2, C4 = C >> 2;
    for (int64_t i = tid; i < n4; i += stride) {
      const float k = keep ? keep[(i << 2) / LC] : 1.0f;
      if (k == 0.0f) continue;
      float4 xv = x.ld4(4 * i);
      float4 yv = y.ld4(4 * i);
      if (gamma) {
        float4 g = reinterpret_cast<const float4*>(gamma)[i % C4];
        yv.x *= g.x, yv.y *= g.y, yv.z *= g.z, yv.w *= g.w;
      }
      xv.x += k * yv.x, xv.y += k * yv.y, xv.z += k * yv.z, xv.w += k * yv.w;
      x.st4(4 * i, xv);
    }
    return;
  }
  for (int64_t i = tid; i < n; i += stride) {
    const float k = keep ? keep[i / LC] : 1.0f;
    if (k == 0.0f) continue;
    const float yv = gamma ? gamma[i % C] * y[i] : y[i];
    x.set(i, x[i] + k * yv);
  }
}

// scale_add_bwd without dgamma: dy = keep * gamma * dx (+ dy).
__global__ void scale_add_bwd_kernel(FIn dx, const float* gamma, const float* keep, FOut dy, int64_t n, int64_t C,
                                     int64_t LC, bool acc, bool vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vec) {
    const int64_t n4 = n >> 2, C4 = C >> 2;
    for (int64_t i = tid; i < n4; i += stride) {
      const float k = keep ? keep[(i << 2) / LC] : 1.0f;
      float4 v = dx.ld4(4 * i);
      if (gamma) {
        float4 g = reinterpret_cast<const float4*>(gamma)[i % C4];
        v.x *= g.x, v.y *= g.y, v.z *= g.z, v.w *= g.w;
      }
      v.x *= k, v.y *= k, v.z *= k, v.w *= k;
      if (acc) {
        float4 o = dy.ld4(4 * i);
        v.x += o.x, v.y += o.y, v.z += o.z, v.w += o.w;
      }
      dy.st4(4 * i, v);
    }
    return;
  }
  for (int64_t i = tid; i < n; i += stride) {
    const float k = keep ? keep[i / LC] : 1.0f;
    float v = k * (gamma ? gamma[i % C] * dx[i] : dx[i]);
    dy.set(i, acc ? dy[i] + v : v);
  }
}

// With dgamma: the column reduction visits every (r, j) once; it writes dy there and contributes
// keep * dx * y to dgamma[j].
struct ScaleAddBwdF {
  FIn dx, y;
  const float *gamma, *keep;
  FOut dy;
  int64_t C, L;
  bool acc;
  __device__ void operator()(int64_t r, int64_t j, float (&v)[1]) const {
    const float k = keep ? keep[r / L] : 1.0f;
    const int64_t i = r * C + j;
    const float d = dx[i];
    const float o = k * (gamma[j] * d);
    dy.set(i, acc ? dy[i] + o : o);
    v[0] = k != 0.0f ? k * (d * y[i]) : 0.0f;  // a dropped row adds nothing (not even 0 * inf)
  }
};

// drop_path_mask: keep[b] = 0 with probability p, else 1 / (1 - p) (computed on the host, as the CPU).
__global__ void drop_path_kernel(const int32_t* seed, float* keep, int64_t B, float p, float kept, uint64_t stream,
                                 uint64_t row0) {
  const uint64_t seed64 = static_cast<uint64_t>(static_cast<uint32_t>(seed[0])) |
                          (static_cast<uint64_t>(static_cast<uint32_t>(seed[1])) << 32);
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < B;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x)
    keep[b] = rng_uniform(seed64, stream, row0 + static_cast<uint64_t>(b)) < p ? 0.0f : kept;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
void fill(const OpCall& c) {
  const Tensor& x = c.y(0);
  const int64_t n = x.numel();
  if (n <= 0) return;
  const double v = fill_value(c);
  switch (x.dtype) {
    case DType::F32: launch_fill<float>(c, x.f32(), n, static_cast<float>(v)); break;
    case DType::BF16: launch_fill<uint16_t>(c, x.bf16(), n, f32_to_bf16(static_cast<float>(v))); break;
    case DType::I32: launch_fill<int32_t>(c, x.i32(), n, static_cast<int32_t>(v)); break;
    case DType::U8:
      check(
          cudaMemsetAsync(x.u8(), static_cast<uint8_t>(static_cast<int32_t>(v)), static_cast<size_t>(n), stream_of(c)),
          "fill");
      break;
  }
}

void copy(const OpCall& c) {
  const FIn x = fin(c.x(0));
  const FOut y = fout(c.y(0));
  const int64_t n = c.x(0).numel();
  const CopyArgs a = copy_args(c);
  const float alpha = a.alpha;
  if (n <= 0) return;
  if (a.acc) {
    launch_map(c, "copy", x, FIn{}, y, n, ScaleAccF{alpha});
  } else if (alpha == 1.0f && x.bf == y.bf) {
    if (y.p != x.p) check(cudaMemcpyAsync(y.p, x.p, c.x(0).nbytes(), cudaMemcpyDeviceToDevice, stream_of(c)), "copy");
  } else {  // (alpha 1 between dtypes: a cast, rounded as cast rounds)
    launch_map(c, "copy", x, FIn{}, y, n, ScaleF{alpha});
  }
}

void cast(const OpCall& c) {
  const Tensor &x = c.x(0), &y = c.y(0);
  const int64_t n = x.numel();
  if (n <= 0) return;
  if (x.dtype == y.dtype) {
    if (x.data != y.data)
      check(cudaMemcpyAsync(y.data, x.data, x.nbytes(), cudaMemcpyDeviceToDevice, stream_of(c)), "cast");
    return;
  }
  const bool vec = aligned16(x.data) && aligned16(y.data);  // bf16 side needs 8, 16 is simpler to state
  if (x.dtype == DType::F32)
    f32_to_bf16_kernel<<<grid_for(c, vec ? (n + 3) / 4 : n), kBlock, 0, stream_of(c)>>>(x.f32(), y.bf16(), n, vec);
  else
    bf16_to_f32_kernel<<<grid_for(c, vec ? (n + 3) / 4 : n), kBlock, 0, stream_of(c)>>>(x.bf16(), y.f32(), n, vec);
  check_launch("cast");
}

void add(const OpCall& c) {
  const FIn a = fin(c.x(0)), b = fin(c.x(1));
  const FOut y = fout(c.y(0));
  const int64_t S = c.x(1).numel(), n = c.x(0).numel();
  if (n <= 0 || S <= 0) return;
  const bool vec = S % 4 == 0 && vec_base(a) && vec_base(b) && vec_base(y);
  add_kernel<<<grid_for(c, vec ? n / 4 : n), kBlock, 0, stream_of(c)>>>(a, b, y, n, S, vec);
  check_launch("add");
}

void sum_to(const OpCall& c) {
  const int64_t S = c.y(0).numel(), R = S ? c.x(0).numel() / S : 0;
  ColOut<1> o{{c.y(0).f32()}, accumulates(c)};
  column_reduce<1>(c, "sum_to", SumRowsF{fin(c.x(0)), S}, R, S, o);
}

void gelu(const OpCall& c) { launch_map(c, "gelu", fin(c.x(0)), FIn{}, fout(c.y(0)), c.x(0).numel(), GeluF{}); }

void gelu_bwd(const OpCall& c) {
  if (accumulates(c))
    launch_map(c, "gelu_bwd", fin(c.x(0)), fin(c.x(1)), fout(c.y(0)), c.x(0).numel(), GeluBwdF<true>{});
  else
    launch_map(c, "gelu_bwd", fin(c.x(0)), fin(c.x(1)), fout(c.y(0)), c.x(0).numel(), GeluBwdF<false>{});
}

void quick_gelu(const OpCall& c) {
  launch_map(c, "quick_gelu", fin(c.x(0)), FIn{}, fout(c.y(0)), c.x(0).numel(), QuickF{});
}

void quick_gelu_bwd(const OpCall& c) {
  if (accumulates(c))
    launch_map(c, "quick_gelu_bwd", fin(c.x(0)), fin(c.x(1)), fout(c.y(0)), c.x(0).numel(), QuickBwdF<true>{});
  else
    launch_map(c, "quick_gelu_bwd", fin(c.x(0)), fin(c.x(1)), fout(c.y(0)), c.x(0).numel(), QuickBwdF<false>{});
}

void scale_add(const OpCall& c) {
  const Tensor& X = c.y(0);
  const FOut x = fout(X);
  const FIn y = fin(c.x(0));
  const float* gamma = c.has_in(1) ? c.x(1).f32() : nullptr;
  const float* keep = c.has_in(2) ? c.x(2).f32() : nullptr;
  const int64_t n = X.numel(), C = X.shape[-1], B = X.shape[0];
  if (n <= 0 || C <= 0) return;
  const int64_t LC = n / B;  // elements per batch element
  const bool vec = C % 4 == 0 && vec_base(x) && vec_base(y) && (!gamma || aligned16(gamma));
  scale_add_kernel<<<grid_for(c, vec ? n / 4 : n), kBlock, 0, stream_of(c)>>>(x, y, gamma, keep, n, C, LC, vec);
  check_launch("scale_add");
}

void scale_add_bwd(const OpCall& c) {
  const Tensor& DX = c.x(0);
  const FIn dx = fin(DX);
  const FIn y = fin(c.x(1));
  const float* gamma = c.has_in(2) ? c.x(2).f32() : nullptr;
  const float* keep = c.has_in(3) ? c.x(3).f32() : nullptr;
  const FOut dy = fout(c.y(0));
  float* dgamma = c.has_out(1) ? c.y(1).f32() : nullptr;
  const bool acc = accumulates(c);
  const int64_t n = DX.numel(), C = DX.shape[-1], R = DX.shape.leading(1), B = DX.shape[0];
  if (n <= 0 || C <= 0) return;
  const int64_t L = R / B;
  if (dgamma) {  // (the check guarantees gamma is present with dgamma)
    ColOut<1> o{{dgamma}, true};
    column_reduce<1>(c, "scale_add_bwd", ScaleAddBwdF{dx, y, gamma, keep, dy, C, L, acc}, R, C, o);
    return;
  }
  const bool vec = C % 4 == 0 && vec_base(dx) && vec_base(dy) && (!gamma || aligned16(gamma));
  scale_add_bwd_kernel<<<grid_for(c, vec ? n / 4 : n), kBlock, 0, stream_of(c)>>>(dx, gamma, keep, dy, n, C, L * C, acc,
                                                                                  vec);
  check_launch("scale_add_bwd");
}

void drop_path_mask(const OpCall& c) {
  const int64_t B = c.y(0).numel();
  if (B <= 0) return;
  const DropPathArgs a = drop_path_args(c);
  const float p = a.p;
  const float kept = 1.0f / (1.0f - p);  // on the host, so the value is the CPU's exactly
  const uint64_t stream = a.stream;
  drop_path_kernel<<<grid_for(c, B), kBlock, 0, stream_of(c)>>>(c.x(0).i32(), c.y(0).f32(), B, p, kept, stream, a.row0);
  check_launch("drop_path_mask");
}

}  // namespace medic::cuda
