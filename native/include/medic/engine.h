// The Engine: one device, its memory accounting, its thread pool and its op context.
//
// Every byte the engine hands out goes through alloc()/release(), so memory() can prove that a
// program or a tensor returned what it took (tests compare memory() before and after dispose()).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "medic/ops.h"
#include "medic/tensor.h"
#include "medic/threads.h"

namespace medic {

struct CommState;

struct MemoryStats {
  int64_t live_tensors = 0;   // eager tensors not yet disposed
  int64_t live_programs = 0;  // programs not yet disposed
  int64_t host_bytes = 0;     // engine-owned host memory now
  int64_t device_bytes = 0;   // engine-owned device memory now
  int64_t peak_host_bytes = 0;
  int64_t peak_device_bytes = 0;
};

// The device side of memory: CPU (aligned malloc) or CUDA (cuda/device.cu).
struct DeviceApi {
  void* (*alloc)(size_t bytes, void* state) = nullptr;
  void (*release)(void* ptr, void* state) = nullptr;
  void (*to_device)(void* dst, const void* src, size_t bytes, void* state) = nullptr;
  void (*to_host)(void* dst, const void* src, size_t bytes, void* state) = nullptr;
  void (*synchronize)(void* state) = nullptr;
  void* state = nullptr;
};

class Engine {
 public:
  // device_index is used for CUDA only; threads <= 0 means default_thread_count().
  Engine(Device device, int device_index, int threads);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  Device device() const { return device_; }
  int device_index() const { return device_index_; }
  ThreadPool& pool() { return *pool_; }
  Context& context() { return ctx_; }

  void* alloc(size_t bytes);  // zero-filled
  void release(void* ptr, size_t bytes);
  void to_device(void* dst, const void* src, size_t bytes);
  void to_host(void* dst, const void* src, size_t bytes);
  void synchronize();

  MemoryStats memory() const;
  void count_tensor(int delta) { live_tensors_ += delta; }
  void count_program(int delta) { live_programs_ += delta; }

  std::string describe() const;  // e.g. "cpu: 2 threads, avx512"

  // Data parallel: the communicator the allreduce ops use (comm.h); replaces an earlier one.
  void attach_comm(std::unique_ptr<CommState> comm);
  CommState* comm() { return comm_.get(); }

 private:
  Device device_;
  int device_index_;
  std::unique_ptr<ThreadPool> pool_;
  Context ctx_;
  DeviceApi api_;
  std::unique_ptr<CommState> comm_;
  std::atomic<int64_t> host_bytes_{0}, device_bytes_{0}, peak_host_{0}, peak_device_{0};
  std::atomic<int64_t> live_tensors_{0}, live_programs_{0};
};

// CPU instruction sets found at run time; kernels pick their code path from these.
struct CpuFeatures {
  bool avx2 = false, fma = false, avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx512_bf16 = false, amx_bf16 = false;
};
const CpuFeatures& cpu_features();
std::string cpu_features_string();  // "avx2 fma avx512f ..."
// The kernel of the CPU's bf16 products (cpu/gemm_bf16.cpp): "amx-bf16" (tiles), "avx512bf16"
// (vdpbf16ps) or "fp32-fallback"; MEDIC_CPU_AMX=0 or emulate changes the first (doctor prints it).
const char* cpu_bf16_gemm_kernel();

// CUDA backend entry points (cuda/device.cu, or no_cuda.cpp stubs that throw in CPU builds).
int cuda_device_count();  // 0 without a usable driver/GPU; never throws
std::string cuda_describe(int device_index);
DeviceApi cuda_device_api(int device_index, Context& ctx);  // sets ctx.cuda
void cuda_release_context(Context& ctx);

}  // namespace medic
