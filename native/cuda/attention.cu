// Multi-head self-attention (fused, FlashAttention-2 style) and the row softmax, forward and backward,
// on the GPU. The CPU reference is native/cpu/attention.cpp; the contracts are ops.h's.
//
// Shape letters: B batch, T tokens, H heads, Hd head dim (HDP: Hd rounded up to a multiple of 16, the
// padded width held in shared memory); R rows, C columns for the plain softmax.
//   attention      qkv [B, T, 3*H*Hd] (per token [3][H][Hd], timm's packing) -> o [B, T, H*Hd],
//                  lse [B, H, T] = log sum_k exp(S[t, k]) with S = scale * q k^T
//   attention_bwd  do [B, T, H*Hd], qkv, o, lse -> dqkv [B, T, 3*H*Hd] (overwrite, or add when acc=1)
//   softmax        x [R, C] -> y = softmax(scale * x) along C;  softmax_bwd: y, dy -> dx (acc)
//
// Attention kernels: a CTA of 8 warps owns 128 rows (queries in the forward and the dQ pass, keys in the
// dK/dV pass), 16 per warp, and streams the other side in blocks of 64 through shared memory. Q, K, V,
// dO are f32 in memory and converted to bf16 when staged into shared memory ([rows][HDP+8] tiles, head
// dims past Hd and rows past T zero-filled, so T needs no padding in memory); products run on bf16
// mma.sync m16n8k16 with fp32 accumulation, the softmax in fp32 (base 2: exp2 of S * scale * log2 e).
// Score tiles live in registers; their C fragments are re-packed as the A operand of the next product
// (P V, dS K, P^T dO, dS^T Q), so no score tile ever touches shared or global memory.
// Work past T is skipped rather than padded: a warp whose 16 rows all lie past T only helps staging,
// and in the last streamed block the 16-wide groups past T are not multiplied. At T = 197, 13 of the
// 16 row slices and 13 of the 16 column groups do work: about a third less tensor-core work per head
// than full 128 x 64 tiles. T = 119 fills its tiles anyway.
//
// Backward (deterministic, no atomics), three launches:
//   1. D[b, h, t] = dO_t . O_t (workspace [B, H, T]), the softmax backward's row shift;
//   2. dQ pass, per (b, h, 128 queries): over key blocks recompute S and dP = dO V^T,
//      dS = P * (dP - D) * scale, dQ += dS K;
//   3. dK/dV pass, per (b, h, 128 keys): over query blocks recompute S^T = K Q^T and dP^T = V dO^T,
//      dV += P^T dO, dK += dS^T Q.
// This recomputes S and dP once more than FlashAttention-2's single pass with atomic dQ, in exchange
// for bit-reproducible results and no [T, Hd] fp32 scratch per head.
//
// Head dims: kernels are instantiated for HDP in {16, 32, 48, 64, 96, 128}; a head dim in between runs
// on the next instantiation with zero columns (e.g. Hd 8 -> 16, Hd 40 -> 48, Hd 80 -> 96), which adds
// nothing to the scores and whose output columns are not written. Hd > 128 is not supported (error).
#include <cmath>
#include <cstdint>

#include "common.cuh"
#include "medic/op_args.h"
#include "mma.cuh"

