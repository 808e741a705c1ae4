// LayerNorm (forward, backward) and MAE's per-patch pixel normalisation on the GPU.
// CPU reference: native/cpu/layernorm.cpp; contracts in ops.h.
//
// Shape letters: R rows (all leading dims of x flattened), C features per row (P pixels for pixel_norm).
//
//   layernorm:  mean = sum(x) / C,  var = sum((x - mean)^2) / d, d = C (biased, as F.layer_norm) or
//               C - 1 (unbiased=1, as torch's var()),  rstd = 1 / sqrt(var + eps),  y = (x - mean) * rstd [* w + b].
//   backward:   xhat = (x - mean) rstd,  g = dy [* w],
//               dx = rstd (g - mean(g) - xhat sum(g xhat) / d),  dw += sum_r dy xhat,  db += sum_r dy.
//   pixel_norm: y = (x - mean) / sqrt(sum((x - mean)^2) / (C - 1) + eps)  (unbiased, as MAE's target).
//
// Layout: one warp per row (C is a few hundred to ~1.3k in ViTs), rows grid-strided over warps; a lane
// reads float4s (16 bytes) when C % 4 == 0 and the pointers are aligned, floats otherwise. Statistics
// are two-pass in fp32 like the CPU (mean first, then squared deviations); the row is re-read from L1
// for each pass rather than held in registers, so any C works. The per-row scalars use correctly
// rounded division and sqrt (__fdiv_rn, __fsqrt_rn) despite --use_fast_math, as the CPU does.
// Storage: x, y (and dy, dx of the backward) are f32 or bf16 through the FIn / FOut views of
// common.cuh; w, b, mean, rstd, dw, db are f32. The statistics are fp32 from the widened values, y is
// rounded once when stored.
// dw/db: the deterministic column reduction of ops_util.cuh (per-chunk partials, then an ordered sum),
// a second read of dy and x; no atomics.
#include <cstdint>

#include "common.cuh"
#include "medic/op_args.h"
#include "ops_util.cuh"

namespace medic::cuda {

using namespace memops;

namespace {

// Forward of layernorm and pixel_norm. var_div: C (layernorm) or C - 1 (pixel_norm).
// mean/rstd may be null (pixel_norm); w and b may be null. y may alias x (each lane reads x[j] before
// it writes y[j], and the statistics are complete before the first write).
template <bool VEC>
__global__ void __launch_bounds__(kBlock)
    norm_fwd_kernel(FIn x, const float* __restrict__ w, const float* __restrict__ b, FOut y, float* __restrict__ mean,
                    float* __restrict__ rstd, int64_t R, int C, float var_div, float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarps;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5); r < R; r += warps) {
    const FIn xr = x + r * C;
    const FOut yr = y + r * C;
    float s = 0.0f;
    if (VEC) {
      for (int j = lane * 4; j < C; j += 128) {
        float4 v = xr.ld4(j);
        s += (v.x + v.y) + (v.z + v.w);
      }
    } else {
      for (int j = lane; j < C; j += 32) s += xr[j];
    }
    const float m = __fdiv_rn(warp_sum(s), static_cast<float>(C));
    float q = 0.0f;
    if (VEC) {
      for (int j = lane * 4; j < C; j += 128) {
        float4 v = xr.ld4(j);
        float a = v.x - m, bb = v.y - m, c = v.z - m, d = v.w - m;
        q += (a * a + bb * bb) + (c * c + d * d);
      }
    } else {
      for (int j = lane; j < C; j += 32) {
        float a = xr[j] - m;
        q += a * a;
      }
    }
    const float var = __fdiv_rn(warp_sum(q), var_div);
    const float rs = __fdiv_rn(1.0f, __fsqrt_rn(var + eps));
    if (lane == 0 && mean) {
      mean[r] = m;
      rstd[r] = rs;
    }
    if (VEC) {
      for (int j = lane * 4; j < C; j += 128) {
        float4 v = xr.ld4(j);
        float4 o = make_float4((v.x - m) * rs, (v.y - m) * rs, (v.z - m) * rs, (v.w - m) * rs);
        if (w) {
          float4 g = *reinterpret_cast<const float4*>(w + j);
          o.x *= g.x, o.y *= g.y, o.z *= g.z, o.w *= g.w;
        }
        if (b) {
          float4 h = *reinterpret_cast<const float4*>(b + j);
          o.x += h.x, o.y += h.y, o.z += h.z, o.w += h.w;
        }
        yr.st4(j, o);
      }
    } else {
      for (int j = lane; j < C; j += 32) {
        float o = (xr[j] - m) * rs;
        if (w) o *= w[j];
        if (b) o += b[j];
        yr.set(j, o);
      }
    }
  }
}

