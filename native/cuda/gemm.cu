// gemm on the GPU: C = act(alpha * op(A) op(B) + bias) (+ C when acc=1), bf16 tensor cores, fp32 accumulate.
// The CPU reference is native/cpu/gemm.cpp; the contract is ops.h's.
//
// Shape letters: M rows of C, N columns of C, K the inner dim, nb the batch count (1 unless B has
// more than 2 dims). op(A) is [M, K] (stored [K, M] when trans_a), op(B) is [K, N] (stored [N, K] when
// trans_b); C and preact are [M, N] per batch, row-major. With a 2-D B, A's leading dims are flattened
// into M (or into K when trans_a), exactly as check_gemm states.
//
// Storage (ops.h, Precision): A, B, C and preact are each f32 or bf16; bias f32. The product is always
// the bf16 product (each operand element rounded to bf16, exact products, fp32 sums): an f32 operand
// is rounded as it is staged, a bf16 one is staged as it is. C and preact are rounded once when bf16.
//
// Kernels: one CTA of 256 threads (8 warps as 2 x 4, each warp a 64 x 32 sub-tile) computes a 128 x 128
// tile of C, walking K in 32-deep slices; the tensor-core loop over a slice and the epilogue are
// shared by two ways of filling the shared tiles:
//   - gemm_bf16_kernel, register-staged double buffering, for two f32 operands (and bf16 ones whose
//     rows are not 16-byte aligned: odd K, M or N; views at odd offsets): cp.async copies bytes and
//     cannot convert, so each thread loads its share of the next slice into registers (as float4:
//     four f32, or four bf16 widened exactly) while the tensor cores work on the current one, then
//     rounds to bf16 and stores it into the other of two shared buffers (one __syncthreads per slice).
//   - gemm_pipe_kernel, when at least one operand is bf16 with 16-byte aligned rows (mixed
//     precision's products: bf16 activations times f32 master weights forward, f32 gradients times
//     bf16 activations for dW; both bf16 where both are): a kStages-deep ring of shared tiles. A bf16
//     operand is filled by cp.async 16-byte copies (8 bf16 straight from global to shared, no
//     registers, no conversion), with the copies of slices kt+1 .. kt+kStages-1 in flight while the
//     tensor cores work on slice kt; an f32 operand is register-staged into the same ring (loaded
//     before the multiply, rounded and stored after it, into the stage read two slices later). Per
//     slice: wait for this thread's copies of slice kt (cp.async.wait_group kStages-2), one
//     __syncthreads (every thread's copies and stores of slice kt landed; every warp is done with the
//     stage about to be refilled), issue slice kt+kStages-1, commit, multiply, store. Edges and the
//     K tail are zero-filled by the copies themselves (src-size < 16). Shared tiles keep the operand's memory
//     layout (k-contiguous, or m/n-contiguous when the
// operand is stored transposed) and ldmatrix (.trans where needed) turns either into mma fragments,
// so the four transpose layouts are four instantiations of one kernel. Rows are padded by 8 bf16 so
// that the 8 row addresses of every ldmatrix phase hit distinct banks.
//
// Edges: every global load is predicated on (row < rows, col < cols) and zero-filled, so any M, N, K
// works (K need not be a multiple of anything); 4-element loads are used only when the contiguous
// dimension and the base pointers allow them (VEC), otherwise scalar loads. The epilogue (alpha, bias,
// GELU with preact, acc) is fused into the write-back from the accumulators.
//
// Split-K: a product with few output tiles and a long K (the weight gradients, e.g. M=2304, N=768,
// K=B*197) would leave most SMs idle, so K is cut into `split` slices whose raw partial sums go to
// workspace and a second kernel adds them in a fixed order and applies the epilogue (deterministic:
// no atomics).
#include <cstdint>

#include "common.cuh"
#include "medic/op_args.h"
#include "mma.cuh"

