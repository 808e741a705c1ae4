// Tensor-core building blocks shared by gemm.cu and attention.cu: bf16 mma.sync m16n8k16 (sm_80+),
// ldmatrix fragment loads from shared memory, cp.async global -> shared copies (sm_80+), and the
// f32 -> bf16 conversion on the way in.
//
// Fragment layouts of mma.m16n8k16 (PTX ISA, "matrix fragments for mma.m16n8k16"), with
// g = lane / 4 and t = lane % 4; each .b32 register holds two bf16, the lower index in the low half:
//   A 16x16 (row-major, [m][k]): a0 = A[g][2t..2t+1],   a1 = A[g+8][2t..],  a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]
//   B 16x8  ("col", [k][n]):     b0 = B[2t..2t+1][g],   b1 = B[2t+8..2t+9][g]
//   C 16x8  (f32):               c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1]
// So the C fragments of two adjacent n8 tiles are, once packed to bf16 pairs, exactly the A fragment
// of one k16 step (FlashAttention's register reuse of P): a0 = c[j][0,1], a1 = c[j][2,3],
// a2 = c[j+1][0,1], a3 = c[j+1][2,3].
//
// ldmatrix.x4: lanes 8i..8i+7 give the row addresses (16 bytes each) of 8x8 matrix i; register i of
// lane l receives matrix i's row l/4, columns 2(l%4)..+1 (with .trans: column l/4, rows 2(l%4)..+1).
// The four address helpers below say which smem row/column each lane points at for each use.
#pragma once

#include <cuda_bf16.h>
#include <cstdint>

namespace medic::cuda::mma {

#if defined(MEDIC_CUDA_EMU)
// On the CPU emulator (native/tests/emu) the three warp-wide PTX instructions are rendezvous
// implemented from the PTX ISA's tables, not from the comments above; cp.async is a per-thread queue
// that lands at the wait_group retiring it.
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) { medic_emu::ldmatrix_x4(r, p, false); }
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const void* p) { medic_emu::ldmatrix_x4(r, p, true); }
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  medic_emu::mma_m16n8k16_bf16(d, a, b0, b1);
}
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
  medic_emu::cp_async(smem, gmem, 16, src_bytes);
}
__device__ __forceinline__ void cp_async_commit() { medic_emu::cp_async_commit(); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  medic_emu::cp_async_wait(N);
}
#else
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

// d += a b (16x8x16, bf16 in, f32 accumulate)
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 16 bytes global -> shared without a register round trip (.cg: cached in L2 only), asynchronous;
// the bytes past src_bytes are zero-filled (src_bytes 0: nothing is read, all 16 bytes are zero).
// Both addresses 16-byte aligned.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem), "r"(src_bytes));
}
// Closes the group of the cp.async issued since the previous commit.
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most N of this thread's committed groups are still in flight (its own copies only:
// a __syncthreads after it makes every thread's landed copies visible to the block).
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
#endif

// Two floats -> one register of two bf16 (round to nearest even), x in the low half.
__device__ __forceinline__ uint32_t pack_bf16(float x, float y) {
  __nv_bfloat162 v = __floats2bfloat162_rn(x, y);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Four floats -> four bf16 stored at p (8-byte aligned shared memory).
__device__ __forceinline__ void st_bf16x4(__nv_bfloat16* p, float4 v) {
  uint2 u;
  u.x = pack_bf16(v.x, v.y);
  u.y = pack_bf16(v.z, v.w);
  *reinterpret_cast<uint2*>(p) = u;
}

// ---- Per-lane ldmatrix addresses (row, column) inside a 16x16 bf16 block of a shared tile. ------
// A operand stored [m][k] (k contiguous): plain ldmatrix gives a0..a3.
//   matrices: 0 = (m 0-7, k 0-7), 1 = (m 8-15, k 0-7), 2 = (m 0-7, k 8-15), 3 = (m 8-15, k 8-15)
__device__ __forceinline__ int a_row(int lane) { return lane & 15; }
__device__ __forceinline__ int a_col(int lane) { return (lane >> 4) << 3; }
// A operand stored [k][m] (m contiguous): ldmatrix.trans gives a0..a3.
//   matrices: 0 = (k 0-7, m 0-7), 1 = (k 0-7, m 8-15), 2 = (k 8-15, m 0-7), 3 = (k 8-15, m 8-15)
__device__ __forceinline__ int at_row(int lane) { return (lane & 7) + ((lane >> 4) << 3); }  // k
__device__ __forceinline__ int at_col(int lane) { return ((lane >> 3) & 1) << 3; }           // m
// B operand stored [n][k] (k contiguous, i.e. B^T row-major): plain ldmatrix gives (b0, b1) of the
// n8 tile n 0-7 in r0, r1 and of the n8 tile n 8-15 in r2, r3.
//   matrices: 0 = (n 0-7, k 0-7), 1 = (n 0-7, k 8-15), 2 = (n 8-15, k 0-7), 3 = (n 8-15, k 8-15)
__device__ __forceinline__ int bn_row(int lane) { return (lane & 7) + ((lane >> 4) << 3); }  // n
__device__ __forceinline__ int bn_col(int lane) { return ((lane >> 3) & 1) << 3; }           // k
// B operand stored [k][n] (n contiguous): ldmatrix.trans, same register order as bn_*.
//   matrices: 0 = (k 0-7, n 0-7), 1 = (k 8-15, n 0-7), 2 = (k 0-7, n 8-15), 3 = (k 8-15, n 8-15)
__device__ __forceinline__ int bk_row(int lane) { return (lane & 7) + (((lane >> 3) & 1) << 3); }  // k
__device__ __forceinline__ int bk_col(int lane) { return (lane >> 4) << 3; }                       // n

}  // namespace medic::cuda::mma