namespace medic::cuda {
namespace {

using namespace mma;
using bf16 = __nv_bfloat16;

constexpr int kWarps = 8;  // 128 rows per CTA: for T = 197 a head is 2 CTAs, so K/V are staged twice, not 4 times
constexpr int kThreads = 32 * kWarps;
constexpr int kRows = 16 * kWarps;  // rows owned by a CTA (queries, or keys in the dK/dV pass)
constexpr int kCols = 64;           // keys (or queries) per streamed block
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Two CTAs (16 warps) per SM for the forward and dQ kernels up to HDP 64: caps them at 128 registers,
// about what they need (-Xptxas -v, nvcc 13.0, sm_90: 96 to 128 registers, no spills); wider heads
// and the dK/dV kernel need more (dK/dV at HDP 32: 127 registers, 2 CTAs per SM; at 64: 208, 1 CTA).
template <int HDP>
constexpr int kMinCtas = HDP <= 64 ? 2 : 1;

template <int HDP>
__host__ __device__ constexpr int
lds() {  // shared row stride in bf16: +8 (16 bytes) keeps ldmatrix's 8 row reads on distinct banks
  return HDP + 8;
}

// qkv, o, dout and dqkv are f32 or bf16 (FIn / FOut views, common.cuh): staging converts f32 rows to
// bf16 and copies bf16 rows as they are, so the products see the same bf16 operands either way; the
// outputs are rounded once when a bf16 slot is written. lse and D stay f32.
struct AttnArgs {
  FIn qkv;         // [B, T, 3*H*Hd]
  FOut o;          // [B, T, H*Hd]  (forward)
  float* lse;      // [B, H, T]     (forward output, backward input)
  FIn dout;        // [B, T, H*Hd]  (backward)
  const float* D;  // [B, H, T]     (backward workspace: rowsum(dO * O))
  FOut dqkv;       // [B, T, 3*H*Hd] (backward)
  int B, T, H, Hd;
  float scale;
  bool vec;  // Hd % 4 == 0 and 16-byte aligned bases: float4 loads
  bool acc;
};

// One (batch b, head h) of the packed tensors: token t's q/k/v rows at q/k/v + t * ld, its dO (and O)
// row at dO + t * ldo; bh indexes the [B, H, T] tensors (lse, D); sl2 turns scores into base-2 logits.
struct HeadView {
  int64_t ld, ldo, bh;
  int64_t q_off, o_off;  // offsets of token 0's row of this head in qkv / dqkv and in o / dout
  FIn q, k, v, dO;
  float sl2;
  __device__ HeadView(const AttnArgs& a, int b, int h)
      : ld(3LL * a.H * a.Hd),
        ldo(static_cast<int64_t>(a.H) * a.Hd),
        bh(static_cast<int64_t>(b) * a.H + h),
        q_off(static_cast<int64_t>(b) * a.T * ld + static_cast<int64_t>(h) * a.Hd),
        o_off(static_cast<int64_t>(b) * a.T * ldo + static_cast<int64_t>(h) * a.Hd),
        q(a.qkv + q_off),
        k(q + ldo),
        v(q + 2 * ldo),
        dO(a.dout ? a.dout + o_off : FIn{}),
        sl2(a.scale * kLog2e) {}
};

// ROWS rows of one head slice (row r at src + r * ld, Hd values each) -> shared [ROWS][HDP+8] bf16.
// Rows >= nrows and columns >= Hd are zero. f32 rows are rounded to bf16 here; bf16 rows are copied.
template <int HDP, int ROWS>
__device__ __forceinline__ void stage_rows(bf16* s, FIn src, int64_t ld, int nrows, int Hd, bool vec) {
  constexpr int C4 = HDP / 4;  // four-value slots per row
  for (int idx = threadIdx.x; idx < ROWS * C4; idx += kThreads) {
    const int row = idx / C4, c = (idx % C4) * 4;
    if (src.bf) {
      uint2 u = make_uint2(0u, 0u);
      if (row < nrows) {
        const uint16_t* p = static_cast<const uint16_t*>(src.p) + row * ld + c;
        if (vec) {
          if (c < Hd) u = __ldg(reinterpret_cast<const uint2*>(p));  // Hd % 4 == 0: all four exist
        } else {
          const uint32_t h0 = c + 0 < Hd ? __ldg(p + 0) : 0u, h1 = c + 1 < Hd ? __ldg(p + 1) : 0u;
          const uint32_t h2 = c + 2 < Hd ? __ldg(p + 2) : 0u, h3 = c + 3 < Hd ? __ldg(p + 3) : 0u;
          u = make_uint2(h0 | (h1 << 16), h2 | (h3 << 16));
        }
      }
      *reinterpret_cast<uint2*>(s + row * lds<HDP>() + c) = u;
      continue;
    }
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (row < nrows) {
      const float* p = static_cast<const float*>(src.p) + row * ld + c;
      if (vec) {
        if (c < Hd) v = __ldg(reinterpret_cast<const float4*>(p));  // Hd % 4 == 0: all four exist
      } else {
        if (c + 0 < Hd) v.x = __ldg(p + 0);
        if (c + 1 < Hd) v.y = __ldg(p + 1);
        if (c + 2 < Hd) v.z = __ldg(p + 2);
        if (c + 3 < Hd) v.w = __ldg(p + 3);
      }
    }
    st_bf16x4(s + row * lds<HDP>() + c, v);
  }
}

// acc[16 x 64] = A[16 rows of sA from row0, HDP] . B[64 rows of sB, HDP]^T: the warp's score tile.
// Both operands are stored [row][HDP] (HDP contiguous), so both use plain ldmatrix. Only the first
// `ncols` rows of sB are real (the last block of a sequence, e.g. 5 of 64 keys at T = 197): 16-column
// groups past them are skipped and stay 0 (the callers mask those columns out).
template <int HDP>
__device__ __forceinline__ void scores(float (&acc)[8][4], const bf16* sA, int row0, const bf16* sB, int ncols,
                                       int lane) {
#pragma unroll
  for (int j = 0; j < 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < HDP / 16; ++kk) {
    uint32_t af[4];
    ldsm_x4(af, sA + (row0 + a_row(lane)) * lds<HDP>() + kk * 16 + a_col(lane));
#pragma unroll
    for (int n2 = 0; n2 < 4; ++n2) {
      if (n2 * 16 >= ncols) continue;  // uniform across the CTA
      uint32_t bfr[4];
      ldsm_x4(bfr, sB + (n2 * 16 + bn_row(lane)) * lds<HDP>() + kk * 16 + bn_col(lane));
      mma_bf16(acc[2 * n2], af, bfr[0], bfr[1]);
      mma_bf16(acc[2 * n2 + 1], af, bfr[2], bfr[3]);
    }
  }
}

// out[16 x HDP] += P[16 x 64] . V[64 rows of sV, HDP]: P from the score registers (C -> A fragment
// re-pack), V stored [64][HDP] (n contiguous) so ldmatrix.trans. Only the first `nk` rows of sV are
// real; P is 0 past them, so the 16-row steps past nk are skipped.
template <int HDP>
__device__ __forceinline__ void mul_pv(float (&out)[HDP / 8][4], const float (&p)[8][4], const bf16* sV, int nk,
                                       int lane) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    if (kk * 16 >= nk) continue;  // uniform across the CTA
    uint32_t pa[4];
    pa[0] = pack_bf16(p[2 * kk][0], p[2 * kk][1]);
    pa[1] = pack_bf16(p[2 * kk][2], p[2 * kk][3]);
    pa[2] = pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]);
    pa[3] = pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3]);