namespace medic::cuda {
namespace {

using namespace mma;

constexpr int BM = 128, BN = 128, BK = 32;  // CTA tile
constexpr int NT = 256;                     // threads: 8 warps, 2 (M) x 4 (N)
constexpr int WM = 64, WN = 32;             // warp tile
constexpr int PAD = 8;                      // bf16 padding per shared row (16 bytes)
// A shared stage holds either a [BM][BK+PAD] (k-contiguous) or a [BK][BM+PAD] tile; size for the larger.
constexpr int kStageElems = (BM * (BK + PAD) > BK * (BM + PAD)) ? BM * (BK + PAD) : BK * (BM + PAD);
// cp.async pipeline depth: 3 stages of A and B tiles, 61,440 bytes of dynamic shared memory (above the
// 48 KiB default: opted into once). Two slices in flight while one is multiplied.
constexpr int kStages = 3;
constexpr size_t kPipeSmem = sizeof(__nv_bfloat16) * 2 * kStages * kStageElems;

struct GemmArgs {
  FIn A;  // f32 or bf16 (see Storage above)
  FIn B;
  const float* bias;  // [N] or null
  FOut C;
  FOut P;     // preact (act=1) or null
  float* ws;  // split-K partials [split][nb][M][N] (split > 1 only)
  int64_t M, N, K;
  int64_t lda, ldb;    // row strides of A and B as stored
  int64_t sa, sb, sc;  // batch strides of A, B, C/P
  int nb, split;
  int64_t kchunk;  // K per split slice (multiple of BK)
  int tiles_n;
  float alpha;
  int acc, act;
  bool pair;              // N even and C/P aligned for two columns at once (float2, or a bf16 pair)
  bool a_async, b_async;  // gemm_pipe_kernel: which operands are copied by cp.async
};

__device__ __forceinline__ float gelu_erf(float x) { return x * 0.5f * erfcf(-x * 0.70710678118654752f); }

// The fused epilogue for element o of C (column col), C and P at batch offset already.
__device__ __forceinline__ void epi1(const GemmArgs& g, float v, int64_t col, FOut C, FOut P, int64_t o) {
  v = g.alpha * v;
  if (g.bias) v += g.bias[col];
  if (g.act == 1) {
    P.set(o, v);
    v = gelu_erf(v);
  }
  if (g.acc) v += C[o];
  C.set(o, v);
}

// Two adjacent columns (col even) of C (and P) in one store: a float2, or two bf16 in 32 bits.
__device__ __forceinline__ float2 ld2(FOut t, int64_t o) {
  if (!t.bf) return *reinterpret_cast<const float2*>(static_cast<const float*>(t.p) + o);
  const uint32_t u = *reinterpret_cast<const uint32_t*>(static_cast<const uint16_t*>(t.p) + o);
  return make_float2(__uint_as_float(u << 16), __uint_as_float(u & 0xffff0000u));
}
__device__ __forceinline__ void st2(FOut t, int64_t o, float2 v) {
  if (!t.bf)
    *reinterpret_cast<float2*>(static_cast<float*>(t.p) + o) = v;
  else
    *reinterpret_cast<uint32_t*>(static_cast<uint16_t*>(t.p) + o) =
        static_cast<uint32_t>(bf16_bits(v.x)) | (static_cast<uint32_t>(bf16_bits(v.y)) << 16);
}

__device__ __forceinline__ void finish_pair(const GemmArgs& g, float v0, float v1, int64_t row, int64_t col, FOut C,
                                            FOut P) {
  if (row >= g.M || col >= g.N) return;
  const int64_t o = row * g.N + col;
  if (g.pair) {  // col even and N even: col + 1 < N too, and the address is aligned for the pair
    float2 out;
    out.x = g.alpha * v0;
    out.y = g.alpha * v1;
    if (g.bias) {
      out.x += g.bias[col];
      out.y += g.bias[col + 1];
    }
    if (g.act == 1) {
      st2(P, o, out);
      out.x = gelu_erf(out.x);
      out.y = gelu_erf(out.y);
    }
    if (g.acc) {
      const float2 old = ld2(C, o);
      out.x += old.x;
      out.y += old.y;
    }
    st2(C, o, out);
  } else {
    epi1(g, v0, col, C, P, o);
    if (col + 1 < g.N) epi1(g, v1, col + 1, C, P, o + 1);
  }
}

// Four consecutive elements of an operand, widened to fp32 (a bf16 widens exactly, so staging rounds
// it back to the same bits), and one element.
__device__ __forceinline__ float4 gload4(const float* p) { return __ldg(reinterpret_cast<const float4*>(p)); }
__device__ __forceinline__ float4 gload4(const uint16_t* p) {
  const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
  return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u), __uint_as_float(u.y << 16),
                     __uint_as_float(u.y & 0xffff0000u));
}
__device__ __forceinline__ float gload1(const float* p) { return __ldg(p); }
__device__ __forceinline__ float gload1(const uint16_t* p) {
  return __uint_as_float(static_cast<uint32_t>(__ldg(p)) << 16);
}

