#include "medic/engine.h"

#include "medic/comm.h"

#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace medic {

namespace {

// Buffers of 16 MiB and more (weights, gradients, moments, a program's activation arena) start on a
// 2 MiB boundary and are offered to transparent huge pages before they are first touched: the GEMM
// packing and AdamW stream through hundreds of MB per step, and 4 KiB pages cost them TLB misses
// (bench/README.md: the best ViT-B step 3.5 % faster in both precisions with huge pages). Where THP is
// "madvise" (a common default) nothing else asks for them; where it is "never" the advice is ignored.
// From 16 MiB up, rounding the size to whole 2 MiB pages adds at most 1/8 (the ViT-B buffers: < 1 %).
constexpr size_t kHuge = size_t(2) << 20, kHugeFrom = size_t(16) << 20;

void* host_alloc(size_t bytes, void*) {
  const size_t align = bytes >= kHugeFrom ? kHuge : 64;
  size_t rounded = (bytes + align - 1) / align * align;
  if (!rounded) rounded = align;
  void* p = std::aligned_alloc(align, rounded);
  if (!p) throw Error("out of host memory: could not allocate " + std::to_string(bytes) + " bytes");
#ifdef MADV_HUGEPAGE
  if (align == kHuge) madvise(p, rounded, MADV_HUGEPAGE);  // advice only: a failure changes nothing
#endif
  std::memset(p, 0, rounded);
  return p;
}
void host_release(void* p, void*) { std::free(p); }
void host_copy(void* dst, const void* src, size_t bytes, void*) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void host_sync(void*) {}

void bump_peak(std::atomic<int64_t>& peak, int64_t now) {
  int64_t prev = peak.load();
  while (now > prev && !peak.compare_exchange_weak(prev, now)) {
  }
}

}  // namespace

Engine::Engine(Device device, int device_index, int threads)
    : device_(device),
      device_index_(device_index),
      pool_(new ThreadPool(threads > 0 ? threads : default_thread_count())) {
  ctx_.device = device;
  ctx_.pool = pool_.get();
  if (device == Device::CPU) {
    api_.alloc = host_alloc;
    api_.release = host_release;
    api_.to_device = host_copy;
    api_.to_host = host_copy;
    api_.synchronize = host_sync;
  } else {
    if (!cuda_compiled())
      throw Error("device cuda: this binary was built without CUDA (nvcc was not found at build time)");
    int n = cuda_device_count();
    if (device_index < 0 || device_index >= n)
      throw Error("device cuda:" + std::to_string(device_index) + ": " + std::to_string(n) + " CUDA device(s) visible");
    api_ = cuda_device_api(device_index, ctx_);
  }
}

Engine::~Engine() {
  attach_comm(nullptr);
  if (device_ == Device::CUDA) cuda_release_context(ctx_);
}

void Engine::attach_comm(std::unique_ptr<CommState> comm) {
  if (comm_ && comm_->device_release) {
    try {
      synchronize();  // no collective may still be queued on the streams being released
    } catch (...) {
    }
    comm_->device_release(*comm_);
  }
  comm_ = std::move(comm);
  ctx_.comm = comm_.get();
}

void* Engine::alloc(size_t bytes) {
  void* p = api_.alloc(bytes, api_.state);
  if (device_ == Device::CPU) {
    bump_peak(peak_host_, host_bytes_ += static_cast<int64_t>(bytes));
  } else {
    bump_peak(peak_device_, device_bytes_ += static_cast<int64_t>(bytes));
  }
  return p;
}

void Engine::release(void* ptr, size_t bytes) {
  if (!ptr) return;
  api_.release(ptr, api_.state);
  if (device_ == Device::CPU)
    host_bytes_ -= static_cast<int64_t>(bytes);
  else
    device_bytes_ -= static_cast<int64_t>(bytes);
}

void Engine::to_device(void* dst, const void* src, size_t bytes) { api_.to_device(dst, src, bytes, api_.state); }
void Engine::to_host(void* dst, const void* src, size_t bytes) { api_.to_host(dst, src, bytes, api_.state); }
void Engine::synchronize() { api_.synchronize(api_.state); }

MemoryStats Engine::memory() const {
  MemoryStats s;
  s.live_tensors = live_tensors_;
  s.live_programs = live_programs_;
  s.host_bytes = host_bytes_;
  s.device_bytes = device_bytes_;
  s.peak_host_bytes = peak_host_;
  s.peak_device_bytes = peak_device_;
  return s;
}

std::string Engine::describe() const {
  if (device_ == Device::CPU) return "cpu: " + std::to_string(pool_->size()) + " threads, " + cpu_features_string();
  return "cuda:" + std::to_string(device_index_) + ": " + cuda_describe(device_index_);
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures c;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    c.avx2 = __builtin_cpu_supports("avx2");
    c.fma = __builtin_cpu_supports("fma");
    c.avx512f = __builtin_cpu_supports("avx512f");
    c.avx512bw = __builtin_cpu_supports("avx512bw");
    c.avx512dq = __builtin_cpu_supports("avx512dq");
    c.avx512vl = __builtin_cpu_supports("avx512vl");
#if defined(__GNUC__) && __GNUC__ >= 12
    c.avx512_bf16 = __builtin_cpu_supports("avx512bf16");
    c.amx_bf16 = __builtin_cpu_supports("amx-bf16");
#endif
#endif
    // MEDIC_CPU_ISA=avx512|avx2|scalar caps dispatch (tests run the narrower paths on a wider machine;
    // avx512 keeps AVX-512 but drops the bf16 dot products, so bf16 ops take their fp32 fallback).
    const char* cap = std::getenv("MEDIC_CPU_ISA");
    if (cap && std::string(cap) == "avx512") c.avx512_bf16 = c.amx_bf16 = false;
    if (cap && std::string(cap) == "avx2")
      c.avx512f = c.avx512bw = c.avx512dq = c.avx512vl = c.avx512_bf16 = c.amx_bf16 = false;
    if (cap && std::string(cap) == "scalar") c = CpuFeatures{};
    return c;
  }();
  return f;
}

std::string cpu_features_string() {
  const CpuFeatures& f = cpu_features();
  std::string s;
  auto add = [&](bool on, const char* name) {
    if (on) s += (s.empty() ? "" : " ") + std::string(name);
  };
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.avx512f, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512dq, "avx512dq");
  add(f.avx512vl, "avx512vl");
  add(f.avx512_bf16, "avx512bf16");
  add(f.amx_bf16, "amx-bf16");
  return s.empty() ? "scalar" : s;
}

}  // namespace medic