#pragma unroll
    for (int n2 = 0; n2 < HDP / 16; ++n2) {
      uint32_t vf[4];
      ldsm_x4_t(vf, sV + (kk * 16 + bk_row(lane)) * lds<HDP>() + n2 * 16 + bk_col(lane));
      mma_bf16(out[2 * n2], pa, vf[0], vf[1]);
      mma_bf16(out[2 * n2 + 1], pa, vf[2], vf[3]);
    }
  }
}

// Write the warp's [16 x HDP] fragment tile (times mul[h] for row half h) to global rows
// dst + r * ld (r = row0 + g + 8h, only r < nrows), columns < Hd; acc adds to what is there.
template <int HDP>
__device__ __forceinline__ void write_rows(FOut dst, int64_t ld, int row0, int nrows, int Hd,
                                           const float (&x)[HDP / 8][4], const float (&mul)[2], bool acc, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = row0 + g + 8 * h;
    if (r >= nrows) continue;
    const FOut row = dst + r * ld;
#pragma unroll
    for (int n = 0; n < HDP / 8; ++n) {
      const int c = n * 8 + 2 * t;
      if (c < Hd) row.set(c, x[n][2 * h] * mul[h] + (acc ? row[c] : 0.f));
      if (c + 1 < Hd) row.set(c + 1, x[n][2 * h + 1] * mul[h] + (acc ? row[c + 1] : 0.f));
    }
  }
}

// ---- Forward: one CTA per (query block, h, b). ------------------------------------------------------
template <int HDP>
__global__ void __launch_bounds__(kThreads, kMinCtas<HDP>) attn_fwd_kernel(const AttnArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);
  bf16* sK = sQ + kRows * lds<HDP>();
  bf16* sV = sK + kCols * lds<HDP>();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int t0 = blockIdx.x * kRows, T = a.T;
  const bool active = t0 + warp * 16 < T;  // warp-uniform
  const HeadView hv(a, blockIdx.z, blockIdx.y);
  const int64_t ld = hv.ld;
  const float sl2 = hv.sl2;

  stage_rows<HDP, kRows>(sQ, hv.q + t0 * ld, ld, min(kRows, T - t0), a.Hd, a.vec);

  float out[HDP / 8][4];
