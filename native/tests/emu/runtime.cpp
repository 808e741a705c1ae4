// medic CUDA emulator, runtime API: device memory (each allocation followed by a guard checked after
// every kernel), errors, streams and graph capture (captured work is recorded and runs at each
// cudaGraphLaunch), events, and the launch checks a GPU makes (1024 threads, grid y/z <= 65535,
// more than 48 KiB of dynamic shared memory only after cudaFuncSetAttribute). Under
// cudaStreamCaptureModeGlobal, allocation, synchronisation and pageable copies while a stream
// captures fail and invalidate the capture, as the driver does. exec.cpp runs the kernels.
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "emu_internal.h"

namespace medic_emu {

using namespace detail;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kRedzone = 0;  // AddressSanitizer guards every allocation itself, reads included
#else
constexpr size_t kRedzone = 256;
#endif
constexpr unsigned char kRedzoneByte = 0xA5;

// ---- Device memory with a guard after every allocation -------------------------------------------

struct Alloc {
  size_t bytes;
  bool pinned;
  size_t mapped;  // > 0: an mmap'd reservation of this many bytes (dry runs), else aligned_alloc
};
std::mutex g_mem_mu;
std::map<uintptr_t, Alloc>& allocs() {
  static auto* m = new std::map<uintptr_t, Alloc>();  // never destroyed: engines free memory at exit
  return *m;
}

size_t g_live_bytes = 0, g_peak_bytes = 0;

void* mem_alloc(size_t bytes, bool pinned) {
  // Without our guard (AddressSanitizer builds) the allocation ends exactly at `bytes`.
  size_t padded = kRedzone ? (bytes + kRedzone + 255) / 256 * 256 : std::max<size_t>(bytes, 1);
  // A dry run reserves address space only, so full-size programs fit on a small machine.
  size_t mapped = dry_run() ? padded : 0;
  void* p = nullptr;
  if (mapped) {
    p = mmap(nullptr, padded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) p = nullptr;
  } else if (posix_memalign(&p, 256, padded) != 0) {
    p = nullptr;
  }
  if (!p) return nullptr;
  if (!dry_run()) std::memset(p, 0xCD, bytes);  // fresh device memory is not zero (a dry run leaves pages untouched)
  std::memset(static_cast<unsigned char*>(p) + bytes, kRedzoneByte, padded - bytes);
  std::lock_guard<std::mutex> g(g_mem_mu);
  allocs()[reinterpret_cast<uintptr_t>(p)] = Alloc{bytes, pinned, mapped};
  if (!pinned) {
    g_live_bytes += bytes;
    g_peak_bytes = std::max(g_peak_bytes, g_live_bytes);
  }
  if (verbose() && bytes >= (size_t(256) << 20)) {
    static bool hooked = false;
    if (!hooked) {
      hooked = true;
      std::atexit(
          [] { std::fprintf(stderr, "medic emulator: peak device memory %.2f GiB\n", g_peak_bytes / 1073741824.0); });
    }
    std::fprintf(stderr, "medic emulator: cudaMalloc %.2f GiB (live %.2f GiB)\n", bytes / 1073741824.0,
                 g_live_bytes / 1073741824.0);
  }
  return p;
}

bool redzone_intact(uintptr_t p, const Alloc& a) {
  const unsigned char* z = reinterpret_cast<const unsigned char*>(p) + a.bytes;
  for (size_t i = 0; i < kRedzone; ++i)
    if (z[i] != kRedzoneByte) return false;
  return true;
}

// Which live allocation holds [p, p + n)? 0 if none.
uintptr_t find_alloc(const void* p, size_t n, bool* pinned = nullptr) {
  std::lock_guard<std::mutex> g(g_mem_mu);
  auto& m = allocs();
  uintptr_t u = reinterpret_cast<uintptr_t>(p);
  auto it = m.upper_bound(u);
  if (it == m.begin()) return 0;
  --it;
  if (u + n > it->first + it->second.bytes) return 0;
  if (pinned) *pinned = it->second.pinned;
  return it->first;
}

// ---- Errors, streams, capture --------------------------------------------------------------------

thread_local cudaError_t t_last = cudaSuccess;
thread_local std::string t_detail;

cudaError_t fail(cudaError_t e, const std::string& detail) {
  t_last = e;
  t_detail = detail;
  return e;
}

using Op = std::function<void()>;

std::mutex g_capture_mu;
int g_capturing = 0;  // streams now capturing (global capture mode)

}  // namespace

