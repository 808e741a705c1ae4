// CPU-only builds: the CUDA entry points exist and say that CUDA is not compiled in.
#include "medic/engine.h"
#include "medic/ops.h"

namespace medic {

KernelFn cuda_kernel(OpId) { return nullptr; }
bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_describe(int) { return "CUDA not compiled into this binary"; }
DeviceApi cuda_device_api(int, Context&) { throw Error("CUDA not compiled into this binary"); }
void cuda_release_context(Context&) {}

}  // namespace medic