#pragma unroll
  for (int n = 0; n < HDP / 8; ++n) out[n][0] = out[n][1] = out[n][2] = out[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY};  // running max of rows g, g+8 (base-2 scaled scores)
  float l[2] = {0.f, 0.f};              // running sum, this lane's columns only (quad-summed at the end)

  for (int k0 = 0; k0 < T; k0 += kCols) {
    __syncthreads();  // previous block's reads of sK / sV are done
    const int nk = min(kCols, T - k0);
    stage_rows<HDP, kCols>(sK, hv.k + k0 * ld, ld, nk, a.Hd, a.vec);
    stage_rows<HDP, kCols>(sV, hv.v + k0 * ld, ld, nk, a.Hd, a.vec);
    __syncthreads();
    if (!active) continue;  // this warp's 16 rows are all past T: it only helps staging

    float s[8][4];
    scores<HDP>(s, sQ, warp * 16, sK, nk, lane);
    // s[j][e] is row g + 8 (e / 2), key k0 + 8j + 2tq + (e % 2); keys past T get -inf.
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = j * 8 + 2 * tq + (e & 1);
        const float x = key < nk ? s[j][e] * sl2 : -INFINITY;
        s[j][e] = x;
        mx[e >> 1] = fmaxf(mx[e >> 1], x);
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) {  // the quad (4 lanes) shares a row
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float mnew = fmaxf(m[r], mx[r]);   // finite: every block has at least one key < T
      const float alpha = exp2f(m[r] - mnew);  // 0 on the first block (m = -inf)
      m[r] = mnew;
      l[r] *= alpha;
#pragma unroll
      for (int n = 0; n < HDP / 8; ++n) {
        out[n][2 * r] *= alpha;
        out[n][2 * r + 1] *= alpha;
      }
    }
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(s[j][e] - m[e >> 1]);
        s[j][e] = p;
        l[e >> 1] += p;
      }
    mul_pv<HDP>(out, s, sV, nk, lane);
  }

  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    inv[r] = 1.f / l[r];
    const int t = t0 + warp * 16 + g + 8 * r;
    if (tq == 0 && t < T) a.lse[hv.bh * T + t] = (m[r] + log2f(l[r])) * kLn2;
  }
  write_rows<HDP>(a.o + hv.o_off, hv.ldo, t0 + warp * 16, T, a.Hd, out, inv, false, lane);
}

// ---- Backward 1: D[b, h, t] = dO_t . O_t, one warp per (b, t, h) (consecutive warps read consecutive memory).
__global__ void attn_bwd_dot_kernel(FIn dout, FIn o, float* D, int B, int T, int H, int Hd) {
  const int64_t w = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (w >= static_cast<int64_t>(B) * T * H) return;
  const int h = static_cast<int>(w % H);
  const int64_t bt = w / H;    // b * T + t
  const int64_t off = w * Hd;  // ((b*T + t)*H + h) * Hd: the rows of do and o are [H][Hd]
  float s = 0.f;
  for (int c = lane; c < Hd; c += 32) s += dout[off + c] * o[off + c];
#pragma unroll
  for (int x = 16; x > 0; x >>= 1) s += __shfl_xor_sync(0xffffffffu, s, x);
  if (lane == 0) {
    const int64_t b = bt / T, t = bt % T;
    D[(b * H + h) * T + t] = s;
  }
}

// ---- Backward 2: dQ, one CTA per (query block, h, b). -------------------------------------------
template <int HDP>
__global__ void __launch_bounds__(kThreads, kMinCtas<HDP>) attn_bwd_dq_kernel(const AttnArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);
  bf16* sdO = sQ + kRows * lds<HDP>();
  bf16* sK = sdO + kRows * lds<HDP>();
  bf16* sV = sK + kCols * lds<HDP>();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int t0 = blockIdx.x * kRows, T = a.T;
  const bool active = t0 + warp * 16 < T;  // warp-uniform
  const HeadView hv(a, blockIdx.z, blockIdx.y);
  const int64_t ld = hv.ld, ldo = hv.ldo, bh = hv.bh;
  const float sl2 = hv.sl2;

  stage_rows<HDP, kRows>(sQ, hv.q + t0 * ld, ld, min(kRows, T - t0), a.Hd, a.vec);
  stage_rows<HDP, kRows>(sdO, hv.dO + t0 * ldo, ldo, min(kRows, T - t0), a.Hd, a.vec);
  float L2[2], Dr[2];  // lse (base 2) and D of rows g, g+8; padding rows get finite values, never written
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int t = t0 + warp * 16 + g + 8 * r;
    L2[r] = t < T ? a.lse[bh * T + t] * kLog2e : 0.f;
    Dr[r] = t < T ? a.D[bh * T + t] : 0.f;
  }

  float dq[HDP / 8][4];
