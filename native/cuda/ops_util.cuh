// Small helpers shared by the memory-bound CUDA kernels (elementwise, layernorm, tokens, loss, optim):
// launch sizing, 16-byte alignment tests, warp/block reductions with a fixed order, and the
// deterministic column reduction (sum over rows of a [R, C] matrix) used by every "sum over the batch"
// gradient (sum_to, dgamma, dtoken, LayerNorm dw/db).
//
// Determinism: no float atomics anywhere. Reductions that span blocks write per-block partials to the
// op's workspace and a second kernel adds them in a fixed order. The partition into blocks depends only
// on the shape (never on the SM count), so a given shape gives the same bits on every GPU.
#pragma once

#include <cstdint>

#include "common.cuh"

// In their own namespace so that they cannot collide (ODR) with helpers of the other CUDA sources.
namespace medic::cuda::memops {

constexpr int kBlock = 256;  // threads per block for flat kernels
constexpr int kWarps = kBlock / 32;

// Blocks for a grid-stride loop over `items` work items of `per_block` each: enough to fill the GPU
// (a few waves of blocks per SM) without launching more than there is work.
inline int grid_for(const OpCall& c, int64_t items, int64_t per_block = kBlock) {
  int64_t need = (items + per_block - 1) / per_block;
  int sms = ctx_of(c).sm_count > 0 ? ctx_of(c).sm_count : 132;
  int64_t cap = static_cast<int64_t>(sms) * 16;
  if (need > cap) need = cap;
  return static_cast<int>(need < 1 ? 1 : need);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x == NT, a multiple of 32); every thread gets the total. The order is
// fixed (warp butterflies, then the warp totals by one warp), so the result is reproducible.
template <int NT, class T>
__device__ __forceinline__ T block_sum(T v, T* smem /* [NT / 32] */) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  T t = lane < NT / 32 ? smem[lane] : T(0);
  t = warp_sum(t);
  __syncthreads();  // smem may be reused by the caller
  return t;
}

// ---------------------------------------------------------------------------------------------
// Column reduction: out_s[j] (+)= sum_r f(r, j)_s for s < NS outputs, over R rows and C columns.
//
// Pass 1 (colsum_partial): block (32, 8) owns 32 columns and one chunk of rows; thread (tx, ty) sums
// rows ty, ty + 8, ... of the chunk for column tx (a warp reads 128 contiguous bytes per row), then the
// 8 per-thread sums are added in ty order through shared memory -> part[chunk][s][j].
// Pass 2 (colsum_final): each column adds its chunk partials in chunk order.
// The functor may also write an elementwise output for (r, j) (dy of scale_add_bwd, dx_out of
// mask_fill_bwd): every (r, j) is visited exactly once.
constexpr int kColTile = 32, kColRows = 8, kMaxChunks = 256, kMinChunkRows = 64;

struct ColPlan {
  int64_t rows_per_chunk;
  int chunks;
};
inline ColPlan col_plan(int64_t R) {
  int64_t chunks = (R + kMinChunkRows - 1) / kMinChunkRows;
  if (chunks > kMaxChunks) chunks = kMaxChunks;
  if (chunks < 1) chunks = 1;
  int64_t rpc = (R + chunks - 1) / chunks;
  if (rpc < 1) rpc = 1;
  chunks = static_cast<int>((R + rpc - 1) / rpc);
  if (chunks < 1) chunks = 1;
  return {rpc, static_cast<int>(chunks)};
}

template <int NS, class F>
__global__ void __launch_bounds__(kColTile* kColRows)
    colsum_partial(F f, int64_t R, int64_t C, int64_t rows_per_chunk, float* part) {
  __shared__ float sm[NS][kColRows][kColTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColTile + tx;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < R ? r0 + rows_per_chunk : R;
  float acc[NS];
#pragma unroll
  for (int s = 0; s < NS; ++s) acc[s] = 0.0f;
  if (j < C) {
    for (int64_t r = r0 + ty; r < r1; r += kColRows) {
      float v[NS];
      f(r, j, v);
#pragma unroll
      for (int s = 0; s < NS; ++s) acc[s] += v[s];
    }
  }
#pragma unroll
  for (int s = 0; s < NS; ++s) sm[s][ty][tx] = acc[s];
  __syncthreads();
  if (ty == 0 && j < C) {
#pragma unroll
    for (int s = 0; s < NS; ++s) {
      float t = sm[s][0][tx];
#pragma unroll
      for (int k = 1; k < kColRows; ++k) t += sm[s][k][tx];
      part[(static_cast<int64_t>(blockIdx.y) * NS + s) * C + j] = t;
    }
  }
}

// out[s] may be null (that output is not wanted). acc: add to out (else overwrite).
template <int NS>
struct ColOut {
  float* out[NS];
  bool acc;
};

template <int NS>
__global__ void colsum_final(const float* __restrict__ part, int chunks, int64_t C, ColOut<NS> o) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < C; j += stride) {
#pragma unroll
    for (int s = 0; s < NS; ++s) {
      if (!o.out[s]) continue;
      float t = 0.0f;
      for (int k = 0; k < chunks; ++k) t += part[(static_cast<int64_t>(k) * NS + s) * C + j];
      o.out[s][j] = o.acc ? o.out[s][j] + t : t;
    }
  }
}

// Runs both passes on the op's stream. Workspace: chunks * NS * C floats.
template <int NS, class F>
void column_reduce(const OpCall& call, const char* what, F f, int64_t R, int64_t C, ColOut<NS> o) {
  if (C <= 0) return;
  cudaStream_t st = stream_of(call);
  if (R <= 0) {
    // Nothing to sum: the sums are zero (overwrite writes zeros, accumulate leaves out as it is).
    if (!o.acc)
      for (int s = 0; s < NS; ++s)
        if (o.out[s]) check(cudaMemsetAsync(o.out[s], 0, static_cast<size_t>(C) * 4, st), what);
    return;
  }
  const ColPlan plan = col_plan(R);
  float* part = static_cast<float*>(workspace(ctx_of(call), static_cast<size_t>(plan.chunks) * NS * C * sizeof(float)));
  dim3 grid(static_cast<unsigned>((C + kColTile - 1) / kColTile), static_cast<unsigned>(plan.chunks));
  colsum_partial<NS><<<grid, dim3(kColTile, kColRows), 0, st>>>(f, R, C, plan.rows_per_chunk, part);
  check_launch(what);
  colsum_final<NS><<<grid_for(call, C), kBlock, 0, st>>>(part, plan.chunks, C, o);
  check_launch(what);
}

}  // namespace medic::cuda::memops
