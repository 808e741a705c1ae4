// NCCL loaded at run time (see medic/comm.h): the small part of its C API we use, declared here from
// NCCL's public header (no NCCL headers are needed to build), and the engine hooks of the CUDA
// allreduce ops. Built into every target; only the real CUDA build (not the CPU build, not the CUDA
// emulator) has NCCL support, the others say so.
#include "medic/comm.h"
#include "medic/engine.h"

#if defined(MEDIC_WITH_CUDA) && !defined(MEDIC_CUDA_EMU)
#define MEDIC_NCCL 1
#include <dlfcn.h>

#include <chrono>
#include <cstdlib>
#include <mutex>

#include "../cuda/common.cuh"
#endif

namespace medic::nccl {

#ifndef MEDIC_NCCL

Probe probe() {
  Probe p;
  p.reason = "NCCL is used by the CUDA build of the engine only, and this binary has no CUDA (or is the CUDA emulator)";
  return p;
}

void attach(Engine&, CommState&) { throw Error("NCCL: " + probe().reason); }

#else

namespace {

// From NCCL's public API (nccl.h): opaque communicator, 128-byte unique id, int-sized enums.
struct NcclComm;
using ncclComm_t = NcclComm*;
struct ncclUniqueId {
  char internal[128];
};
constexpr int kSuccess = 0;
constexpr int kFloat32 = 7;         // ncclFloat32
constexpr int kAvg = 4;             // ncclAvg (NCCL >= 2.10)
constexpr int kMinVersion = 21000;  // NCCL_VERSION(2, 10, 0)

struct Api {
  void* lib = nullptr;
  std::string path = "libnccl.so.2", version, reason;
  int code = 0;
  int (*GetVersion)(int*);
  int (*GetUniqueId)(ncclUniqueId*);
  int (*CommInitRank)(ncclComm_t*, int, ncclUniqueId, int);
  int (*CommDestroy)(ncclComm_t);
  int (*CommAbort)(ncclComm_t);
  int (*AllReduce)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t);
  const char* (*GetErrorString)(int);
};

template <typename F>
bool sym(void* lib, const char* name, F& out) {
  out = reinterpret_cast<F>(dlsym(lib, name));
  return out != nullptr;
}

Api& api() {
  static Api a;
  static std::once_flag once;
  std::call_once(once, [] {
    if (const char* env = std::getenv("MEDIC_NCCL_LIBRARY"); env && *env) a.path = env;
    a.lib = dlopen(a.path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!a.lib) {
      a.reason =
          std::string("could not load ") + a.path + " (" + dlerror() +
          "); install NCCL 2.10+ (e.g. the nccl runtime package of your CUDA distribution) or set MEDIC_NCCL_LIBRARY";
      return;
    }
    bool ok = sym(a.lib, "ncclGetVersion", a.GetVersion) && sym(a.lib, "ncclGetUniqueId", a.GetUniqueId) &&
              sym(a.lib, "ncclCommInitRank", a.CommInitRank) && sym(a.lib, "ncclCommDestroy", a.CommDestroy) &&
              sym(a.lib, "ncclCommAbort", a.CommAbort) && sym(a.lib, "ncclAllReduce", a.AllReduce) &&
              sym(a.lib, "ncclGetErrorString", a.GetErrorString);
    if (!ok) {
      a.reason = a.path + " lacks an NCCL function (" + std::string(dlerror()) + ")";
      a.lib = nullptr;
      return;
    }
    a.GetVersion(&a.code);
    a.version =
        std::to_string(a.code / 10000) + "." + std::to_string(a.code / 100 % 100) + "." + std::to_string(a.code % 100);
    if (a.code < kMinVersion) {
      a.reason = a.path + " is NCCL " + a.version + "; averaging needs ncclAvg (NCCL 2.10 or newer)";
      a.lib = nullptr;
    }
  });
  return a;
}

void check(Api& a, int rc, const char* what) {
  if (rc != kSuccess) throw Error(std::string("NCCL: ") + what + " failed: " + a.GetErrorString(rc));
}

struct State {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;  // NCCL's own stream
  cudaEvent_t fork = nullptr, join = nullptr;
  bool failed = false;
};

// Each bucket waits for the engine stream's work so far (the backward ops that wrote it), then runs
// on NCCL's stream while the engine stream goes on with the rest of the backward pass.
void start(CommState& s, void* engine_stream, void* data, int64_t n) {
  Api& a = api();
  State& st = *static_cast<State*>(s.device);
  auto t0 = std::chrono::steady_clock::now();
  auto es = static_cast<cudaStream_t>(engine_stream);
  cuda::check(cudaEventRecord(st.fork, es), "allreduce: cudaEventRecord");
  cuda::check(cudaStreamWaitEvent(st.stream, st.fork, 0), "allreduce: cudaStreamWaitEvent");
  int rc = a.AllReduce(data, data, static_cast<size_t>(n), kFloat32, kAvg, st.comm, st.stream);
  if (rc != kSuccess) st.failed = true;
  check(a, rc, "ncclAllReduce");
  s.values += n;
  s.buckets += 1;
  s.start_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void wait(CommState& s, void* engine_stream) {
  State& st = *static_cast<State*>(s.device);
  cuda::check(cudaEventRecord(st.join, st.stream), "allreduce_wait: cudaEventRecord");
  cuda::check(cudaStreamWaitEvent(static_cast<cudaStream_t>(engine_stream), st.join, 0),
              "allreduce_wait: cudaStreamWaitEvent");
}

void release(CommState& s) {
  auto* st = static_cast<State*>(s.device);
  if (!st) return;
  Api& a = api();
  if (st->comm) (st->failed ? a.CommAbort : a.CommDestroy)(st->comm);
  if (st->fork) cudaEventDestroy(st->fork);
  if (st->join) cudaEventDestroy(st->join);
  if (st->stream) cudaStreamDestroy(st->stream);
  delete st;
  s.device = nullptr;
}

}  // namespace

Probe probe() {
  Probe p;
  Api& a = api();
  p.found = a.lib != nullptr;
  p.library = a.path;
  p.version = a.version;
  p.reason = a.reason;
  return p;
}

// Rank 0 makes the unique id and MPI broadcasts it (one rank alone needs no MPI: a smoke run).
void attach(Engine& engine, CommState& s) {
  Api& a = api();
  if (!a.lib) throw Error("NCCL: " + a.reason);
  if (engine.device() != Device::CUDA) throw Error("NCCL: the engine is not a CUDA engine");
  if (s.size > 1 && !mpi::active())
    throw Error("NCCL: " + std::to_string(s.size) + " ranks need MPI to share NCCL's unique id");
  ncclUniqueId id{};
  if (s.rank == 0) check(a, a.GetUniqueId(&id), "ncclGetUniqueId");
  if (s.size > 1) mpi::bcast(&id, sizeof id, 0);
  auto* st = new State();
  s.device = st;
  s.device_release = release;
  cuda::check(cudaSetDevice(engine.device_index()), "NCCL: cudaSetDevice");
  cuda::check(cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking), "NCCL: cudaStreamCreateWithFlags");
  cuda::check(cudaEventCreateWithFlags(&st->fork, cudaEventDisableTiming), "NCCL: cudaEventCreateWithFlags");
  cuda::check(cudaEventCreateWithFlags(&st->join, cudaEventDisableTiming), "NCCL: cudaEventCreateWithFlags");
  check(a, a.CommInitRank(&st->comm, s.size, id, s.rank), "ncclCommInitRank");
  s.backend = "nccl";
  s.device_start = start;
  s.device_wait = wait;
}

#endif

}  // namespace medic::nccl
