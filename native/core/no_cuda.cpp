// CPU-only builds: the CUDA entry points exist and say that CUDA is not compiled in.
#include "medic/cuda_graph.h"
#include "medic/engine.h"
#include "medic/ops.h"

namespace medic {

KernelFn cuda_kernel(OpId) { return nullptr; }
bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_describe(int) { return "CUDA not compiled into this binary"; }
DeviceApi cuda_device_api(int, Context&) { throw Error("CUDA not compiled into this binary"); }
void cuda_release_context(Context&) {}

// No CUDA engine can exist in this build, so Program never reaches these; they exist to link.
bool cuda_graph_enabled() { return false; }
void cuda_graph_begin(Context&) { throw Error("CUDA not compiled into this binary"); }
CudaGraph* cuda_graph_end(Context&) { throw Error("CUDA not compiled into this binary"); }
void cuda_graph_abort(Context&) noexcept {}
void cuda_graph_launch(CudaGraph*, Context&) { throw Error("CUDA not compiled into this binary"); }
bool cuda_graph_stale(const CudaGraph*, const Context&) { return true; }
void cuda_graph_destroy(CudaGraph*) noexcept {}

}  // namespace medic