// One R x CC f32 tile of a row-major matrix (row stride ld) into registers: 1024 float4 slots, four per
// thread; slot idx covers tile row idx / (CC/4), columns 4 (idx % (CC/4)) .. +3. `src` points at the
// tile's origin; rows_left / cols_left are how many rows / columns of the tile exist (may exceed R, CC).
// Elements past them read as 0. Interior tiles (the common case) take the unpredicated branch.
template <int R, int CC, bool VEC, class E>
__device__ __forceinline__ void load_tile_t(float4 (&r)[4], const E* src, int64_t ld, int64_t rows_left,
                                            int64_t cols_left) {
  static_assert(R * CC == 4 * 4 * NT, "tile must be four float4 per thread");
  if (VEC && rows_left >= R && cols_left >= CC) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int idx = threadIdx.x + i * NT, row = idx / (CC / 4), col = (idx % (CC / 4)) * 4;
      r[i] = gload4(src + row * ld + col);
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int idx = threadIdx.x + i * NT, row = idx / (CC / 4), col = (idx % (CC / 4)) * 4;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (row < rows_left) {
      const E* p = src + row * ld + col;
      if (VEC && col + 4 <= cols_left) {
        v = gload4(p);
      } else {
        if (col + 0 < cols_left) v.x = gload1(p + 0);
        if (col + 1 < cols_left) v.y = gload1(p + 1);
        if (col + 2 < cols_left) v.z = gload1(p + 2);
        if (col + 3 < cols_left) v.w = gload1(p + 3);
      }
    }
    r[i] = v;
  }
}
// The operand's dtype is uniform over the launch: one branch per slice.
template <int R, int CC, bool VEC>
__device__ __forceinline__ void load_tile(float4 (&r)[4], FIn src, int64_t ld, int64_t rows_left, int64_t cols_left) {
  if (src.bf)
    load_tile_t<R, CC, VEC>(r, static_cast<const uint16_t*>(src.p), ld, rows_left, cols_left);
  else
    load_tile_t<R, CC, VEC>(r, static_cast<const float*>(src.p), ld, rows_left, cols_left);
}

// The registers of load_tile, converted to bf16, into a shared [R][CC+PAD] tile.
template <int R, int CC>
__device__ __forceinline__ void store_tile(__nv_bfloat16* s, const float4 (&r)[4]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int idx = threadIdx.x + i * NT;
    st_bf16x4(s + (idx / (CC / 4)) * (CC + PAD) + (idx % (CC / 4)) * 4, r[i]);
  }
}

