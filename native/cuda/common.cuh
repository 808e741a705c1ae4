// Shared by every CUDA source: error checks and the per-engine CUDA context.
#pragma once

#include <cuda_runtime.h>

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

inline CudaContext& ctx_of(const OpCall& call) { return *static_cast<CudaContext*>(call.ctx->cuda); }
inline DeviceFault* fault_of(const OpCall& call) { return ctx_of(call).fault; }
inline cudaStream_t stream_of(const OpCall& call) { return ctx_of(call).stream; }

}  // namespace medic::cuda
