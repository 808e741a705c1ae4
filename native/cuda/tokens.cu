// Token-row ops on the GPU: copy_rows (slicing, concatenation, CLS broadcast and its batch-sum
// backward), gather_rows / scatter_rows (MAE's visible-token gather and its backward), mask_fill and
// its backward, patchify / unpatchify. CPU reference: native/cpu/tokens.cpp; contracts in ops.h.
//
// Shape letters: B batch, T tokens, K indexed rows per batch, C row width; img [B, Ch, Hi, Wi] with
// patch side p, grid Gh x Gw = (Hi/p) x (Wi/p), N = Gh Gw patches of P = p p Ch values.
//
// Row ops: one warp per destination row, lanes over the row in groups of four when C % 4 == 0 and both
// bases are aligned for them (every row then is), one element at a time otherwise. The float rows are
// f32 or bf16 (the FIn / FOut views of common.cuh, any mix that ops.h allows): a bf16 row copied to a
// bf16 row keeps its bits, an f32 value stored into bf16 is rounded once, and sums are fp32.
//
// Indices: the CPU validates idx (range, and distinctness for scatter) and throws before writing. A
// kernel cannot throw, and a host-side check before the launch would need a device-to-host copy and a
// synchronisation (no graph capture). So a row whose index is out of range is skipped (gather leaves
// y[b, k] as it was, scatter writes nothing for it) and recorded as a DeviceFault (common.cuh): the
// host throws at its next synchronisation, naming the op, index and row. Duplicate indices in a
// scatter are not detected on the GPU: they race (the last writer wins; with acc=1 an update can be
// lost); the trainer's mask sampler never makes them.
#include <cstdint>

#include "common.cuh"
#include "medic/op_args.h"
#include "ops_util.cuh"

