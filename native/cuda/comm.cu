// allreduce / allreduce_wait on CUDA: the engine's NCCL communicator (core/nccl.cpp) enqueues each
// bucket on its own stream, ordered after the work queued so far on the engine stream, and the wait
// makes the engine stream wait for that stream. Both are stream operations only (no host
// synchronisation), so a step with them is captured into the CUDA graph like any other.
// Without a communicator both do nothing: the mean over one process is the value itself. With one
// of a single rank they still run the collective (a smoke test of the library).
#include "common.cuh"
#include "medic/comm.h"

namespace medic::cuda {

namespace {
CommState* comm_of(const OpCall& c) {
  CommState* s = c.ctx->comm;
  if (!s) return nullptr;
  if (!s->device_start)
    throw Error(std::string(c.def->name) + ": the engine's communicator (" + s->backend +
                ") cannot reduce device memory; CUDA engines use NCCL");
  return s;
}
}  // namespace

void allreduce(const OpCall& c) {
  if (CommState* s = comm_of(c)) s->device_start(*s, stream_of(c), c.y(0).data, c.y(0).numel());
}

void allreduce_wait(const OpCall& c) {
  if (CommState* s = comm_of(c)) s->device_wait(*s, stream_of(c));
}

}  // namespace medic::cuda