std::string detail::check_redzones() {
  std::lock_guard<std::mutex> g(g_mem_mu);
  for (auto& [p, a] : allocs())
    if (!redzone_intact(p, a)) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "write past the end of a %zu-byte device allocation", a.bytes);
      return buf;
    }
  return "";
}

}  // namespace medic_emu

struct CUstream_st {
  bool capturing = false;
  bool invalidated = false;
  std::vector<medic_emu::Op> ops;
};
struct CUgraph_st {
  std::vector<medic_emu::Op> ops;
};
struct CUgraphExec_st {
  std::vector<medic_emu::Op> ops;
};
struct CUevent_st {
  std::chrono::steady_clock::time_point t;
};

namespace medic_emu {
namespace {

CUstream_st g_default_stream;
CUstream_st* stream_of(cudaStream_t s) { return s ? s : &g_default_stream; }

// A call that is not allowed while any stream captures (cudaStreamCaptureModeGlobal): it fails and
// invalidates the captures, as the driver does.
bool capture_forbids(const char* what) {
  std::lock_guard<std::mutex> g(g_capture_mu);
  if (g_capturing == 0) return false;
  fail(cudaErrorStreamCaptureUnsupported, std::string(what) + " while a stream is being captured");
  return true;
}

void invalidate(CUstream_st* s) { s->invalidated = true; }

// Runs an op now, or records it when its stream captures.
cudaError_t enqueue(cudaStream_t s, Op op) {
  CUstream_st* st = stream_of(s);
  if (st->capturing) {
    st->ops.push_back(std::move(op));
    return cudaSuccess;
  }
  try {
    op();
  } catch (const std::exception& e) {
    return fail(cudaErrorLaunchFailure, e.what());
  }
  return cudaSuccess;
}

std::map<const void*, int>& smem_optin() {
  static auto* m = new std::map<const void*, int>();
  return *m;
}
std::mutex g_attr_mu;

}  // namespace

cudaError_t func_set_attribute(const void* fn, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize)
    return fail(cudaErrorInvalidValue, "unsupported function attribute");
  if (value < 0 || static_cast<size_t>(value) > kOptinSmem)
    return fail(cudaErrorInvalidValue,
                "MaxDynamicSharedMemorySize " + std::to_string(value) + " above the 227 KiB opt-in limit");
  std::lock_guard<std::mutex> g(g_attr_mu);
  smem_optin()[fn] = value;
  return cudaSuccess;
}

void submit(Launch l, cudaStream_t s) {
  const uint64_t nt = static_cast<uint64_t>(l.block.x) * l.block.y * l.block.z;
  std::string bad;
  if (nt == 0 || nt > kMaxThreads || l.block.x > 1024 || l.block.y > 1024 || l.block.z > 64)
    bad = "block " + dim_str(l.block);
  if (l.grid.x == 0 || l.grid.y == 0 || l.grid.z == 0 || l.grid.y > 65535 || l.grid.z > 65535 || l.grid.x > 2147483647u)
    bad = "grid " + dim_str(l.grid);
  if (l.smem > kDefaultSmem) {
    int optin = 0;
    {
      std::lock_guard<std::mutex> g(g_attr_mu);
      auto it = smem_optin().find(l.fn);
      if (l.fn && it != smem_optin().end()) optin = it->second;
    }
    if (static_cast<size_t>(optin) < l.smem)
      bad = std::to_string(l.smem) +
            " bytes of dynamic shared memory without cudaFuncSetAttribute(MaxDynamicSharedMemorySize)";
  }
  if (!bad.empty()) {
    fail(cudaErrorInvalidConfiguration, std::string("kernel ") + l.name + ": invalid launch: " + bad);
    return;
  }
  auto shared = std::make_shared<Launch>(std::move(l));
  cudaError_t e = enqueue(s, [shared] { execute(*shared); });
  (void)e;
}

}  // namespace medic_emu

