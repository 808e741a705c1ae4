// allreduce / allreduce_wait on the CPU: gradient buckets averaged over MPI ranks (comm.h).
// Without a communicator both do nothing: the mean over one process is the value itself. With one
// of a single rank they still run the collective (a smoke test of the library).
#include "medic/comm.h"
#include "medic/ops.h"

namespace medic::cpu {

namespace {
CommState* comm_of(const OpCall& c) {
  CommState* s = c.ctx->comm;
  if (s && s->backend != "mpi")
    throw Error(std::string(c.def->name) + ": a CPU engine reduces over MPI, not " + s->backend);
  return s;
}
}  // namespace

void allreduce(const OpCall& c) {
  if (CommState* s = comm_of(c)) mpi::allreduce_start(*s, c.y(0).f32(), c.y(0).numel());
}

void allreduce_wait(const OpCall& c) {
  if (CommState* s = comm_of(c)) mpi::allreduce_wait(*s);
}

}  // namespace medic::cpu