#pragma unroll
  for (int n = 0; n < HDP / 8; ++n) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.f;

  for (int k0 = 0; k0 < T; k0 += kCols) {
    __syncthreads();
    const int nk = min(kCols, T - k0);
    stage_rows<HDP, kCols>(sK, hv.k + k0 * ld, ld, nk, a.Hd, a.vec);
    stage_rows<HDP, kCols>(sV, hv.v + k0 * ld, ld, nk, a.Hd, a.vec);
    __syncthreads();
    if (!active) continue;

    float s[8][4], dp[8][4];
    scores<HDP>(s, sQ, warp * 16, sK, nk, lane);    // S = Q K^T
    scores<HDP>(dp, sdO, warp * 16, sV, nk, lane);  // dP = dO V^T
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = j * 8 + 2 * tq + (e & 1);
        const float p = key < nk ? exp2f(s[j][e] * sl2 - L2[e >> 1]) : 0.f;
        s[j][e] = p * (dp[j][e] - Dr[e >> 1]) * a.scale;  // dS (scale of S folded in)
      }
    mul_pv<HDP>(dq, s, sK, nk, lane);  // dQ += dS K  (K stored [key][HDP], like V in the forward)
  }
  const float one[2] = {1.f, 1.f};
  write_rows<HDP>(a.dqkv + hv.q_off, ld, t0 + warp * 16, T, a.Hd, dq, one, a.acc, lane);
}

// ---- Backward 3: dK and dV, one CTA per (key block, h, b). ---------------------------------------
template <int HDP>
__global__ void __launch_bounds__(kThreads) attn_bwd_dkv_kernel(const AttnArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sK = reinterpret_cast<bf16*>(smem);
  bf16* sV = sK + kRows * lds<HDP>();
  bf16* sQ = sV + kRows * lds<HDP>();
  bf16* sdO = sQ + kCols * lds<HDP>();
  float* sL = reinterpret_cast<float*>(sdO + kCols * lds<HDP>());  // [kCols] lse (base 2), +inf past T
  float* sD = sL + kCols;                                          // [kCols] D, 0 past T
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, tq = lane & 3;
  const int k0 = blockIdx.x * kRows, T = a.T;
  const bool active = k0 + warp * 16 < T;  // warp-uniform
  const HeadView hv(a, blockIdx.z, blockIdx.y);
  const int64_t ld = hv.ld, ldo = hv.ldo, bh = hv.bh;
  const float sl2 = hv.sl2;

  stage_rows<HDP, kRows>(sK, hv.k + k0 * ld, ld, min(kRows, T - k0), a.Hd, a.vec);
  stage_rows<HDP, kRows>(sV, hv.v + k0 * ld, ld, min(kRows, T - k0), a.Hd, a.vec);

  float dk[HDP / 8][4], dv[HDP / 8][4];
#pragma unroll
  for (int n = 0; n < HDP / 8; ++n) {
    dk[n][0] = dk[n][1] = dk[n][2] = dk[n][3] = 0.f;
    dv[n][0] = dv[n][1] = dv[n][2] = dv[n][3] = 0.f;
  }

  for (int t0 = 0; t0 < T; t0 += kCols) {
    __syncthreads();
    const int nq = min(kCols, T - t0);
    stage_rows<HDP, kCols>(sQ, hv.q + t0 * ld, ld, nq, a.Hd, a.vec);
    stage_rows<HDP, kCols>(sdO, hv.dO + t0 * ldo, ldo, nq, a.Hd, a.vec);
    for (int i = threadIdx.x; i < kCols; i += kThreads) {
      sL[i] = i < nq ? a.lse[bh * T + t0 + i] * kLog2e : INFINITY;  // exp2(x - inf) = 0: padding queries drop out
      sD[i] = i < nq ? a.D[bh * T + t0 + i] : 0.f;
    }
    __syncthreads();
    if (!active) continue;

    float st[8][4], dpt[8][4];
    scores<HDP>(st, sK, warp * 16, sQ, nq, lane);    // S^T = K Q^T  (16 keys x 64 queries)
    scores<HDP>(dpt, sV, warp * 16, sdO, nq, lane);  // dP^T = V dO^T
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int qi = j * 8 + 2 * tq + (e & 1);  // query of this column, local to the block
        const float p = exp2f(st[j][e] * sl2 - sL[qi]);
        st[j][e] = p;
        dpt[j][e] = p * (dpt[j][e] - sD[qi]) * a.scale;  // dS^T
      }
    mul_pv<HDP>(dv, st, sdO, nq, lane);  // dV += P^T dO
    mul_pv<HDP>(dk, dpt, sQ, nq, lane);  // dK += dS^T Q
  }
  const float one[2] = {1.f, 1.f};
  const FOut dk_out = a.dqkv + hv.q_off + ldo;
  write_rows<HDP>(dk_out, ld, k0 + warp * 16, T, a.Hd, dk, one, a.acc, lane);
  write_rows<HDP>(dk_out + ldo, ld, k0 + warp * 16, T, a.Hd, dv, one, a.acc, lane);
}

