// MPI loaded at run time (see medic/comm.h): the few functions and handles we use, declared from
// Open MPI's ABI, and the bounded-time collectives built on them.
//
// Handles in Open MPI are pointers to predefined objects (MPI_COMM_WORLD is &ompi_mpi_comm_world,
// MPI_FLOAT is &ompi_mpi_float, ...), so dlsym of those object names yields the handles themselves.
// Every collective is nonblocking and polled against a deadline: a rank that died or stalled makes
// the others throw within the timeout instead of hanging the job.
#include <dlfcn.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "medic/comm.h"

namespace medic::mpi {

namespace {

using Handle = void*;  // MPI_Comm, MPI_Datatype, MPI_Op, MPI_Request, MPI_Info, MPI_Errhandler
constexpr int kSuccess = 0;
constexpr int kThreadSerialized = 2;                // MPI_THREAD_SERIALIZED in Open MPI's enum
constexpr int kCommTypeShared = 0;                  // MPI_COMM_TYPE_SHARED
void* const kInPlace = reinterpret_cast<void*>(1);  // MPI_IN_PLACE
constexpr int kMaxString = 256;                     // MPI_MAX_LIBRARY_VERSION_STRING, MPI_MAX_ERROR_STRING

struct Api {
  void* lib = nullptr;
  std::string path, version, reason;
  int (*Initialized)(int*);
  int (*Finalized)(int*);
  int (*Init_thread)(int*, char***, int, int*);
  int (*Finalize)();
  int (*Abort)(Handle, int);
  int (*Comm_rank)(Handle, int*);
  int (*Comm_size)(Handle, int*);
  int (*Comm_split_type)(Handle, int, int, Handle, Handle*);
  int (*Comm_free)(Handle*);
  int (*Comm_set_errhandler)(Handle, Handle);
  int (*Iallreduce)(const void*, void*, int, Handle, Handle, Handle, Handle*);
  int (*Iallgather)(const void*, int, Handle, void*, int, Handle, Handle, Handle*);
  int (*Iallgatherv)(const void*, int, Handle, void*, const int*, const int*, Handle, Handle, Handle*);
  int (*Ibcast)(void*, int, Handle, int, Handle, Handle*);
  int (*Ibarrier)(Handle, Handle*);
  int (*Isend)(const void*, int, Handle, int, int, Handle, Handle*);
  int (*Irecv)(void*, int, Handle, int, int, Handle, Handle*);
  int (*Test)(Handle*, int*, void*);
  int (*Get_library_version)(char*, int*);
  int (*Error_string)(int, char*, int*);
  Handle comm_world, dt_float, dt_double, dt_byte, dt_int, op_sum, op_max, info_null, errors_return;
};

template <typename F>
bool sym(void* lib, const char* name, F& out) {
  out = reinterpret_cast<F>(dlsym(lib, name));
  return out != nullptr;
}

// Load and resolve once. Fills api.reason instead of throwing.
Api& api() {
  static Api a;
  static std::once_flag once;
  std::call_once(once, [] {
    std::vector<std::string> names;
    if (const char* env = std::getenv("MEDIC_MPI_LIBRARY"); env && *env) names.push_back(env);
    names.push_back("libmpi.so.40");  // Open MPI 3, 4 and 5
    names.push_back("libmpi.so");
    std::string errors;
    for (const std::string& n : names) {
      a.path = n;
      a.lib = dlopen(n.c_str(), RTLD_NOW | RTLD_GLOBAL);
      if (a.lib) break;
      errors += (errors.empty() ? "" : "; ") + std::string(dlerror());
    }
    if (!a.lib) {
      void* mpich = dlopen("libmpi.so.12", RTLD_LAZY | RTLD_LOCAL);
      if (mpich) {
        dlclose(mpich);
        a.reason =
            "libmpi.so.12 (an MPICH-ABI MPI: MPICH, Intel MPI, Cray MPICH) was found, but only Open MPI's ABI "
            "(libmpi.so.40) is supported; install Open MPI or set MEDIC_MPI_LIBRARY";
      } else {
        a.reason = "no Open MPI library could be loaded (" + errors +
                   "); install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin) or set MEDIC_MPI_LIBRARY";
      }
      return;
    }
    bool ok =
        sym(a.lib, "MPI_Initialized", a.Initialized) && sym(a.lib, "MPI_Finalized", a.Finalized) &&
        sym(a.lib, "MPI_Init_thread", a.Init_thread) && sym(a.lib, "MPI_Finalize", a.Finalize) &&
        sym(a.lib, "MPI_Abort", a.Abort) && sym(a.lib, "MPI_Comm_rank", a.Comm_rank) &&
        sym(a.lib, "MPI_Comm_size", a.Comm_size) && sym(a.lib, "MPI_Comm_split_type", a.Comm_split_type) &&
        sym(a.lib, "MPI_Comm_free", a.Comm_free) && sym(a.lib, "MPI_Comm_set_errhandler", a.Comm_set_errhandler) &&
        sym(a.lib, "MPI_Iallreduce", a.Iallreduce) && sym(a.lib, "MPI_Iallgather", a.Iallgather) &&
        sym(a.lib, "MPI_Iallgatherv", a.Iallgatherv) && sym(a.lib, "MPI_Ibcast", a.Ibcast) &&
        sym(a.lib, "MPI_Ibarrier", a.Ibarrier) && sym(a.lib, "MPI_Isend", a.Isend) &&
        sym(a.lib, "MPI_Irecv", a.Irecv) && sym(a.lib, "MPI_Test", a.Test) &&
        sym(a.lib, "MPI_Get_library_version", a.Get_library_version) && sym(a.lib, "MPI_Error_string", a.Error_string);
    if (!ok) {
      a.reason = a.path + " lacks an MPI-3 function (" + std::string(dlerror()) + ")";
      a.lib = nullptr;
      return;
    }
    // The predefined objects whose addresses are Open MPI's handles.
    ok = (a.comm_world = dlsym(a.lib, "ompi_mpi_comm_world")) && (a.dt_float = dlsym(a.lib, "ompi_mpi_float")) &&
         (a.dt_double = dlsym(a.lib, "ompi_mpi_double")) && (a.dt_byte = dlsym(a.lib, "ompi_mpi_byte")) &&
         (a.dt_int = dlsym(a.lib, "ompi_mpi_int")) && (a.op_sum = dlsym(a.lib, "ompi_mpi_op_sum")) &&
         (a.op_max = dlsym(a.lib, "ompi_mpi_op_max")) && (a.info_null = dlsym(a.lib, "ompi_mpi_info_null")) &&
         (a.errors_return = dlsym(a.lib, "ompi_mpi_errors_return"));
    if (!ok) {
      a.reason = a.path + " is not Open MPI (no ompi_mpi_comm_world): only Open MPI's ABI is supported";
      a.lib = nullptr;
      return;
    }
    char buf[kMaxString + 1] = {0};
    int len = 0;
    if (a.Get_library_version(buf, &len) == kSuccess) {
      std::string v(buf, std::min(len, kMaxString));
      a.version = v.substr(0, v.find_first_of("\n,"));
    }
  });
  return a;
}

Api& loaded() {
  Api& a = api();
  if (!a.lib) throw Error("MPI: " + a.reason);
  return a;
}

struct WorldState {
  bool initialised = false, finalised = false;
  World world;
  double timeout_s = 300;
};
WorldState& state() {
  static WorldState s;
  return s;
}

std::string error_text(Api& a, int code) {
  char buf[kMaxString + 1] = {0};
  int len = 0;
  if (a.Error_string(code, buf, &len) != kSuccess) return "error " + std::to_string(code);
  return std::string(buf, std::min(len, kMaxString));
}

void check(Api& a, int rc, const char* what) {
  if (rc != kSuccess) throw Error(std::string("MPI: ") + what + " failed: " + error_text(a, rc));
}

std::string who() {
  const World& w = state().world;
  return "rank " + std::to_string(w.rank) + " of " + std::to_string(w.size);
}

// Which ranks are gone, asked when a collective timed out. Every rank that timed out sends a token to
// every other rank and listens for theirs for a grace period: the live ranks, stuck in the same
// collective, time out at about the same moment and answer; a rank that died or hangs elsewhere does
// not. Point-to-point messages on their own tag, only on this failure path.
std::string silent_ranks(Api& a, double grace_s) {
  const World& w = state().world;
  constexpr int kTag = 0x6d6564;  // "med"
  int token = w.rank, sink = 0;
  std::vector<Handle> sends(w.size, nullptr), recvs(w.size, nullptr);
  std::vector<int> got(w.size, 0), inbox(w.size, 0);
  for (int r = 0; r < w.size; ++r) {
    if (r == w.rank) continue;
    // Errors (a peer whose connection is gone) leave that rank silent, which is the answer.
    if (a.Isend(&token, 1, a.dt_int, r, kTag, a.comm_world, &sends[r]) != kSuccess) sends[r] = nullptr;
    if (a.Irecv(&inbox[r], 1, a.dt_int, r, kTag, a.comm_world, &recvs[r]) != kSuccess) recvs[r] = nullptr;
  }
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < grace_s) {
    int pending = 0;
    for (int r = 0; r < w.size; ++r) {
      if (r == w.rank || got[r] || !recvs[r]) continue;
      int done = 0;
      if (a.Test(&recvs[r], &done, nullptr) == kSuccess && done)
        got[r] = 1;
      else
        pending += 1;
      if (sends[r]) a.Test(&sends[r], &sink, nullptr);
    }
    if (!pending) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::string list;
  for (int r = 0; r < w.size; ++r)
    if (r != w.rank && !got[r]) list += (list.empty() ? "" : ", ") + std::to_string(r);
  return list;
}

// Polls one request until it completes or the deadline passes. Spins briefly, then sleeps in short
// steps so that a waiting rank leaves the cores to the ranks still computing.
void wait(Api& a, Handle* req, const char* what, double timeout_s) {
  auto t0 = std::chrono::steady_clock::now();
  for (int spins = 0;; ++spins) {
    int done = 0;
    check(a, a.Test(req, &done, nullptr), what);
    if (done) return;
    if (spins < 1000) continue;
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (waited > timeout_s) {
      std::string lost = silent_ranks(a, std::min(10.0, std::max(2.0, timeout_s / 2)));
      std::string secs = std::to_string(static_cast<int>(timeout_s));
      throw Error(who() + ": " + what + " made no progress for " + secs + " s; " +
                  (lost.empty() ? std::string("every rank still answers, so one is stalled inside the collective")
                                : "lost or stalled: rank" +
                                      std::string(lost.find(',') == std::string::npos ? " " : "s ") + lost) +
                  "; stopping");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(spins < 5000 ? 20 : 200));
  }
}

int as_count(size_t n, const char* what) {
  if (n > static_cast<size_t>(0x7fffffff))
    throw Error(std::string("MPI: ") + what + ": " + std::to_string(n) + " elements exceed MPI's int count");
  return static_cast<int>(n);
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

World init(double timeout_s) {
  WorldState& s = state();
  s.timeout_s = timeout_s;
  if (s.initialised) {
    if (s.finalised) throw Error("MPI: already finalised in this process");
    return s.world;
  }
  Api& a = loaded();
  int already = 0;
  check(a, a.Initialized(&already), "MPI_Initialized");
  if (!already) {
    int provided = 0;
    check(a, a.Init_thread(nullptr, nullptr, kThreadSerialized, &provided), "MPI_Init_thread");
    if (provided < kThreadSerialized)
      throw Error("MPI: the library provides thread level " + std::to_string(provided) +
                  ", the engine needs MPI_THREAD_SERIALIZED (2): steps call MPI from a worker thread");
  }
  // Errors come back as codes (and become medic::Error) rather than aborting the job unexplained.
  check(a, a.Comm_set_errhandler(a.comm_world, a.errors_return), "MPI_Comm_set_errhandler");
  World& w = s.world;
  check(a, a.Comm_rank(a.comm_world, &w.rank), "MPI_Comm_rank");
  check(a, a.Comm_size(a.comm_world, &w.size), "MPI_Comm_size");
  Handle local = nullptr;
  check(a, a.Comm_split_type(a.comm_world, kCommTypeShared, w.rank, a.info_null, &local), "MPI_Comm_split_type");
  check(a, a.Comm_rank(local, &w.local_rank), "MPI_Comm_rank (node)");
  check(a, a.Comm_size(local, &w.local_size), "MPI_Comm_size (node)");
  check(a, a.Comm_free(&local), "MPI_Comm_free");
  s.initialised = true;
  return w;
}

bool active() { return state().initialised && !state().finalised; }

void set_timeout(double seconds) { state().timeout_s = seconds; }

void finalize() {
  WorldState& s = state();
  if (!active()) return;
  s.finalised = true;
  Api& a = loaded();
  a.Finalize();
}

void abort(int code) {
  if (active()) {
    Api& a = loaded();
    a.Abort(a.comm_world, code);
  }
  std::_Exit(code);
}

static Api& active_api(const char* what) {
  if (!active()) throw Error(std::string("MPI: ") + what + ": MPI is not initialised in this process");
  return loaded();
}

void bcast(void* data, size_t bytes, int root) {
  Api& a = active_api("broadcast");
  Handle req = nullptr;
  check(a, a.Ibcast(data, as_count(bytes, "broadcast"), a.dt_byte, root, a.comm_world, &req), "MPI_Ibcast");
  wait(a, &req, "a broadcast", state().timeout_s);
}

void barrier(const char* what) {
  Api& a = active_api("barrier");
  Handle req = nullptr;
  check(a, a.Ibarrier(a.comm_world, &req), "MPI_Ibarrier");
  wait(a, &req, what, state().timeout_s);
}

std::vector<uint8_t> allgather(const void* data, size_t bytes, std::vector<size_t>& sizes) {
  Api& a = active_api("allgather");
  const int n = state().world.size;
  int mine = as_count(bytes, "allgather");
  std::vector<int> counts(n), displs(n);
  Handle req = nullptr;
  check(a, a.Iallgather(&mine, 1, a.dt_int, counts.data(), 1, a.dt_int, a.comm_world, &req), "MPI_Iallgather");
  wait(a, &req, "gathering evaluation sizes", state().timeout_s);
  size_t total = 0;
  sizes.assign(n, 0);
  for (int r = 0; r < n; ++r) {
    displs[r] = as_count(total, "allgather");
    sizes[r] = static_cast<size_t>(counts[r]);
    total += sizes[r];
  }
  as_count(total, "allgather (total)");
  std::vector<uint8_t> out(total);
  check(a,
        a.Iallgatherv(data, mine, a.dt_byte, out.data(), counts.data(), displs.data(), a.dt_byte, a.comm_world, &req),
        "MPI_Iallgatherv");
  wait(a, &req, "gathering evaluation features", state().timeout_s);
  return out;
}

void allreduce_f64(double* data, int n, int op) {
  Api& a = active_api("allreduce");
  Handle req = nullptr;
  check(a, a.Iallreduce(kInPlace, data, n, a.dt_double, op == 1 ? a.op_max : a.op_sum, a.comm_world, &req),
        "MPI_Iallreduce");
  wait(a, &req, "the all-reduce between steps (stop agreement)", state().timeout_s);
}

void allreduce_start(CommState& s, float* data, int64_t n) {
  Api& a = active_api("gradient all-reduce");
  auto t0 = std::chrono::steady_clock::now();
  // Started buckets progress only inside MPI calls (no progress thread): test them as we go.
  for (CommState::Pending& p : s.pending) {
    int done = 0;
    if (p.request) check(a, a.Test(&p.request, &done, nullptr), "MPI_Test");
  }
  Handle req = nullptr;
  check(a,
        a.Iallreduce(kInPlace, data, as_count(static_cast<size_t>(n), "gradient bucket"), a.dt_float, a.op_sum,
                     a.comm_world, &req),
        "MPI_Iallreduce (gradient bucket)");
  s.pending.push_back({req, data, n});
  s.values += n;
  s.buckets += 1;
  s.start_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void allreduce_wait(CommState& s) {
  if (s.pending.empty()) return;
  Api& a = active_api("gradient all-reduce");
  auto t0 = std::chrono::steady_clock::now();
  const float inv = 1.0f / static_cast<float>(s.size);
  for (CommState::Pending& p : s.pending) {
    // Open MPI sets a completed request to MPI_REQUEST_NULL, which MPI_Test accepts as done.
    wait(a, &p.request, "the gradient all-reduce", s.timeout_s);
    for (int64_t i = 0; i < p.n; ++i) p.data[i] *= inv;  // sum -> mean over ranks
  }
  s.pending.clear();
  s.wait_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace medic::mpi
