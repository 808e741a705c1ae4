// The CUDA device: discovery, memory, copies, and the engine's stream.
#include <dlfcn.h>

#include <cstdio>

#include "common.cuh"
#include "medic/engine.h"

namespace medic {

bool cuda_compiled() { return true; }

namespace {
// A missing driver and a too-old driver give the same cudaGetDeviceCount error (35), so look for
// libcuda.so.1 first to tell the user which one it is.
bool driver_library_present() {
#if defined(MEDIC_CUDA_EMU)
  return true;  // the CPU emulator (native/tests/emu) stands in for the driver
#endif
  void* h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (!h) return false;
  dlclose(h);
  return true;
}
}  // namespace

int cuda_device_count() {
  if (!driver_library_present()) return 0;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string cuda_describe(int index) {
  if (!driver_library_present()) return "no NVIDIA driver (libcuda.so.1 not found)";
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("driver present but unusable: ") + cudaGetErrorString(e) +
           " (CUDA 13 needs driver R580 or newer)";
  }
  if (index < 0 || index >= n)
    return "no CUDA device " + std::to_string(index) + " (" + std::to_string(n) + " visible)";
  cudaDeviceProp p{};
  cuda::check(cudaGetDeviceProperties(&p, index), "cudaGetDeviceProperties");
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s, compute capability %d.%d, %.1f GiB, %d SMs, driver CUDA %d.%d, runtime %d.%d",
                p.name, p.major, p.minor, p.totalGlobalMem / 1073741824.0, p.multiProcessorCount, driver / 1000,
                (driver % 1000) / 10, runtime / 1000, (runtime % 1000) / 10);
  return buf;
}

namespace {
void* dev_alloc(size_t bytes, void* state) {
  auto* c = static_cast<cuda::CudaContext*>(state);
  void* p = nullptr;
  size_t n = bytes ? bytes : 1;
  cuda::check(cudaMallocAsync(&p, n, c->stream), "cudaMallocAsync");
  cuda::check(cudaMemsetAsync(p, 0, n, c->stream), "cudaMemsetAsync");
  return p;
}
void dev_release(void* p, void* state) {
  auto* c = static_cast<cuda::CudaContext*>(state);
  cudaFreeAsync(p, c->stream);
}
void dev_to_device(void* dst, const void* src, size_t bytes, void* state) {
  auto* c = static_cast<cuda::CudaContext*>(state);
  cuda::check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream), "copy to device");
  cuda::check(cudaStreamSynchronize(c->stream), "copy to device");
}
void dev_to_host(void* dst, const void* src, size_t bytes, void* state) {
  auto* c = static_cast<cuda::CudaContext*>(state);
  cuda::check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream), "copy to host");
  cuda::queue_fault_copy(*c);
  cuda::check(cudaStreamSynchronize(c->stream), "copy to host");
  cuda::throw_fault(*c);
}
void dev_sync(void* state) {
  auto* c = static_cast<cuda::CudaContext*>(state);
  cuda::queue_fault_copy(*c);
  cuda::check(cudaStreamSynchronize(c->stream), "stream synchronize");
  cuda::throw_fault(*c);
}
}  // namespace

void* cuda::workspace(cuda::CudaContext& c, size_t bytes) {
  if (bytes <= c.workspace_bytes) return c.workspace;
  cudaStreamCaptureStatus status;
  cuda::check(cudaStreamIsCapturing(c.stream, &status), "cudaStreamIsCapturing");
  if (status != cudaStreamCaptureStatusNone)
    throw Error("CUDA workspace must grow during graph capture: run the program once uncaptured first");
  if (c.workspace) cuda::check(cudaFreeAsync(c.workspace, c.stream), "cudaFreeAsync (workspace)");
  size_t grown = bytes + bytes / 4;
  cuda::check(cudaMallocAsync(&c.workspace, grown, c.stream), "cudaMallocAsync (workspace)");
  c.workspace_bytes = grown;
  return c.workspace;
}

void cuda::queue_fault_copy(cuda::CudaContext& c) {
  cuda::check(cudaMemcpyAsync(c.fault_host, c.fault, sizeof(cuda::DeviceFault), cudaMemcpyDeviceToHost, c.stream),
              "fault check");
}

void cuda::throw_fault(cuda::CudaContext& c) {
  const cuda::DeviceFault f = *c.fault_host;
  if (f.code == cuda::kFaultNone) return;
  c.fault_host->code = cuda::kFaultNone;
  cuda::check(cudaMemsetAsync(c.fault, 0, sizeof f, c.stream), "fault reset");
  cuda::check(cudaStreamSynchronize(c.stream), "fault reset");
  const std::string v = std::to_string(f.value), n = std::to_string(f.bound), w = std::to_string(f.where);
  switch (f.code) {
    case cuda::kFaultGatherIndex:
      throw Error("gather_rows: index " + v + " out of range [0, " + n + ") at row " + w +
                  " (found on the GPU; the row was skipped)");
    case cuda::kFaultScatterIndex:
      throw Error("scatter_rows: index " + v + " out of range [0, " + n + ") at row " + w +
                  " (found on the GPU; the row was skipped)");
    case cuda::kFaultLabel:
      throw Error("cross_entropy: label " + v + " at row " + w + " is outside [0, " + n + ") (found on the GPU)");
    default: throw Error("a CUDA kernel reported fault code " + std::to_string(f.code));
  }
}

DeviceApi cuda_device_api(int index, Context& ctx) {
  auto* c = new cuda::CudaContext();
  c->device = index;
  cuda::check(cudaSetDevice(index), "cudaSetDevice");
  cuda::check(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "cudaStreamCreate");
  cuda::check(cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, index), "cudaDeviceGetAttribute");
  cuda::check(cudaMalloc(&c->fault, sizeof(cuda::DeviceFault)), "cudaMalloc (fault record)");
  cuda::check(cudaMemset(c->fault, 0, sizeof(cuda::DeviceFault)), "cudaMemset (fault record)");
  cuda::check(cudaMallocHost(&c->fault_host, sizeof(cuda::DeviceFault)), "cudaMallocHost (fault record)");
  *c->fault_host = cuda::DeviceFault{};
  ctx.cuda = c;
  DeviceApi api;
  api.alloc = dev_alloc;
  api.release = dev_release;
  api.to_device = dev_to_device;
  api.to_host = dev_to_host;
  api.synchronize = dev_sync;
  api.state = c;
  return api;
}

void cuda_release_context(Context& ctx) {
  auto* c = static_cast<cuda::CudaContext*>(ctx.cuda);
  if (!c) return;
  cudaStreamSynchronize(c->stream);
  if (c->workspace) cudaFree(c->workspace);
  if (c->fault) cudaFree(c->fault);
  if (c->fault_host) cudaFreeHost(c->fault_host);
  cudaStreamDestroy(c->stream);
  delete c;
  ctx.cuda = nullptr;
}

}  // namespace medic
