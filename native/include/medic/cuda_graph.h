// CUDA graph capture of a Program step (cuda/graph.cu; core/no_cuda.cpp has stubs for CPU builds).
//
// A Program on a CUDA engine runs its op list once uncaptured (that run sizes the shared workspace),
// then captures the same op list on the engine stream into a graph and replays it on every later run:
// one launch per step instead of one per op. Captured kernels read and write the same device
// addresses on every replay, which holds because program buffers (arena, bound tensors) never move;
// the engine workspace can move when another program grows it, so a graph remembers the workspace it
// was captured with and the program captures again when that changed (cuda_graph_stale).
// MEDIC_CUDA_GRAPH=0 in the environment disables capture (every run is op by op), for debugging.
#pragma once

#include "medic/ops.h"

namespace medic {

struct CudaGraph;  // an instantiated graph plus what it was captured against

bool cuda_graph_enabled();                                      // false when MEDIC_CUDA_GRAPH=0 (read once)
void cuda_graph_begin(Context& ctx);                            // start capturing the engine stream
CudaGraph* cuda_graph_end(Context& ctx);                        // stop capturing, instantiate; throws on failure
void cuda_graph_abort(Context& ctx) noexcept;                   // stop a capture after an error, discard it
void cuda_graph_launch(CudaGraph* g, Context& ctx);             // replay on the engine stream (asynchronous)
bool cuda_graph_stale(const CudaGraph* g, const Context& ctx);  // captured against another workspace
void cuda_graph_destroy(CudaGraph* g) noexcept;

}  // namespace medic
