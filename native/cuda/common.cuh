// Shared by every CUDA source: error checks and the per-engine CUDA context.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "medic/ops.h"
#include "medic/tensor.h"

namespace medic::cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}

// Bad data that a kernel finds (an index or a label out of range) cannot throw on the device. The
// kernel skips that row and records the first such fault here; the host reads the record at the next
// synchronisation (Engine::synchronize, every copy to the host) and throws a medic::Error naming the
// op and the value, as the CPU kernels do before writing anything. Cost: one 32-byte asynchronous
// copy into pinned memory, queued before the synchronisation that happens anyway.
enum FaultCode : int32_t { kFaultNone = 0, kFaultGatherIndex = 1, kFaultScatterIndex = 2, kFaultLabel = 3 };
struct DeviceFault {
  int32_t code;  // FaultCode of the first fault since the last check
  int32_t pad;
  int64_t value;  // the bad index or label
  int64_t bound;  // valid values are [0, bound)
  int64_t where;  // row (gather/scatter: b * K + k; cross_entropy: r)
};

#if defined(__CUDACC__) || defined(MEDIC_CUDA_EMU)
__device__ inline void report_fault(DeviceFault* f, int32_t code, int64_t value, int64_t bound, int64_t where) {
  if (atomicCAS(&f->code, 0, code) == 0) {
    f->value = value;
    f->bound = bound;
    f->where = where;
  }
}
#endif

// What Context::cuda points at for a CUDA engine. Kernels launch on `stream` only, never synchronise
// and never allocate, so a program step can be captured as a CUDA graph.
struct CudaContext {
  int device = 0;
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;  // scratch shared by kernels that need it (see workspace())
  size_t workspace_bytes = 0;
  int sm_count = 0;
  DeviceFault* fault = nullptr;       // device memory, zero when no kernel found bad data
  DeviceFault* fault_host = nullptr;  // pinned host copy, filled by queue_fault_copy
};

// Fault reporting around a synchronisation: queue_fault_copy before it, throw_fault after it (throws
// the recorded fault, if any, after clearing it on the device).
void queue_fault_copy(CudaContext& c);
void throw_fault(CudaContext& c);

// Scratch memory of at least `bytes` for the op being run (contents undefined, valid until the next
// op). It grows on demand; a program's first, uncaptured run sizes it before any graph capture.
void* workspace(CudaContext& c, size_t bytes);

// Launch-error check after <<<>>> (asynchronous errors surface at the next synchronisation).
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

// ---------------------------------------------------------------------------------------------
// Float tensors as kernels see them (ops.h, Precision): f32 or bf16 in memory, fp32 in registers.
// A bf16 element is widened exactly when read and rounded once (nearest even) when stored, so a
// kernel computes what the CPU's fp32 kernel computes on the widened values (cpu::run_widened).
//
// The dtype is a run-time flag of the view rather than a template parameter: it is the same for every
// thread of a launch (a uniform branch, hidden behind the memory traffic of the kernels that use
// these views), and one kernel per op then serves every mix of f32 and bf16 slots that bf16_slot()
// allows, where templates would instantiate each kernel 2^(float slots) times. The tensor-core gemm
// picks its operand staging per dtype instead (gemm.cu).
struct FIn {
  const void* p = nullptr;
  bool bf = false;  // bf16 storage (else f32)
  __host__ __device__ FIn operator+(int64_t o) const {
    return {bf ? static_cast<const void*>(static_cast<const uint16_t*>(p) + o)
               : static_cast<const void*>(static_cast<const float*>(p) + o),
            bf};
  }
  __host__ __device__ explicit operator bool() const { return p != nullptr; }
#if defined(__CUDACC__) || defined(MEDIC_CUDA_EMU)
  __device__ __forceinline__ float operator[](int64_t i) const {
    return bf ? __uint_as_float(static_cast<uint32_t>(static_cast<const uint16_t*>(p)[i]) << 16)
              : static_cast<const float*>(p)[i];
  }
  // Elements i .. i+3 (16-byte aligned for f32, 8-byte for bf16: see vec_ok).
  __device__ __forceinline__ float4 ld4(int64_t i) const {
    if (!bf) return *reinterpret_cast<const float4*>(static_cast<const float*>(p) + i);
    const uint2 u = *reinterpret_cast<const uint2*>(static_cast<const uint16_t*>(p) + i);
    return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u), __uint_as_float(u.y << 16),
                       __uint_as_float(u.y & 0xffff0000u));
  }
#endif
};

#if defined(__CUDACC__) || defined(MEDIC_CUDA_EMU)
// f32 -> bf16 bits, round to nearest even (the cvt.rn.bf16.f32 instruction on sm_80+).
__device__ __forceinline__ uint16_t bf16_bits(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }
#endif

struct FOut {
  void* p = nullptr;
  bool bf = false;
  __host__ __device__ FOut operator+(int64_t o) const {
    return {bf ? static_cast<void*>(static_cast<uint16_t*>(p) + o) : static_cast<void*>(static_cast<float*>(p) + o),
            bf};
  }
  __host__ __device__ explicit operator bool() const { return p != nullptr; }
  __host__ __device__ operator FIn() const { return {p, bf}; }
#if defined(__CUDACC__) || defined(MEDIC_CUDA_EMU)
  __device__ __forceinline__ float operator[](int64_t i) const { return FIn{p, bf}[i]; }
  __device__ __forceinline__ float4 ld4(int64_t i) const { return FIn{p, bf}.ld4(i); }
  __device__ __forceinline__ void set(int64_t i, float v) const {
    if (bf)
      static_cast<uint16_t*>(p)[i] = bf16_bits(v);
    else
      static_cast<float*>(p)[i] = v;
  }
  __device__ __forceinline__ void st4(int64_t i, float4 v) const {
    if (!bf) {
      *reinterpret_cast<float4*>(static_cast<float*>(p) + i) = v;
      return;
    }
    uint2 u;
    u.x = static_cast<uint32_t>(bf16_bits(v.x)) | (static_cast<uint32_t>(bf16_bits(v.y)) << 16);
    u.y = static_cast<uint32_t>(bf16_bits(v.z)) | (static_cast<uint32_t>(bf16_bits(v.w)) << 16);
    *reinterpret_cast<uint2*>(static_cast<uint16_t*>(p) + i) = u;
  }
#endif
};

// Views of an op's slots; an empty slot is a null view.
inline FIn fin(const Tensor& t) { return {t.data, t.dtype == DType::BF16}; }
inline FOut fout(const Tensor& t) { return {t.data, t.dtype == DType::BF16}; }
// Whether 4-element vector accesses (ld4 / st4) are aligned at the view's base (null views pass).
inline bool vec_base(const void* p, bool bf) {
  return (reinterpret_cast<uintptr_t>(p) & (bf ? uintptr_t(7) : uintptr_t(15))) == 0;
}
inline bool vec_base(FIn v) { return vec_base(v.p, v.bf); }
inline bool vec_base(FOut v) { return vec_base(v.p, v.bf); }

inline CudaContext& ctx_of(const OpCall& call) { return *static_cast<CudaContext*>(call.ctx->cuda); }
inline DeviceFault* fault_of(const OpCall& call) { return ctx_of(call).fault; }
inline cudaStream_t stream_of(const OpCall& call) { return ctx_of(call).stream; }

}  // namespace medic::cuda
