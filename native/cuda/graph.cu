// CUDA graph capture and replay of a Program step (see medic/cuda_graph.h for the why).
//
// Capture uses cudaStreamCaptureModeGlobal: while a step is being captured, a "potentially unsafe"
// call from any thread (cudaMalloc, a synchronous copy) fails instead of silently racing the capture.
// Kernels never synchronise or allocate (common.cuh), so the op list captures as it runs.
#include <cstdlib>
#include <cstring>
#include <string>

#include "common.cuh"
#include "medic/cuda_graph.h"

namespace medic {

struct CudaGraph {
  cudaGraphExec_t exec = nullptr;
  void* workspace = nullptr;  // the workspace the kernels were captured with
  size_t workspace_bytes = 0;
  size_t nodes = 0;
};

bool cuda_graph_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("MEDIC_CUDA_GRAPH");
    return !(v && (std::strcmp(v, "0") == 0 || std::strcmp(v, "off") == 0 || std::strcmp(v, "false") == 0));
  }();
  return on;
}

void cuda_graph_begin(Context& ctx) {
  cuda::CudaContext& c = *static_cast<cuda::CudaContext*>(ctx.cuda);
  cuda::check(cudaStreamBeginCapture(c.stream, cudaStreamCaptureModeGlobal), "cudaStreamBeginCapture");
}

CudaGraph* cuda_graph_end(Context& ctx) {
  cuda::CudaContext& c = *static_cast<cuda::CudaContext*>(ctx.cuda);
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(c.stream, &graph);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (graph) cudaGraphDestroy(graph);
    throw Error(
        std::string("CUDA graph capture of the program step failed: ") + cudaGetErrorString(e) +
        " (an op synchronised, allocated or copied synchronously during capture; MEDIC_CUDA_GRAPH=0 runs op by op)");
  }
  auto* g = new CudaGraph();
  cudaGraphGetNodes(graph, nullptr, &g->nodes);
  e = cudaGraphInstantiate(&g->exec, graph, 0);
  cudaGraphDestroy(graph);  // the executable graph keeps its own copy
  if (e != cudaSuccess) {
    cudaGetLastError();
    delete g;
    throw Error(std::string("cudaGraphInstantiate (program step): ") + cudaGetErrorString(e));
  }
  g->workspace = c.workspace;
  g->workspace_bytes = c.workspace_bytes;
  return g;
}

void cuda_graph_abort(Context& ctx) noexcept {
  cuda::CudaContext& c = *static_cast<cuda::CudaContext*>(ctx.cuda);
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(c.stream, &status) == cudaSuccess && status != cudaStreamCaptureStatusNone) {
    cudaGraph_t graph = nullptr;
    cudaStreamEndCapture(c.stream, &graph);
    if (graph) cudaGraphDestroy(graph);
  }
  cudaGetLastError();  // the capture's error is reported by the exception that got us here
}

void cuda_graph_launch(CudaGraph* g, Context& ctx) {
  cuda::CudaContext& c = *static_cast<cuda::CudaContext*>(ctx.cuda);
  cuda::check(cudaGraphLaunch(g->exec, c.stream), "cudaGraphLaunch (program step)");
}

bool cuda_graph_stale(const CudaGraph* g, const Context& ctx) {
  const cuda::CudaContext& c = *static_cast<const cuda::CudaContext*>(ctx.cuda);
  return g->workspace != c.workspace || g->workspace_bytes != c.workspace_bytes;
}

void cuda_graph_destroy(CudaGraph* g) noexcept {
  if (!g) return;
  if (g->exec) cudaGraphExecDestroy(g->exec);
  delete g;
}

}  // namespace medic