// x[j..j+3] and the upstream gradient g = dy[j..j+3] (times w[j..j+3] when affine), float4 loads.
__device__ __forceinline__ void load_x_g(FIn xr, FIn dyr, const float* w, int j, float4& xv, float4& g) {
  xv = xr.ld4(j);
  g = dyr.ld4(j);
  if (w) {
    const float4 wv = *reinterpret_cast<const float4*>(w + j);
    g.x *= wv.x, g.y *= wv.y, g.z *= wv.z, g.w *= wv.w;
  }
}

// dx of layernorm, one warp per row.
template <bool VEC>
__global__ void __launch_bounds__(kBlock)
    ln_bwd_kernel(FIn dy, FIn x, const float* __restrict__ mean, const float* __restrict__ rstd,
                  const float* __restrict__ w, FOut dx, int64_t R, int C, float inv_c, float inv_d, bool acc) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarps;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5); r < R; r += warps) {
    const FIn xr = x + r * C;
    const FIn dyr = dy + r * C;
    const FOut dxr = dx + r * C;
    const float m = mean[r], rs = rstd[r];
    float s1 = 0.0f, s2 = 0.0f;  // sum g, sum g xhat
    if (VEC) {
      for (int j = lane * 4; j < C; j += 128) {
        float4 xv, g;
        load_x_g(xr, dyr, w, j, xv, g);
        s1 += (g.x + g.y) + (g.z + g.w);
        s2 += (g.x * ((xv.x - m) * rs) + g.y * ((xv.y - m) * rs)) + (g.z * ((xv.z - m) * rs) + g.w * ((xv.w - m) * rs));
      }
    } else {
      for (int j = lane; j < C; j += 32) {
        float g = w ? dyr[j] * w[j] : dyr[j];
        s1 += g;
        s2 += g * ((xr[j] - m) * rs);
      }
    }
    const float mg = warp_sum(s1) * inv_c, mgx = warp_sum(s2) * inv_d;
    if (VEC) {
      for (int j = lane * 4; j < C; j += 128) {
        float4 xv, g;
        load_x_g(xr, dyr, w, j, xv, g);
        float4 o;
        o.x = rs * (g.x - mg - ((xv.x - m) * rs) * mgx);
        o.y = rs * (g.y - mg - ((xv.y - m) * rs) * mgx);
        o.z = rs * (g.z - mg - ((xv.z - m) * rs) * mgx);
        o.w = rs * (g.w - mg - ((xv.w - m) * rs) * mgx);
        if (acc) {
          float4 p = dxr.ld4(j);
          o.x += p.x, o.y += p.y, o.z += p.z, o.w += p.w;
        }
        dxr.st4(j, o);
      }
    } else {
      for (int j = lane; j < C; j += 32) {
        float g = w ? dyr[j] * w[j] : dyr[j];
        float o = rs * (g - mg - ((xr[j] - m) * rs) * mgx);
        dxr.set(j, acc ? dxr[j] + o : o);
      }
    }
  }
}

// dw, db contributions of (r, j) for the column reduction.
struct LnParamF {
  FIn dy, x;
  const float *mean, *rstd;
  int64_t C;
  __device__ void operator()(int64_t r, int64_t j, float (&v)[2]) const {
    const int64_t i = r * C + j;
    const float d = dy[i];
    v[0] = d * ((x[i] - mean[r]) * rstd[r]);
    v[1] = d;
  }
};

bool vec_ok(int64_t C, std::initializer_list<FIn> views) {
  if (C % 4) return false;
  for (FIn v : views)
    if (!vec_base(v)) return false;
  return true;
}

// batchnorm: a block owns 32 columns (lane = column, coalesced across the warp); its 8 warps walk the
// rows in a fixed stride and their double partials are added in warp order (two passes: mean, then
// squared deviations), then the block writes y and the running statistics. Deterministic.
__global__ void __launch_bounds__(kBlock)
    batchnorm_kernel(const float* __restrict__ x, float* __restrict__ y, float* __restrict__ rm, float* __restrict__ rv,
                     int64_t R, int64_t C, bool train, double eps, double mom) {
  __shared__ double part[kWarps][32];
  __shared__ float sh_shift[32], sh_scale[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t k0 = static_cast<int64_t>(blockIdx.x) * 32; k0 < C; k0 += static_cast<int64_t>(gridDim.x) * 32) {
    const int64_t k = k0 + lane;
    const bool col = k < C;
    if (train) {
      double s = 0.0;
      if (col)
        for (int64_t r = warp; r < R; r += kWarps) s += x[r * C + k];
      part[warp][lane] = s;
      __syncthreads();
      double mean = 0.0;
      for (int w = 0; w < kWarps; ++w) mean += part[w][lane];
      mean /= static_cast<double>(R);
      __syncthreads();
      double q = 0.0;
      if (col)
        for (int64_t r = warp; r < R; r += kWarps) {
          const double d = x[r * C + k] - mean;
          q += d * d;
        }
      part[warp][lane] = q;
      __syncthreads();
      if (warp == 0) {
        double var = 0.0;
        for (int w = 0; w < kWarps; ++w) var += part[w][lane];
        sh_shift[lane] = static_cast<float>(mean);
        sh_scale[lane] = static_cast<float>(1.0 / sqrt(var / static_cast<double>(R) + eps));
        if (col) {
          rm[k] = static_cast<float>((1.0 - mom) * rm[k] + mom * mean);
          rv[k] = static_cast<float>((1.0 - mom) * rv[k] + mom * var / static_cast<double>(R - 1));
        }
      }
    } else if (warp == 0) {
      sh_shift[lane] = col ? rm[k] : 0.0f;
      sh_scale[lane] = col ? static_cast<float>(1.0 / sqrt(static_cast<double>(rv[k]) + eps)) : 0.0f;
    }
    __syncthreads();
    const float shift = sh_shift[lane], scale = sh_scale[lane];
    if (col)
      for (int64_t r = warp; r < R; r += kWarps) y[r * C + k] = (x[r * C + k] - shift) * scale;
    __syncthreads();
  }
}

