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

// What Context::cuda points at for a CUDA engine. Kernels launch on `stream` only, never synchronise
// and never allocate, so a program step can be captured as a CUDA graph.
struct CudaContext {
  int device = 0;
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;  // scratch shared by kernels that need it (see workspace())
  size_t workspace_bytes = 0;
  int sm_count = 0;
};

// Scratch memory of at least `bytes` for the op being run (contents undefined, valid until the next
// op). It grows on demand; a program's first, uncaptured run sizes it before any graph capture.
void* workspace(CudaContext& c, size_t bytes);

// Launch-error check after <<<>>> (asynchronous errors surface at the next synchronisation).
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

inline CudaContext& ctx_of(const OpCall& call) { return *static_cast<CudaContext*>(call.ctx->cuda); }
inline cudaStream_t stream_of(const OpCall& call) { return ctx_of(call).stream; }

}  // namespace medic::cuda