// acc += the 32-deep slice in shared tiles a (A's stage) and bb (B's stage), warp (wm, wn)'s 64 x 32.
template <bool TA, bool TB>
__device__ __forceinline__ void mma_slice(float (&acc)[WM / 16][WN / 8][4], const __nv_bfloat16* a,
                                          const __nv_bfloat16* bb, int wm, int wn, int lane) {
#pragma unroll
  for (int ks = 0; ks < BK; ks += 16) {
    uint32_t af[WM / 16][4], bf[WN / 16][4];
#pragma unroll
    for (int i = 0; i < WM / 16; ++i) {
      const int mr = wm * WM + i * 16;
      if (TA)
        ldsm_x4_t(af[i], a + (ks + at_row(lane)) * (BM + PAD) + mr + at_col(lane));
      else
        ldsm_x4(af[i], a + (mr + a_row(lane)) * (BK + PAD) + ks + a_col(lane));
    }
#pragma unroll
    for (int jj = 0; jj < WN / 16; ++jj) {
      const int nc = wn * WN + jj * 16;
      if (TB)
        ldsm_x4(bf[jj], bb + (nc + bn_row(lane)) * (BK + PAD) + ks + bn_col(lane));
      else
        ldsm_x4_t(bf[jj], bb + (ks + bk_row(lane)) * (BN + PAD) + nc + bk_col(lane));
    }
#pragma unroll
    for (int i = 0; i < WM / 16; ++i)
#pragma unroll
      for (int j = 0; j < WN / 8; ++j) mma_bf16(acc[i][j], af[i], bf[j >> 1][(j & 1) * 2], bf[j >> 1][(j & 1) * 2 + 1]);
  }
}

// Write-back: accumulator (i, j, h) is C[row = m0 + wm*64 + 16i + g + 8h][col = n0 + wn*32 + 8j + 2t + {0,1}].
// With split-K, raw partial sums to the workspace (gemm_splitk_reduce applies the epilogue).
__device__ __forceinline__ void write_back(const GemmArgs& g, const float (&acc)[WM / 16][WN / 8][4], int b, int slice,
                                           int64_t m0, int64_t n0, int wm, int wn, int lane) {
  const int gq = lane >> 2, tq = lane & 3;
  if (g.split > 1) {
    float* W = g.ws + (static_cast<int64_t>(slice) * g.nb + b) * g.M * g.N;
#pragma unroll
    for (int i = 0; i < WM / 16; ++i)
#pragma unroll
      for (int j = 0; j < WN / 8; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t row = m0 + wm * WM + i * 16 + gq + h * 8, col = n0 + wn * WN + j * 8 + tq * 2;
          if (row >= g.M || col >= g.N) continue;
          W[row * g.N + col] = acc[i][j][2 * h];
          if (col + 1 < g.N) W[row * g.N + col + 1] = acc[i][j][2 * h + 1];
        }
  } else {
    const FOut C = g.C + b * g.sc;
    const FOut P = g.P ? g.P + b * g.sc : FOut{};
#pragma unroll
    for (int i = 0; i < WM / 16; ++i)
#pragma unroll
      for (int j = 0; j < WN / 8; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t row = m0 + wm * WM + i * 16 + gq + h * 8, col = n0 + wn * WN + j * 8 + tq * 2;
          finish_pair(g, acc[i][j][2 * h], acc[i][j][2 * h + 1], row, col, C, P);
        }
  }
}