namespace medic::cuda {

using namespace memops;

namespace {

// dst (+)= src over one row of C values by one warp.
template <bool VEC>
__device__ __forceinline__ void warp_row(FOut dst, FIn src, int C, bool acc, int lane) {
  if (VEC) {
    for (int j = lane * 4; j < C; j += 128) {
      float4 v = src.ld4(j);
      if (acc) {
        float4 o = dst.ld4(j);
        v.x += o.x, v.y += o.y, v.z += o.z, v.w += o.w;
      }
      dst.st4(j, v);
    }
  } else {
    for (int j = lane; j < C; j += 32) dst.set(j, acc ? dst[j] + src[j] : src[j]);
  }
}

#define MEDIC_WARP_LOOP(rows)                                       \
  const int lane = threadIdx.x & 31;                                \
  const int64_t n_warps = static_cast<int64_t>(gridDim.x) * kWarps; \
  for (int64_t w = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5); w < (rows); w += n_warps)

// copy_rows: destination row w = b n + i of y[b, dst + i] from x[bx, src + i], bx = b or 0 (broadcast).
template <bool VEC>
__global__ void copy_rows_kernel(FIn x, FOut y, int64_t By, int64_t n, int64_t Bx, int64_t Tx, int64_t Ty, int64_t src,
                                 int64_t dst, int C, bool acc) {
  MEDIC_WARP_LOOP(By * n) {
    const int64_t b = w / n, i = w % n, bx = Bx == 1 ? 0 : b;
    warp_row<VEC>(y + (b * Ty + dst + i) * C, x + (bx * Tx + src + i) * C, C, acc, lane);
  }
}

// copy_rows with By == 1 < Bx: y[0, dst + i] += sum_b x[b, src + i], added in batch order (as the CPU).
template <bool VEC>
__global__ void copy_rows_bsum_kernel(FIn x, FOut y, int64_t n, int64_t Bx, int64_t Tx, int64_t src, int64_t dst,
                                      int C) {
  MEDIC_WARP_LOOP(n) {
    const FOut yr = y + (dst + w) * C;
    const FIn xr = x + (src + w) * C;
    const int64_t bstride = Tx * C;
    if (VEC) {
      for (int j = lane * 4; j < C; j += 128) {
        float4 a = yr.ld4(j);
        for (int64_t b = 0; b < Bx; ++b) {
          float4 v = xr.ld4(b * bstride + j);
          a.x += v.x, a.y += v.y, a.z += v.z, a.w += v.w;
        }
        yr.st4(j, a);
      }
    } else {
      for (int j = lane; j < C; j += 32) {
        float a = yr[j];
        for (int64_t b = 0; b < Bx; ++b) a += xr[b * bstride + j];
        yr.set(j, a);
      }
    }
  }
}

// gather_rows: y[b, k] (+)= x[b, idx[b, k]]; scatter_rows: x[b, idx[b, k]] (+)= y[b, k]. Row w = b K + k.
template <bool VEC, bool SCATTER>
__global__ void index_rows_kernel(FIn src, FOut dst, const int32_t* idx, int64_t B, int64_t K, int64_t T, int C,
                                  bool acc, DeviceFault* fault) {
  MEDIC_WARP_LOOP(B * K) {
    const int64_t b = w / K;
    const int32_t t = idx[w];
    if (t < 0 || t >= T) {  // invalid index: skipped and reported (see the header)
      if (lane == 0) report_fault(fault, SCATTER ? kFaultScatterIndex : kFaultGatherIndex, t, T, w);
      continue;
    }
    if (SCATTER)
      warp_row<VEC>(dst + (b * T + t) * C, src + w * C, C, acc, lane);
    else
      warp_row<VEC>(dst + w * C, src + (b * T + t) * C, C, acc, lane);
  }
}

// mask_fill: x[r] = token where mask[r] != 0.
template <bool VEC>
__global__ void mask_fill_kernel(const uint8_t* mask, FIn token, FOut x, int64_t R, int C) {
  MEDIC_WARP_LOOP(R) {
    if (mask[w]) warp_row<VEC>(x + w * C, token, C, false, lane);
  }
}

// mask_fill_bwd through the column reduction: dtoken[j] += sum of masked dx[r, j]; out = dx with the
// masked rows zeroed (out may alias dx: each (r, j) is read, then written, by the same thread).
struct MaskFillBwdF {
  const uint8_t* mask;
  FIn dx;
  FOut out;
  int64_t C;
  __device__ void operator()(int64_t r, int64_t j, float (&v)[1]) const {
    const int64_t i = r * C + j;
    const float d = dx[i];
    if (mask[r]) {
      v[0] = d;
      out.set(i, 0.0f);
    } else {
      v[0] = 0.0f;
      if (out.p != dx.p) out.set(i, d);
    }
  }
};

// ---------------------------------------------------------------------------------------------
// patchify / unpatchify: one block per patch row (b, n) (grid-strided), threads over its P values.
// order 0: P index q = (py p + px) Ch + ch; order 1: q = (ch p + py) p + px. Each direction writes its
// output exactly once (the map is a bijection), so no ordering concerns.
// The kernel's copy of medic/op_args.h's PatchGeom: p and P as int for cheap per-element division.
struct PatchKernelGeom {
  int64_t B, Ch, Hi, Wi, Gw, N;
  int p, P;
  bool order1;
};

template <bool TO_PATCH>
__global__ void patch_kernel(float* img, float* x, PatchKernelGeom g) {
  const int64_t rows = g.B * g.N;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t b = row / g.N, n = row % g.N;
    const int64_t gy = n / g.Gw, gx = n % g.Gw;
    float* xr = x + row * g.P;
    for (int q = threadIdx.x; q < g.P; q += blockDim.x) {
      int ch, py, px;
      if (g.order1) {
        ch = q / (g.p * g.p);
        const int rem = q - ch * g.p * g.p;
        py = rem / g.p;
        px = rem - py * g.p;
      } else {
        const int pix = q / static_cast<int>(g.Ch);
        ch = q - pix * static_cast<int>(g.Ch);
        py = pix / g.p;
        px = pix - py * g.p;
      }
      float* ip = img + ((b * g.Ch + ch) * g.Hi + gy * g.p + py) * g.Wi + gx * g.p + px;
      if (TO_PATCH)
        xr[q] = *ip;
      else
        *ip = xr[q];
    }
  }
}

PatchKernelGeom kernel_geom(const PatchGeom& d) {
  PatchKernelGeom g;
  g.B = d.B;
  g.Ch = d.Ch;
  g.Hi = d.Hi;
  g.Wi = d.Wi;
  g.p = static_cast<int>(d.patch);
  g.Gw = d.Gw;
  g.N = d.N;
  g.P = static_cast<int>(d.P);
  g.order1 = d.order == 1;
  return g;
}

template <bool TO_PATCH>
void run_patch(const OpCall& c, const char* what, float* img, float* x, const PatchKernelGeom& g) {
  const int64_t rows = g.B * g.N;
  if (rows <= 0 || g.P <= 0) return;
  const int threads = g.P >= 256 ? 256 : ((g.P + 31) / 32) * 32;
  int64_t grid = rows;
  const int64_t cap = static_cast<int64_t>(ctx_of(c).sm_count > 0 ? ctx_of(c).sm_count : 132) * 32;
  if (grid > cap) grid = cap;
  patch_kernel<TO_PATCH><<<static_cast<int>(grid), threads, 0, stream_of(c)>>>(img, x, g);
  check_launch(what);
}

bool rows_vec(int64_t C, FIn a, FIn b) { return C % 4 == 0 && vec_base(a) && vec_base(b); }

}  // namespace