// Dynamic shared memory beyond 48 KiB must be opted into once per kernel.
template <typename K>
void launch(K kernel, dim3 grid, size_t smem, cudaStream_t st, const AttnArgs& a, const char* what) {
  if (smem > 48 * 1024)
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)), what);
  kernel<<<grid, kThreads, smem, st>>>(a);
  check_launch(what);
}

template <int HDP>
size_t rows_bytes(int rows) {
  return sizeof(bf16) * rows * lds<HDP>();
}

template <int HDP>
void fwd_hd(const AttnArgs& a, dim3 grid, cudaStream_t st) {
  launch(attn_fwd_kernel<HDP>, grid, rows_bytes<HDP>(kRows + 2 * kCols), st, a, "attention");
}
template <int HDP>
void bwd_hd(const AttnArgs& a, dim3 grid, cudaStream_t st) {
  launch(attn_bwd_dq_kernel<HDP>, grid, rows_bytes<HDP>(2 * kRows + 2 * kCols), st, a, "attention_bwd (dq)");
  launch(attn_bwd_dkv_kernel<HDP>, grid, rows_bytes<HDP>(2 * kRows + 2 * kCols) + 2 * kCols * sizeof(float), st, a,
         "attention_bwd (dk, dv)");
}

// Smallest instantiated padded head dim that holds Hd (0: unsupported).
int padded_hd(int Hd) {
  for (int p : {16, 32, 48, 64, 96, 128})
    if (Hd <= p) return p;
  return 0;
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

AttnArgs attn_args(const OpCall& c, const Tensor& qkv) {
  AttnArgs a{};
  const AttentionDims d = attention_dims(c);  // medic/op_args.h, as the checker and the CPU kernel
  a.B = static_cast<int>(d.B);
  a.T = static_cast<int>(d.T);
  a.H = static_cast<int>(d.H);
  a.Hd = static_cast<int>(d.Hd);
  a.scale = d.scale;
  a.acc = d.acc;
  a.qkv = fin(qkv);
  if (qkv.shape[0] > 65535 || qkv.shape[1] > 0x7fffffffLL - 64)
    throw Error("attention: batch above 65535 or T above 2^31 is not supported by the CUDA kernel");
  if (a.Hd > 128) throw Error("attention: the CUDA kernel supports head dims up to 128, got " + std::to_string(a.Hd));
  return a;
}

// ---- softmax: one warp per row ---------------------------------------------------------------------
// Safe in place (y aliasing x, dx aliasing dy): each element is read and then written by the same lane,
// and the passes before the last only read.
constexpr int kRowsPerBlock = 8;  // warps per block

// (m, s) <- the running (max, sum of exp(v - max)) of the union of two sets of values.
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
  const float mn = fmaxf(m, m2);
  if (mn == -INFINITY) return;  // both empty (or all -inf): nothing to add
  s = s * __expf(m - mn) + s2 * __expf(m2 - mn);
  m = mn;
}