template <bool TA, bool TB, bool VEC>
__global__ void __launch_bounds__(NT) gemm_bf16_kernel(const GemmArgs g) {
  __shared__ __align__(16) __nv_bfloat16 sA[2][kStageElems];
  __shared__ __align__(16) __nv_bfloat16 sB[2][kStageElems];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wm = warp >> 2, wn = warp & 3;                             // warp's sub-tile: rows wm*64.., columns wn*32..
  const int tm = blockIdx.x / g.tiles_n, tn = blockIdx.x % g.tiles_n;  // N fastest: CTAs in flight share A rows
  const int64_t m0 = static_cast<int64_t>(tm) * BM, n0 = static_cast<int64_t>(tn) * BN;

  for (int z = blockIdx.z; z < g.nb * g.split; z += gridDim.z) {
    const int b = z / g.split, slice = z % g.split;
    const FIn A = g.A + b * g.sa;
    const FIn B = g.B + b * g.sb;
    const int64_t kbeg = slice * g.kchunk;
    const int64_t kend = kbeg + g.kchunk < g.K ? kbeg + g.kchunk : g.K;
    const int nk = kend > kbeg ? static_cast<int>((kend - kbeg + BK - 1) / BK) : 0;

    float acc[WM / 16][WN / 8][4];
#pragma unroll
    for (int i = 0; i < WM / 16; ++i)
#pragma unroll
      for (int j = 0; j < WN / 8; ++j) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.f;

    float4 ra[4], rb[4];
    // Slice k0.. of both operands into registers. Columns/rows past kend (not K) read as zero, so a
    // split slice never counts the next slice's terms.
    auto load = [&](int64_t k0) {
      if (TA)
        load_tile<BK, BM, VEC>(ra, A + k0 * g.lda + m0, g.lda, kend - k0, g.M - m0);  // A stored [K, M]
      else
        load_tile<BM, BK, VEC>(ra, A + m0 * g.lda + k0, g.lda, g.M - m0, kend - k0);  // A stored [M, K]
      if (TB)
        load_tile<BN, BK, VEC>(rb, B + n0 * g.ldb + k0, g.ldb, g.N - n0, kend - k0);  // B stored [N, K]
      else
        load_tile<BK, BN, VEC>(rb, B + k0 * g.ldb + n0, g.ldb, kend - k0, g.N - n0);  // B stored [K, N]
    };
    auto store = [&](int buf) {
      if (TA)
        store_tile<BK, BM>(sA[buf], ra);
      else
        store_tile<BM, BK>(sA[buf], ra);
      if (TB)
        store_tile<BN, BK>(sB[buf], rb);
      else
        store_tile<BK, BN>(sB[buf], rb);
    };

    __syncthreads();  // the previous z iteration's last reads of the buffers are done
    if (nk > 0) {
      load(kbeg);
      store(0);
    }
    __syncthreads();

    for (int kt = 0; kt < nk; ++kt) {
      const int cur = kt & 1;
      if (kt + 1 < nk) load(kbeg + static_cast<int64_t>(kt + 1) * BK);  // in flight during the mma below
      mma_slice<TA, TB>(acc, sA[cur], sB[cur], wm, wn, lane);
      if (kt + 1 < nk) store(cur ^ 1);  // that buffer was last read before the previous barrier
      __syncthreads();
    }
    write_back(g, acc, b, slice, m0, n0, wm, wn, lane);
  }
}

// One R x CC bf16 tile of a row-major matrix (row stride ld elements, rows 16-byte aligned) into a
// shared [R][CC+PAD] tile by cp.async: R * CC / 8 chunks of 16 bytes, two per thread; chunk idx is
// tile row idx / (CC/8), columns 8 (idx % (CC/8)) .. +7. Past rows_left / cols_left the chunk is
// zero-filled (a partial chunk reads only its existing columns).
template <int R, int CC>
__device__ __forceinline__ void copy_tile(__nv_bfloat16* s, const uint16_t* src, int64_t ld, int64_t rows_left,
                                          int64_t cols_left) {
  static_assert(R * CC == 2 * 8 * NT, "tile must be two 16-byte chunks per thread");
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int idx = threadIdx.x + i * NT, row = idx / (CC / 8), col = (idx % (CC / 8)) * 8;
    int64_t n = row < rows_left ? cols_left - col : 0;
    n = n < 0 ? 0 : (n > 8 ? 8 : n);
    // (with nothing to read, the tile origin stands in as an address that is valid and aligned)
    cp_async16(s + row * (CC + PAD) + col, n ? src + row * ld + col : src, static_cast<int>(2 * n));
  }
}