void copy_rows(const OpCall& c) {
  const Tensor &X = c.x(0), &Y = c.y(0);
  const int64_t Bx = X.shape[0], Tx = X.shape[1], By = Y.shape[0], Ty = Y.shape[1], C = X.shape[2];
  const CopyRowsArgs a = copy_rows_args(c);
  const int64_t src = a.src, dst = a.dst, n = a.count;
  const bool acc = a.acc;
  const FIn x = fin(X);
  const FOut y = fout(Y);
  if (n <= 0 || C <= 0 || By <= 0) return;
  const bool vec = rows_vec(C, x, y);
  const int Ci = static_cast<int>(C);
  if (By == 1 && Bx > 1) {
    const int grid = grid_for(c, n, kWarps);
    if (vec)
      copy_rows_bsum_kernel<true><<<grid, kBlock, 0, stream_of(c)>>>(x, y, n, Bx, Tx, src, dst, Ci);
    else
      copy_rows_bsum_kernel<false><<<grid, kBlock, 0, stream_of(c)>>>(x, y, n, Bx, Tx, src, dst, Ci);
  } else {
    const int grid = grid_for(c, By * n, kWarps);
    if (vec)
      copy_rows_kernel<true><<<grid, kBlock, 0, stream_of(c)>>>(x, y, By, n, Bx, Tx, Ty, src, dst, Ci, acc);
    else
      copy_rows_kernel<false><<<grid, kBlock, 0, stream_of(c)>>>(x, y, By, n, Bx, Tx, Ty, src, dst, Ci, acc);
  }
  check_launch("copy_rows");
}

void gather_rows(const OpCall& c) {
  const Tensor &X = c.x(0), &I = c.x(1);
  const int64_t B = X.shape[0], T = X.shape[1], C = X.shape[2], K = I.shape[1];
  const FIn x = fin(X);
  const FOut y = fout(c.y(0));
  if (B * K <= 0 || C <= 0) return;
  const bool acc = accumulates(c);
  const int grid = grid_for(c, B * K, kWarps);
  if (rows_vec(C, x, y))
    index_rows_kernel<true, false>
        <<<grid, kBlock, 0, stream_of(c)>>>(x, y, I.i32(), B, K, T, static_cast<int>(C), acc, fault_of(c));
  else
    index_rows_kernel<false, false>
        <<<grid, kBlock, 0, stream_of(c)>>>(x, y, I.i32(), B, K, T, static_cast<int>(C), acc, fault_of(c));
  check_launch("gather_rows");
}

void scatter_rows(const OpCall& c) {
  const Tensor &Yt = c.x(0), &I = c.x(1), &X = c.y(0);
  const int64_t B = Yt.shape[0], K = Yt.shape[1], C = Yt.shape[2], T = X.shape[1];
  const FIn y = fin(Yt);
  const FOut x = fout(X);
  if (B * K <= 0 || C <= 0) return;
  const bool acc = accumulates(c);
  const int grid = grid_for(c, B * K, kWarps);
  if (rows_vec(C, x, y))
    index_rows_kernel<true, true>
        <<<grid, kBlock, 0, stream_of(c)>>>(y, x, I.i32(), B, K, T, static_cast<int>(C), acc, fault_of(c));
  else
    index_rows_kernel<false, true>
        <<<grid, kBlock, 0, stream_of(c)>>>(y, x, I.i32(), B, K, T, static_cast<int>(C), acc, fault_of(c));
  check_launch("scatter_rows");
}

void mask_fill(const OpCall& c) {
  const Tensor& X = c.y(0);
  const int64_t R = X.shape.leading(1), C = X.shape[2];
  if (R <= 0 || C <= 0) return;
  const FIn token = fin(c.x(1));
  const int grid = grid_for(c, R, kWarps);
  if (rows_vec(C, fin(X), token))
    mask_fill_kernel<true><<<grid, kBlock, 0, stream_of(c)>>>(c.x(0).u8(), token, fout(X), R, static_cast<int>(C));
  else
    mask_fill_kernel<false><<<grid, kBlock, 0, stream_of(c)>>>(c.x(0).u8(), token, fout(X), R, static_cast<int>(C));
  check_launch("mask_fill");
}

void mask_fill_bwd(const OpCall& c) {
  const Tensor& DX = c.x(1);
  const int64_t R = DX.shape.leading(1), C = DX.shape[2];
  ColOut<1> o{{c.y(1).f32()}, true};
  column_reduce<1>(c, "mask_fill_bwd", MaskFillBwdF{c.x(0).u8(), fin(DX), fout(c.y(0)), C}, R, C, o);
}

void patchify(const OpCall& c) {
  run_patch<true>(c, "patchify", c.x(0).f32(), c.y(0).f32(), kernel_geom(patch_geom(c)));
}

void unpatchify(const OpCall& c) {
  run_patch<false>(c, "unpatchify", c.y(0).f32(), c.x(0).f32(), kernel_geom(patch_geom(c)));
}

}  // namespace medic::cuda