void norm_fwd(const OpCall& c, const char* what, FIn x, const float* w, const float* b, FOut y, float* mean,
              float* rstd, int64_t R, int64_t C, float var_div, float eps) {
  if (R <= 0 || C <= 0) return;
  const int grid = grid_for(c, R, kWarps);
  if (vec_ok(C, {x, FIn{w, false}, FIn{b, false}, y}))
    norm_fwd_kernel<true>
        <<<grid, kBlock, 0, stream_of(c)>>>(x, w, b, y, mean, rstd, R, static_cast<int>(C), var_div, eps);
  else
    norm_fwd_kernel<false>
        <<<grid, kBlock, 0, stream_of(c)>>>(x, w, b, y, mean, rstd, R, static_cast<int>(C), var_div, eps);
  check_launch(what);
}

}  // namespace

void layernorm(const OpCall& c) {
  const Tensor& X = c.x(0);
  const NormArgs n = norm_args(c);
  norm_fwd(c, "layernorm", fin(X), c.has_in(1) ? c.x(1).f32() : nullptr, c.has_in(2) ? c.x(2).f32() : nullptr,
           fout(c.y(0)), c.y(1).f32(), c.y(2).f32(), n.R, n.C, n.var_div, n.eps);
}

void pixel_norm(const OpCall& c) {
  const NormArgs n = norm_args(c);
  const int64_t C = n.C, R = n.R;
  norm_fwd(c, "pixel_norm", fin(c.x(0)), nullptr, nullptr, fout(c.y(0)), nullptr, nullptr, R, C,
           static_cast<float>(C - 1), n.eps);
}

void layernorm_bwd(const OpCall& c) {
  const NormArgs n = norm_args(c);
  const FIn dy = fin(c.x(0));
  const FIn x = fin(c.x(1));
  const float* mean = c.x(2).f32();
  const float* rstd = c.x(3).f32();
  const float* w = c.has_in(4) ? c.x(4).f32() : nullptr;
  const FOut dx = fout(c.y(0));
  float* dw = c.has_out(1) ? c.y(1).f32() : nullptr;
  float* db = c.has_out(2) ? c.y(2).f32() : nullptr;
  const int64_t C = n.C, R = n.R;
  if (R <= 0 || C <= 0) return;
  const bool acc = n.acc;
  const float inv_c = 1.0f / static_cast<float>(C), inv_d = 1.0f / n.var_div;
  const int grid = grid_for(c, R, kWarps);
  if (vec_ok(C, {dy, x, FIn{w, false}, dx}))
    ln_bwd_kernel<true>
        <<<grid, kBlock, 0, stream_of(c)>>>(dy, x, mean, rstd, w, dx, R, static_cast<int>(C), inv_c, inv_d, acc);
  else
    ln_bwd_kernel<false>
        <<<grid, kBlock, 0, stream_of(c)>>>(dy, x, mean, rstd, w, dx, R, static_cast<int>(C), inv_c, inv_d, acc);
  check_launch("layernorm_bwd");
  if (dw || db) column_reduce<2>(c, "layernorm_bwd", LnParamF{dy, x, mean, rstd, C}, R, C, ColOut<2>{{dw, db}, true});
}

void batchnorm(const OpCall& c) {
  const Tensor& X = c.x(0);
  const int64_t R = X.shape[0], C = X.shape[1];
  if (R <= 0 || C <= 0) return;
  batchnorm_kernel<<<grid_for(c, C, 32), kBlock, 0, stream_of(c)>>>(X.f32(), c.y(0).f32(), c.y(1).f32(), c.y(2).f32(),
                                                                    R, C, batchnorm_args(c).train != 0,
                                                                    batchnorm_args(c).eps, batchnorm_args(c).momentum);
  check_launch("batchnorm");
}

}  // namespace medic::cuda
