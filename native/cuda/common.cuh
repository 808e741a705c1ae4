// Shared by every CUDA source: error checks and the per-engine CUDA context.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "medic/tensor.h"

namespace medic::cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}

// What Context::cuda points at for a CUDA engine.
struct CudaContext {
  int device = 0;
  cudaStream_t stream = nullptr;
};

}  // namespace medic::cuda
