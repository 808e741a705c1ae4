// Which ops have a CUDA kernel in this build.
//
// Each native/cuda/<family>.cu defines medic::cuda::<op>(const OpCall&) for the ops it implements.
// They are declared weak here, so an op whose kernel is not (yet) compiled in resolves to nullptr:
// a CUDA program that uses it fails at compile time with a clear message (Program::plan), and the
// parity harness reports it as missing, never a crash mid-step.
#include "medic/ops.h"

namespace medic {
namespace cuda {
#define MEDIC_OP_WEAK(name, a, b, c, d) __attribute__((weak)) void name(const OpCall&);
MEDIC_OP_LIST(MEDIC_OP_WEAK)
#undef MEDIC_OP_WEAK
}  // namespace cuda

KernelFn cuda_kernel(OpId id) {
  switch (id) {
#define MEDIC_OP_CASE(name, a, b, c, d) \
  case OpId::name: return &cuda::name;
    MEDIC_OP_LIST(MEDIC_OP_CASE)
#undef MEDIC_OP_CASE
    default: return nullptr;
  }
}

}  // namespace medic
