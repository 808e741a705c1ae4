// Which ops have a CUDA kernel in this build. Ops without one make a CUDA program fail at compile
// time with a clear message (Program::plan), never mid-step.
#include "medic/ops.h"

namespace medic {

KernelFn cuda_kernel(OpId) {
  // The CUDA kernels land with issue 5 (native/cuda/<family>.cu); until then none is registered.
  return nullptr;
}

}  // namespace medic