template <bool TA, bool TB, bool VEC>
__global__ void __launch_bounds__(NT) gemm_pipe_kernel(const GemmArgs g) {
  extern __shared__ __align__(16) unsigned char smem[];
  __nv_bfloat16* sA = reinterpret_cast<__nv_bfloat16*>(smem);  // [kStages][kStageElems]
  __nv_bfloat16* sB = sA + kStages * kStageElems;              // [kStages][kStageElems]

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wm = warp >> 2, wn = warp & 3;
  const int tm = blockIdx.x / g.tiles_n, tn = blockIdx.x % g.tiles_n;
  const int64_t m0 = static_cast<int64_t>(tm) * BM, n0 = static_cast<int64_t>(tn) * BN;
  const bool a_async = g.a_async, b_async = g.b_async;  // uniform over the launch

  for (int z = blockIdx.z; z < g.nb * g.split; z += gridDim.z) {
    const int b = z / g.split, slice = z % g.split;
    const FIn A = g.A + b * g.sa;
    const FIn B = g.B + b * g.sb;
    const uint16_t* Ah = static_cast<const uint16_t*>(A.p);  // (read only when that operand is async)
    const uint16_t* Bh = static_cast<const uint16_t*>(B.p);
    const int64_t kbeg = slice * g.kchunk;
    const int64_t kend = kbeg + g.kchunk < g.K ? kbeg + g.kchunk : g.K;
    const int nk = kend > kbeg ? static_cast<int>((kend - kbeg + BK - 1) / BK) : 0;

    float acc[WM / 16][WN / 8][4];
#pragma unroll
    for (int i = 0; i < WM / 16; ++i)
#pragma unroll
      for (int j = 0; j < WN / 8; ++j) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.f;

    float4 ra[4], rb[4];
    // Slice kt of the async operands: cp.async into stage kt % kStages (columns / rows past kend read
    // as zero). Of the register-staged ones: loads into ra / rb now, store(kt) rounds them into the
    // stage later.
    auto issue = [&](int kt) {
      const int64_t k0 = kbeg + static_cast<int64_t>(kt) * BK;
      __nv_bfloat16* a = sA + (kt % kStages) * kStageElems;
      __nv_bfloat16* bb = sB + (kt % kStages) * kStageElems;
      if (a_async) {
        if (TA)
          copy_tile<BK, BM>(a, Ah + k0 * g.lda + m0, g.lda, kend - k0, g.M - m0);
        else
          copy_tile<BM, BK>(a, Ah + m0 * g.lda + k0, g.lda, g.M - m0, kend - k0);
      } else if (TA) {
        load_tile<BK, BM, VEC>(ra, A + k0 * g.lda + m0, g.lda, kend - k0, g.M - m0);
      } else {
        load_tile<BM, BK, VEC>(ra, A + m0 * g.lda + k0, g.lda, g.M - m0, kend - k0);
      }
      if (b_async) {
        if (TB)
          copy_tile<BN, BK>(bb, Bh + n0 * g.ldb + k0, g.ldb, g.N - n0, kend - k0);
        else
          copy_tile<BK, BN>(bb, Bh + k0 * g.ldb + n0, g.ldb, kend - k0, g.N - n0);
      } else if (TB) {
        load_tile<BN, BK, VEC>(rb, B + n0 * g.ldb + k0, g.ldb, g.N - n0, kend - k0);
      } else {
        load_tile<BK, BN, VEC>(rb, B + k0 * g.ldb + n0, g.ldb, kend - k0, g.N - n0);
      }
    };
    auto store = [&](int kt) {
      __nv_bfloat16* a = sA + (kt % kStages) * kStageElems;
      __nv_bfloat16* bb = sB + (kt % kStages) * kStageElems;
      if (!a_async) {
        if (TA)
          store_tile<BK, BM>(a, ra);
        else
          store_tile<BM, BK>(a, ra);
      }
      if (!b_async) {
        if (TB)
          store_tile<BN, BK>(bb, rb);
        else
          store_tile<BK, BN>(bb, rb);
      }
    };

    __syncthreads();  // the previous z iteration's last reads of the stages are done
    // Prologue: slices 0 .. kStages-2 in flight. Every thread commits exactly one group per slot (empty
    // past nk, and for register-staged operands), so "slice kt landed" is always wait_group<kStages-2>.
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
      if (s < nk) {
        issue(s);
        store(s);
      }
      cp_async_commit();
    }
    for (int kt = 0; kt < nk; ++kt) {
      cp_async_wait<kStages - 2>();  // this thread's copies of slice kt have landed
      __syncthreads();               // everyone's have (and the stores of slice kt are visible); nobody
                                     // reads stage (kt-1) % kStages any more: it is refilled below
      const int next = kt + kStages - 1;
      if (next < nk) issue(next);  // copies / loads in flight during the multiply
      cp_async_commit();
      mma_slice<TA, TB>(acc, sA + (kt % kStages) * kStageElems, sB + (kt % kStages) * kStageElems, wm, wn, lane);
      if (next < nk) store(next);  // into stage (kt-1) % kStages, read again after two barriers
    }
    cp_async_wait<0>();  // (only empty groups remain; nothing may land after the stages are reused)
    write_back(g, acc, b, slice, m0, n0, wm, wn, lane);
  }
}