__global__ void softmax_kernel(FIn x, FOut y, int64_t R, int64_t C, float scale, bool vec) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= R) return;
  const FIn xr = x + r * C;
  const FOut yr = y + r * C;
  // Pass 1: online max and sum per lane, then merged across the warp.
  float m = -INFINITY, s = 0.f;
  auto add = [&](float xv) {
    const float v = scale * xv;
    if (v > m) {
      s = s * __expf(m - v) + 1.f;
      m = v;
    } else if (v != -INFINITY) {
      s += __expf(v - m);  // NaN propagates through v - m
    }
  };
  if (vec) {
    for (int64_t j = 4 * lane; j < C; j += 128) {
      const float4 q = xr.ld4(j);
      add(q.x), add(q.y), add(q.z), add(q.w);
    }
  } else {
    for (int64_t j = lane; j < C; j += 32) add(xr[j]);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  const float inv = 1.f / s;
  // Pass 2: y = exp(scale x - max) / sum (same element ownership as pass 1).
  if (vec) {
    for (int64_t j = 4 * lane; j < C; j += 128) {
      float4 q = xr.ld4(j);
      q.x = __expf(scale * q.x - m) * inv;
      q.y = __expf(scale * q.y - m) * inv;
      q.z = __expf(scale * q.z - m) * inv;
      q.w = __expf(scale * q.w - m) * inv;
      yr.st4(j, q);
    }
  } else {
    for (int64_t j = lane; j < C; j += 32) yr.set(j, __expf(scale * xr[j] - m) * inv);
  }
}

__global__ void softmax_bwd_kernel(FIn y, FIn dy, FOut dx, int64_t R, int64_t C, float scale, bool acc, bool vec) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= R) return;
  const FIn yr = y + r * C, dyr = dy + r * C;
  const FOut dxr = dx + r * C;
  float dot = 0.f;
  if (vec) {
    for (int64_t j = 4 * lane; j < C; j += 128) {
      const float4 a = yr.ld4(j), d = dyr.ld4(j);
      dot += a.x * d.x + a.y * d.y + a.z * d.z + a.w * d.w;
    }
  } else {
    for (int64_t j = lane; j < C; j += 32) dot += yr[j] * dyr[j];
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
  if (vec) {
    for (int64_t j = 4 * lane; j < C; j += 128) {
      const float4 a = yr.ld4(j), d = dyr.ld4(j);
      float4 g = make_float4(scale * (a.x * (d.x - dot)), scale * (a.y * (d.y - dot)), scale * (a.z * (d.z - dot)),
                             scale * (a.w * (d.w - dot)));
      if (acc) {
        const float4 o = dxr.ld4(j);
        g.x += o.x, g.y += o.y, g.z += o.z, g.w += o.w;
      }
      dxr.st4(j, g);
    }
  } else {
    for (int64_t j = lane; j < C; j += 32) {
      const float g = scale * (yr[j] * (dyr[j] - dot));
      dxr.set(j, acc ? dxr[j] + g : g);
    }
  }
}

unsigned row_blocks(int64_t R) { return static_cast<unsigned>((R + kRowsPerBlock - 1) / kRowsPerBlock); }

// ---- attention_probs: one warp per (b, kept query row) ---------------------------------------------
// Lane l owns keys l, l + 32, ...; per head, pass 1 merges the lanes' running (max, sum of exp), pass 2
// recomputes each score and adds exp(s - max) / (sum H) into the output row (heads in order: the same
// bits every run). fp32 dot products on CUDA cores: the op runs once per step on one block.
__global__ void attention_probs_kernel(const float* __restrict__ qkv, float* __restrict__ out, int64_t B, int64_t T,
                                       int64_t H, int64_t Hd, int64_t prefix, float scale) {
  const int64_t N = T - prefix;
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= B * N) return;
  const int64_t b = r / N, i = prefix + r % N, ld = 3 * H * Hd;
  const float* base = qkv + b * T * ld;
  float* orow = out + r * N;
  const float inv_h = 1.f / static_cast<float>(H);
  auto score = [&](const float* q, int64_t j, int64_t h) {
    const float* k = base + j * ld + H * Hd + h * Hd;
    float d = 0.f;
    for (int64_t e = 0; e < Hd; ++e) d += q[e] * k[e];
    return scale * d;
  };
  for (int64_t j = lane; j < N; j += 32) orow[j] = 0.f;
  for (int64_t h = 0; h < H; ++h) {
    const float* q = base + i * ld + h * Hd;
    float m = -INFINITY, s = 0.f;
    for (int64_t j = lane; j < T; j += 32) {
      const float v = score(q, j, h);
      if (v > m) {
        s = s * __expf(m - v) + 1.f;
        m = v;
      } else {
        s += __expf(v - m);
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
      merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
    const float w = inv_h / s;
    for (int64_t j = prefix + lane; j < T; j += 32) orow[j - prefix] += __expf(score(q, j, h) - m) * w;
  }
}

}  // namespace