// ---- Runtime API ----------------------------------------------------------------------------------
using namespace medic_emu;

cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
  return d == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice, "only device 0 is emulated");
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d != 0) return fail(cudaErrorInvalidDevice, "only device 0 is emulated");
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "medic CUDA emulator (CPU)");
  p->totalGlobalMem = size_t(16) << 30;
  p->sharedMemPerBlock = kDefaultSmem;
  p->sharedMemPerBlockOptin = kOptinSmem;
  p->warpSize = 32;
  p->maxThreadsPerBlock = kMaxThreads;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = kSmCount;
  p->clockRate = 1000000;
  p->memoryClockRate = 1000000;
  p->memoryBusWidth = 4096;
  p->l2CacheSize = size_t(50) << 20;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d) {
  if (d != 0) return fail(cudaErrorInvalidDevice, "only device 0 is emulated");
  if (a == cudaDevAttrMultiProcessorCount)
    *v = kSmCount;
  else if (a == cudaDevAttrMaxSharedMemoryPerBlockOptin)
    *v = static_cast<int>(kOptinSmem);
  else
    return fail(cudaErrorInvalidValue, "unsupported device attribute");
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  if (capture_forbids("cudaDeviceSynchronize")) return t_last;
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  cudaError_t e = t_last;
  t_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return t_last; }
const char* cudaGetErrorString(cudaError_t e) {
  static thread_local std::string s;
  const char* base = "unknown error";
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: base = "invalid argument"; break;
    case cudaErrorMemoryAllocation: base = "out of memory"; break;
    case cudaErrorInvalidConfiguration: base = "invalid configuration argument"; break;
    case cudaErrorInvalidDevice: base = "invalid device ordinal"; break;
    case cudaErrorInvalidResourceHandle: base = "invalid resource handle"; break;
    case cudaErrorLaunchFailure: base = "unspecified launch failure"; break;
    case cudaErrorStreamCaptureUnsupported: base = "operation not permitted when stream is capturing"; break;
    case cudaErrorStreamCaptureInvalidated: base = "operation failed due to a previous error during capture"; break;
    default: break;
  }
  s = std::string(base) + (t_detail.empty() ? "" : " [emulator: " + t_detail + "]");
  return s.c_str();
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (capture_forbids("cudaMalloc")) return t_last;
  *p = mem_alloc(bytes, false);
  return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation, "malloc failed");
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  if (capture_forbids("cudaFree")) return t_last;
  std::lock_guard<std::mutex> g(g_mem_mu);
  auto it = allocs().find(reinterpret_cast<uintptr_t>(p));
  if (it == allocs().end()) return fail(cudaErrorInvalidValue, "cudaFree of a pointer that is not a live allocation");
  bool ok = redzone_intact(it->first, it->second);
  if (!it->second.pinned) g_live_bytes -= it->second.bytes;
  if (it->second.mapped)
    munmap(p, it->second.mapped);
  else
    std::free(p);
  allocs().erase(it);
  return ok ? cudaSuccess
            : fail(cudaErrorLaunchFailure, "write past the end of a device allocation found at its cudaFree");
}
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t s) {
  if (stream_of(s)->capturing) {
    invalidate(stream_of(s));
    return fail(cudaErrorStreamCaptureUnsupported,
                "cudaMallocAsync inside a captured step (medic sizes memory before capture)");
  }
  return cudaMalloc(p, bytes);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t s) {
  if (stream_of(s)->capturing) {
    invalidate(stream_of(s));
    return fail(cudaErrorStreamCaptureUnsupported, "cudaFreeAsync inside a captured step");
  }
  return cudaFree(p);
}
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = mem_alloc(bytes, true);
  return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation, "malloc failed");
}
cudaError_t cudaFreeHost(void* p) { return cudaFree(p); }