// C = epilogue(sum over slices of the partials), one element per thread (grid-stride), slices added in
// order 0, 1, ... so the result does not depend on scheduling.
__global__ void gemm_splitk_reduce(const GemmArgs g) {
  const int64_t per = g.M * g.N, total = per * g.nb;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int k = 0; k < g.split; ++k) s += g.ws[k * total + e];
    const int64_t b = e / per, rc = e % per, col = rc % g.N;
    epi1(g, s, col, g.C + b * g.sc, g.P ? g.P + b * g.sc : FOut{}, rc);
  }
}

template <bool TA, bool TB, bool VEC>
void launch_pipe(const GemmArgs& g, dim3 grid, cudaStream_t st) {
  // Above the 48 KiB default: opted into at every launch (per device, and cheap; as attention.cu).
  check(cudaFuncSetAttribute(gemm_pipe_kernel<TA, TB, VEC>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(kPipeSmem)),
        "gemm");
  gemm_pipe_kernel<TA, TB, VEC><<<grid, NT, kPipeSmem, st>>>(g);
}

template <bool TA, bool TB>
void launch_tn(const GemmArgs& g, bool pipe, bool vec, dim3 grid, cudaStream_t st) {
  if (pipe && vec) {
    launch_pipe<TA, TB, true>(g, grid, st);
  } else if (pipe) {
    launch_pipe<TA, TB, false>(g, grid, st);
  } else if (vec) {
    gemm_bf16_kernel<TA, TB, true><<<grid, NT, 0, st>>>(g);
  } else {
    gemm_bf16_kernel<TA, TB, false><<<grid, NT, 0, st>>>(g);
  }
}

bool aligned(const void* p, uintptr_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

}  // namespace