void attention(const OpCall& c) {
  AttnArgs a = attn_args(c, c.x(0));
  a.o = fout(c.y(0));
  a.lse = c.y(1).f32();
  if (a.B == 0 || a.T == 0 || a.Hd == 0) return;
  a.vec = a.Hd % 4 == 0 && aligned16(a.qkv.p) && aligned16(a.o.p);
  const dim3 grid((a.T + kRows - 1) / kRows, a.H, a.B);
  cudaStream_t st = stream_of(c);
  switch (padded_hd(a.Hd)) {
    case 16: fwd_hd<16>(a, grid, st); break;
    case 32: fwd_hd<32>(a, grid, st); break;
    case 48: fwd_hd<48>(a, grid, st); break;
    case 64: fwd_hd<64>(a, grid, st); break;
    case 96: fwd_hd<96>(a, grid, st); break;
    case 128: fwd_hd<128>(a, grid, st); break;
  }
}

void attention_bwd(const OpCall& c) {
  AttnArgs a = attn_args(c, c.x(1));
  a.dout = fin(c.x(0));
  const FIn o = fin(c.x(2));
  a.lse = const_cast<float*>(c.x(3).f32());  // read only in the backward
  a.dqkv = fout(c.y(0));
  if (a.B == 0 || a.T == 0 || a.Hd == 0) return;
  a.vec = a.Hd % 4 == 0 && aligned16(a.qkv.p) && aligned16(a.dout.p) && aligned16(a.dqkv.p);
  cudaStream_t st = stream_of(c);
  const int64_t rows = static_cast<int64_t>(a.B) * a.H * a.T;
  float* D = static_cast<float*>(workspace(ctx_of(c), sizeof(float) * rows));
  a.D = D;
  attn_bwd_dot_kernel<<<static_cast<unsigned>((rows * 32 + 255) / 256), 256, 0, st>>>(a.dout, o, D, a.B, a.T, a.H,
                                                                                      a.Hd);
  check_launch("attention_bwd (D)");
  const dim3 grid((a.T + kRows - 1) / kRows, a.H, a.B);
  switch (padded_hd(a.Hd)) {
    case 16: bwd_hd<16>(a, grid, st); break;
    case 32: bwd_hd<32>(a, grid, st); break;
    case 48: bwd_hd<48>(a, grid, st); break;
    case 64: bwd_hd<64>(a, grid, st); break;
    case 96: bwd_hd<96>(a, grid, st); break;
    case 128: bwd_hd<128>(a, grid, st); break;
  }
}

void softmax(const OpCall& c) {
  const SoftmaxArgs sa = softmax_args(c);
  const int64_t C = sa.C, R = sa.R;
  if (R == 0 || C == 0) return;
  const FIn xp = fin(c.x(0));
  const FOut yp = fout(c.y(0));
  const bool vec = C % 4 == 0 && vec_base(xp) && vec_base(yp);
  softmax_kernel<<<row_blocks(R), 32 * kRowsPerBlock, 0, stream_of(c)>>>(xp, yp, R, C, sa.scale, vec);
  check_launch("softmax");
}

void softmax_bwd(const OpCall& c) {
  const SoftmaxArgs sa = softmax_args(c);
  const int64_t C = sa.C, R = sa.R;
  if (R == 0 || C == 0) return;
  const FIn yp = fin(c.x(0)), dyp = fin(c.x(1));
  const FOut dxp = fout(c.y(0));
  const bool vec = C % 4 == 0 && vec_base(yp) && vec_base(dyp) && vec_base(dxp);
  softmax_bwd_kernel<<<row_blocks(R), 32 * kRowsPerBlock, 0, stream_of(c)>>>(yp, dyp, dxp, R, C, sa.scale, sa.acc, vec);
  check_launch("softmax_bwd");
}

void attention_probs(const OpCall& c) {
  const AttnProbsArgs a = attention_probs_args(c);
  if (a.B == 0 || a.N == 0) return;
  attention_probs_kernel<<<row_blocks(a.B * a.N), 32 * kRowsPerBlock, 0, stream_of(c)>>>(
      c.x(0).f32(), c.y(0).f32(), a.B, a.T, a.H, a.Hd, a.prefix, a.scale);
  check_launch("attention_probs");
}

}  // namespace medic::cuda