namespace {
// Device-side ranges must lie inside one live allocation.
cudaError_t check_range(const void* p, size_t n, const char* what) {
  if (n == 0) return cudaSuccess;
  if (!find_alloc(p, n))
    return fail(cudaErrorInvalidValue,
                std::string(what) + ": device range of " + std::to_string(n) + " bytes outside any allocation");
  return cudaSuccess;
}
}  // namespace

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind k, cudaStream_t s) {
  bool dst_dev = k == cudaMemcpyHostToDevice || k == cudaMemcpyDeviceToDevice;
  bool src_dev = k == cudaMemcpyDeviceToHost || k == cudaMemcpyDeviceToDevice;
  if (dst_dev && check_range(dst, bytes, "cudaMemcpyAsync dst")) return t_last;
  if (src_dev && check_range(src, bytes, "cudaMemcpyAsync src")) return t_last;
  if (stream_of(s)->capturing && k != cudaMemcpyDeviceToDevice) {
    bool pinned = false;
    const void* host = k == cudaMemcpyHostToDevice ? src : dst;
    if (!find_alloc(host, bytes, &pinned) || !pinned) {
      invalidate(stream_of(s));
      return fail(cudaErrorStreamCaptureUnsupported,
                  "copy between the device and pageable host memory inside a captured step");
    }
  }
  if (dry_run() && k == cudaMemcpyDeviceToDevice) return cudaSuccess;  // device contents are not computed
  return enqueue(s, [=] { std::memcpy(dst, src, bytes); });
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind k) {
  if (capture_forbids("cudaMemcpy")) return t_last;
  return cudaMemcpyAsync(dst, src, bytes, k, nullptr);
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t bytes, cudaStream_t s) {
  if (check_range(p, bytes, "cudaMemsetAsync")) return t_last;
  if (dry_run()) return cudaSuccess;
  return enqueue(s, [=] { std::memset(p, v, bytes); });
}
cudaError_t cudaMemset(void* p, int v, size_t bytes) {
  if (capture_forbids("cudaMemset")) return t_last;
  return cudaMemsetAsync(p, v, bytes, nullptr);
}

cudaError_t cudaStreamCreate(cudaStream_t* s) {
  *s = new CUstream_st();
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { return cudaStreamCreate(s); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (s && s->capturing) return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamDestroy of a capturing stream");
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (stream_of(s)->capturing) {
    invalidate(stream_of(s));
    return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamSynchronize of a capturing stream");
  }
  if (capture_forbids("cudaStreamSynchronize")) return t_last;
  return cudaSuccess;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  CUstream_st* st = stream_of(s);
  if (!s) return fail(cudaErrorStreamCaptureUnsupported, "capture of the legacy default stream");
  if (st->capturing) return fail(cudaErrorInvalidValue, "stream already capturing");
  st->capturing = true;
  st->invalidated = false;
  st->ops.clear();
  std::lock_guard<std::mutex> g(g_capture_mu);
  ++g_capturing;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
  CUstream_st* st = stream_of(s);
  *g = nullptr;
  if (!st->capturing) return fail(cudaErrorInvalidValue, "stream is not capturing");
  st->capturing = false;
  {
    std::lock_guard<std::mutex> lk(g_capture_mu);
    --g_capturing;
  }
  if (st->invalidated) {
    st->ops.clear();
    return fail(cudaErrorStreamCaptureInvalidated, "the capture was invalidated by an earlier call");
  }
  *g = new CUgraph_st{std::move(st->ops)};
  st->ops.clear();
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status) {
  CUstream_st* st = stream_of(s);
  *status = !st->capturing    ? cudaStreamCaptureStatusNone
            : st->invalidated ? cudaStreamCaptureStatusInvalidated
                              : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}
cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t*, size_t* count) {
  *count = g->ops.size();
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long) {
  if (verbose()) std::fprintf(stderr, "medic emulator: graph instantiated with %zu nodes\n", g->ops.size());
  *e = new CUgraphExec_st{g->ops};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
  if (stream_of(s)->capturing) return fail(cudaErrorStreamCaptureUnsupported, "graph launch inside a capture");
  if (verbose()) std::fprintf(stderr, "medic emulator: graph launch (%zu nodes)\n", e->ops.size());
  for (const Op& op : e->ops) {
    cudaError_t r = enqueue(s, op);
    if (r != cudaSuccess) return r;
  }
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
  delete e;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  e->t = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return cudaSuccess;
}