void gemm(const OpCall& call) {
  const GemmDims d = gemm_dims(call);  // shared with the CPU kernel (medic/op_args.h)
  const bool ta = d.ta, tb = d.tb;
  GemmArgs g{};
  g.acc = d.acc;
  g.act = d.act;
  g.alpha = d.alpha;
  g.A = fin(call.x(0));
  g.B = fin(call.x(1));
  g.bias = call.has_in(2) ? call.x(2).f32() : nullptr;
  g.C = fout(call.y(0));
  g.P = g.act == 1 ? fout(call.y(1)) : FOut{};
  g.M = d.M;
  g.N = d.N;
  g.K = d.K;
  const int64_t nb = d.nb;
  if (g.M == 0 || g.N == 0 || nb == 0) return;
  g.lda = d.lda;
  g.ldb = d.ldb;
  g.sa = g.M * g.K;
  g.sb = g.K * g.N;
  g.sc = g.M * g.N;
  g.nb = static_cast<int>(nb);
  const int64_t tiles_m = (g.M + BM - 1) / BM, tiles_n = (g.N + BN - 1) / BN;
  if (tiles_m * tiles_n > 0x7fffffff) throw Error("gemm: too many output tiles for one launch");
  g.tiles_n = static_cast<int>(tiles_n);
  const uintptr_t pair_align = g.C.bf ? 4 : 8;  // (preact has C's dtype)
  g.pair = g.N % 2 == 0 && aligned(g.C.p, pair_align) && (!g.P || aligned(g.P.p, pair_align));
  // 4-element loads need aligned rows: aligned bases (16 bytes for f32, 8 for bf16) and row strides
  // (and so batch strides) that are multiples of 4 elements.
  const bool vec = g.lda % 4 == 0 && g.ldb % 4 == 0 && vec_base(g.A) && vec_base(g.B);
  // The cp.async pipeline copies a bf16 operand with 16-byte aligned base and rows (stride a multiple
  // of 8 bf16, so every chunk of 8 is aligned); the pipeline runs when at least one operand qualifies,
  // the other one register-staged in the same ring. Two f32 operands take the double-buffered kernel.
  g.a_async = g.A.bf && g.lda % 8 == 0 && aligned(g.A.p, 16);
  g.b_async = g.B.bf && g.ldb % 8 == 0 && aligned(g.B.p, 16);
  const bool pipe = g.a_async || g.b_async;

  // Split-K when the output tiles fill the GPU's SMs badly (few tiles, or a last wave mostly empty) and
  // K is long: the slice count (<= 16, >= 512 of K each) that maximises the fraction of busy CTA slots
  // over the waves (one 256-thread CTA per SM), the smallest on ties. The partials cost 8 bytes per
  // element of C per slice, small next to a long-K product's operand traffic.
  CudaContext& cx = ctx_of(call);
  const int sms = cx.sm_count > 0 ? cx.sm_count : 132;
  const int64_t tiles = tiles_m * tiles_n * nb;
  int split = 1;
  if (tiles < 4 * sms && g.K >= 4096) {
    auto busy = [&](int64_t s) {
      const int64_t ctas = tiles * s, waves = (ctas + sms - 1) / sms;
      return static_cast<double>(ctas) / static_cast<double>(waves * sms);
    };
    const int64_t cap = (int64_t(256) << 20) / (4 * g.M * g.N * nb);  // <= 256 MiB of partials
    double best = busy(1);
    for (int64_t s = 2; s <= 16 && s <= g.K / 512 && s <= cap; ++s)
      if (busy(s) > best + 0.05) best = busy(s), split = static_cast<int>(s);
  }
  g.kchunk = (g.K + split - 1) / split;
  g.kchunk = (g.kchunk + BK - 1) / BK * BK;
  if (split > 1) split = static_cast<int>((g.K + g.kchunk - 1) / g.kchunk);  // no empty slice
  g.split = split;
  if (split > 1) g.ws = static_cast<float*>(workspace(cx, sizeof(float) * split * nb * g.M * g.N));

  const int64_t zs = nb * split;
  dim3 grid(static_cast<unsigned>(tiles_m * tiles_n), 1, static_cast<unsigned>(zs < 65535 ? zs : 65535));
  cudaStream_t st = stream_of(call);
  if (ta && tb)
    launch_tn<true, true>(g, pipe, vec, grid, st);
  else if (ta)
    launch_tn<true, false>(g, pipe, vec, grid, st);
  else if (tb)
    launch_tn<false, true>(g, pipe, vec, grid, st);
  else
    launch_tn<false, false>(g, pipe, vec, grid, st);
  check_launch("gemm");
  if (split > 1) {
    const int64_t total = nb * g.M * g.N;
    int64_t blocks = (total + 255) / 256;
    if (blocks > int64_t(sms) * 16) blocks = int64_t(sms) * 16;
    gemm_splitk_reduce<<<static_cast<unsigned>(blocks), 256, 0, st>>>(g);
    check_launch("gemm (split-K reduce)");
  }
}

}  // namespace medic::cuda
