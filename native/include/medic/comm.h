// Data-parallel communication: MPI for launch, rendezvous and CPU collectives; NCCL for CUDA ones.
//
// Neither library is linked. MPI (core/mpi.cpp) is dlopen'ed with RTLD_GLOBAL when a run asks for it
// (Open MPI's plugins resolve MPI symbols from the global namespace); NCCL (cuda/nccl.cpp, CUDA
// builds only) is dlopen'ed from libnccl.so.2. Both C APIs are declared in our sources from their
// public ABI, so the package builds and runs without either installed, and `doctor` says why one
// is missing.
//
// Only Open MPI's ABI (libmpi.so.40: handles are addresses of predefined objects such as
// ompi_mpi_comm_world) is supported; MPICH-ABI libraries (libmpi.so.12, integer handles) are named
// and refused by the probe.
//
// An engine with a communicator attached (Context::comm) runs the ops `allreduce` and
// `allreduce_wait` (ops.h) as collectives over all ranks; without one they do nothing, which is the
// mean over one rank. Gradients are f32; a bucket is one `allreduce` op over a window of the flat
// gradient buffer, so buckets started early in the backward pass overlap the rest of it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "medic/tensor.h"

namespace medic {

class Engine;

// What an engine's collective ops talk to. Owned by the Engine (Engine::attach_comm).
struct CommState {
  int rank = 0, size = 1;
  std::string backend = "none";  // "mpi" (host memory) or "nccl" (device memory)
  double timeout_s = 300;        // a collective that makes no progress this long throws, naming it

  // MPI: buckets started by `allreduce` and not yet completed by `allreduce_wait`.
  struct Pending {
    void* request;  // MPI_Request
    float* data;
    int64_t n;
  };
  std::vector<Pending> pending;

  // NCCL: set by nccl_attach; the CUDA ops call these on the engine stream.
  void (*device_start)(CommState&, void* stream, void* data, int64_t n) = nullptr;
  void (*device_wait)(CommState&, void* stream) = nullptr;
  void (*device_release)(CommState&) = nullptr;
  void* device = nullptr;

  // Host-side accounting since attach: time spent inside collective calls (starting buckets and
  // waiting for them), values reduced and buckets started. On NCCL only the (asynchronous) enqueue
  // time is seen here.
  double start_ms = 0, wait_ms = 0;
  int64_t values = 0, buckets = 0;
};

namespace mpi {

struct Probe {
  bool found = false;
  std::string library;  // the file that was loaded, or tried last
  std::string version;  // MPI_Get_library_version (first line)
  std::string reason;   // why not found / not usable
};
// Loads the library (once) without initialising MPI. Never throws.
Probe probe();

struct World {
  int rank = 0, size = 1, local_rank = 0, local_size = 1;
};
// MPI_Init_thread (serialized: calls come from the JS thread and the step's worker thread, never at
// once) on first use; later calls return the same world. Throws with the reason when MPI is missing.
World init(double timeout_s);
bool active();  // initialised and not finalised
void finalize();
[[noreturn]] void abort(int code);
void set_timeout(double seconds);

// Host collectives over MPI_COMM_WORLD, each bounded by the timeout (throws naming the collective).
void bcast(void* data, size_t bytes, int root);
void barrier(const char* what);
// Every rank's bytes, concatenated in rank order; sizes[r] = bytes of rank r.
std::vector<uint8_t> allgather(const void* data, size_t bytes, std::vector<size_t>& sizes);
// In place, element-wise over ranks: op 0 = sum, 1 = max.
void allreduce_f64(double* data, int n, int op);

// The engine ops' side (cpu/comm.cpp): start one bucket, complete every started bucket.
void allreduce_start(CommState& s, float* data, int64_t n);
void allreduce_wait(CommState& s);

}  // namespace mpi

namespace nccl {

struct Probe {
  bool found = false;
  std::string library, version, reason;
};
Probe probe();  // CUDA builds: dlopen libnccl.so.2; CPU builds: not compiled in. Never throws.
// Gives a CUDA engine's communicator (rank and size set) an NCCL communicator on its own stream.
void attach(Engine& engine, CommState& s);

}  // namespace nccl

}  // namespace medic
