// medic_emu_selftest: proves that the CPU emulator (cuda_emu.h) computes what the PTX ISA says and
// reports the faults it claims to report. Written as CUDA, translated like the engine's sources.
//
//   medic_emu_selftest     prints PASS/FAIL per check, exits 1 on any failure
//
// Checks: mma.sync + ldmatrix in the canonical CUTLASS-style use (A row-major through ldmatrix.x4,
// B [k][n] through ldmatrix.x4.trans) give an exact 16x8x16 product of small integers; shuffles;
// a barrier inside a divergent branch, a barrier after an early return and a half-warp shuffle are
// reported as deadlocks; a write one element past an allocation is caught; invalid launches fail, and
// so does a block above the kernel's __launch_bounds__;
// more than 48 KiB of dynamic shared memory needs cudaFuncSetAttribute; static shared memory a block
// never wrote reads as NaN; cp.async lands at its wait_group (not before), with its zero fill; a
// captured graph runs when
// launched (not when captured) and allocation inside a capture invalidates it.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "mma.cuh"

namespace {

using medic::cuda::mma::a_col;
using medic::cuda::mma::a_row;
using medic::cuda::mma::bk_col;
using medic::cuda::mma::bk_row;

int failures = 0;

void report(bool ok, const std::string& name, const std::string& detail = "") {
  std::printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.empty() ? "" : ": ", detail.c_str());
  if (!ok) ++failures;
}

// The launch status: the error of the launch itself, else the error the kernel raised.
std::string launch_error() {
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? "" : cudaGetErrorString(e);
}

// D[16][8] = A[16][16] B[16][8] for one warp: A row-major and B [k][n] in shared memory, loaded with
// ldmatrix (A) and ldmatrix.trans (B), the n 0-7 tile of the x4 load feeding one mma.
__global__ void mma_tile_kernel(const float* A, const float* B, float* D) {
  __shared__ __align__(16) __nv_bfloat16 sA[16 * 16];
  __shared__ __align__(16) __nv_bfloat16 sB[16 * 16];  // [k][n], n padded to 16
  const int lane = threadIdx.x;
  for (int i = lane; i < 256; i += 32) {
    sA[i] = __float2bfloat16(A[i]);
    const int k = i / 16, n = i % 16;
    sB[i] = __float2bfloat16(n < 8 ? B[k * 8 + n] : 0.0f);
  }
  __syncthreads();
  uint32_t a[4], b[4];
  medic::cuda::mma::ldsm_x4(a, sA + a_row(lane) * 16 + a_col(lane));
  medic::cuda::mma::ldsm_x4_t(b, sB + bk_row(lane) * 16 + bk_col(lane));
  float d[4] = {0, 0, 0, 0};
  medic::cuda::mma::mma_bf16(d, a, b[0], b[1]);
  const int g = lane >> 2, t = lane & 3;
  D[g * 8 + 2 * t] = d[0];
  D[g * 8 + 2 * t + 1] = d[1];
  D[(g + 8) * 8 + 2 * t] = d[2];
  D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

__global__ void shfl_kernel(int* out) {
  int v = threadIdx.x * 10;
  v += __shfl_xor_sync(0xffffffffu, v, 1);  // lanes 2i, 2i+1 -> 20 i * 2 + 10
  out[threadIdx.x] = v;
}

__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x < 16) __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void early_return_kernel(int* out) {
  if (threadIdx.x == 0) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void half_warp_shfl_kernel(int* out) {
  int v = threadIdx.x;
  if (threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

__global__ void past_end_kernel(float* p, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) p[i] = 1.0f;  // the bug: <= instead of <
}

__global__ void big_smem_kernel(float* out) {
  extern __shared__ __align__(16) unsigned char smem[];
  float* s = reinterpret_cast<float*>(smem);
  s[threadIdx.x] = static_cast<float>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}

// Block 0 fills its shared array, block 1 reads its own without writing it (a bug): on a GPU that is
// whatever the memory held, here NaN (not block 0's values).
__global__ void stale_shared_kernel(float* out) {
  __shared__ float s[32];
  if (blockIdx.x == 0) s[threadIdx.x] = 1.0f;
  __syncthreads();
  out[blockIdx.x * 32 + threadIdx.x] = s[threadIdx.x];
}

__global__ void __launch_bounds__(64) bounded_kernel(int* out) { out[threadIdx.x] = 1; }

__global__ void add_one_kernel(float* p, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] += 1.0f;
}

void check_mma() {
  std::vector<float> A(256), B(128), D(128, -1.0f), ref(128, 0.0f);
  for (int i = 0; i < 256; ++i) A[i] = static_cast<float>((i * 7) % 11 - 5);  // small integers: exact in bf16
  for (int i = 0; i < 128; ++i) B[i] = static_cast<float>((i * 5) % 9 - 4);
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n)
      for (int k = 0; k < 16; ++k) ref[m * 8 + n] += A[m * 16 + k] * B[k * 8 + n];
  float *dA, *dB, *dD;
  cudaMalloc(&dA, 256 * 4);
  cudaMalloc(&dB, 128 * 4);
  cudaMalloc(&dD, 128 * 4);
  cudaMemcpy(dA, A.data(), 256 * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dB, B.data(), 128 * 4, cudaMemcpyHostToDevice);
  mma_tile_kernel<<<1, 32>>>(dA, dB, dD);
  std::string err = launch_error();
  cudaMemcpy(D.data(), dD, 128 * 4, cudaMemcpyDeviceToHost);
  int wrong = 0;
  for (int i = 0; i < 128; ++i) wrong += D[i] != ref[i];
  report(err.empty() && wrong == 0, "ldmatrix + ldmatrix.trans + mma.m16n8k16 give the exact 16x8x16 product",
         err.empty() ? std::to_string(wrong) + " of 128 wrong" : err);
  cudaFree(dA);
  cudaFree(dB);
  cudaFree(dD);
}

void check_shfl() {
  int* d;
  cudaMalloc(&d, 64 * 4);
  shfl_kernel<<<1, 64>>>(d);
  std::string err = launch_error();
  std::vector<int> h(64);
  cudaMemcpy(h.data(), d, 64 * 4, cudaMemcpyDeviceToHost);
  int wrong = 0;
  for (int i = 0; i < 64; ++i) wrong += h[i] != i * 10 + (i ^ 1) * 10;
  report(err.empty() && wrong == 0, "__shfl_xor_sync exchanges between lanes", err);
  cudaFree(d);
}

// The kernel must fail and its error must contain `expect`.
void check_fault(const std::string& name, const std::function<void(int*)>& launch, const char* expect) {
  int* d;
  cudaMalloc(&d, 64 * 4);
  launch(d);
  std::string err = launch_error();
  report(err.find(expect) != std::string::npos, name, err.empty() ? "no error reported" : err);
  cudaFree(d);
}

void check_past_end() {
  float* p;
  cudaMalloc(&p, 100 * 4);
  past_end_kernel<<<1, 128>>>(p, 100);
  std::string err = launch_error();
  report(err.find("write past the end of a 400-byte device allocation") != std::string::npos,
         "a write one element past an allocation is caught", err.empty() ? "no error reported" : err);
  cudaFree(p);
  cudaGetLastError();
}

void check_launch_limits() {
  int* d;
  cudaMalloc(&d, 4);
  divergent_barrier_kernel<<<1, 2048>>>(d);
  std::string a = launch_error();
  divergent_barrier_kernel<<<dim3(1, 70000), 32>>>(d);
  std::string b = launch_error();
  report(a.find("invalid configuration") != std::string::npos && b.find("invalid configuration") != std::string::npos,
         "2048 threads per block and grid.y = 70000 are invalid launches", a + " | " + b);
  cudaFree(d);
}

void check_launch_bounds() {
  int* d;
  cudaMalloc(&d, 128 * 4);
  bounded_kernel<<<1, 64>>>(d);
  std::string ok = launch_error();
  bounded_kernel<<<1, 128>>>(d);
  std::string over = launch_error();
  report(ok.empty() && over.find("too many resources requested for launch") != std::string::npos,
         "a block above the kernel's __launch_bounds__ fails the launch", over.empty() ? "no error reported" : over);
  cudaFree(d);
}

void check_dynamic_smem() {
  float* d;
  cudaMalloc(&d, 256 * 4);
  const size_t bytes = 64 * 1024;
  big_smem_kernel<<<1, 256, bytes>>>(d);
  std::string before = launch_error();
  cudaFuncSetAttribute(big_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  big_smem_kernel<<<1, 256, bytes>>>(d);
  std::string after = launch_error();
  std::vector<float> h(256);
  cudaMemcpy(h.data(), d, 256 * 4, cudaMemcpyDeviceToHost);
  report(before.find("cudaFuncSetAttribute") != std::string::npos && after.empty() && h[0] == 1.0f && h[255] == 0.0f,
         "64 KiB of dynamic shared memory needs cudaFuncSetAttribute, then works", before + " | " + after);
  cudaFree(d);
}

void check_stale_shared() {
  float* d;
  cudaMalloc(&d, 64 * 4);
  stale_shared_kernel<<<2, 32>>>(d);
  std::string err = launch_error();
  std::vector<float> h(64);
  cudaMemcpy(h.data(), d, 64 * 4, cudaMemcpyDeviceToHost);
  int nan = 0, one = 0;
  for (int i = 0; i < 32; ++i) one += h[i] == 1.0f;
  for (int i = 32; i < 64; ++i) nan += std::isnan(h[i]);
  report(err.empty() && one == 32 && nan == 32,
         "static shared memory a block never wrote reads as NaN, not the last block's data",
         std::to_string(nan) + " of 32 NaN");
  cudaFree(d);
}

// Each thread copies 16 bytes into shared memory by cp.async (thread 31 only 8: the rest zero-filled),
// reads its own chunk before waiting (the emulator lands copies at the wait, so this is the stale 0xFF
// shared memory, NaN), then, after the wait and a barrier, its neighbour's chunk.
__global__ void cp_async_kernel(const float* src, float* before, float* after) {
  __shared__ __align__(16) float s[32 * 4];
  const int t = threadIdx.x;
  medic::cuda::mma::cp_async16(s + 4 * t, src + 4 * t, t == 31 ? 8 : 16);
  medic::cuda::mma::cp_async_commit();
  before[t] = s[4 * t];
  medic::cuda::mma::cp_async_wait<0>();
  __syncthreads();
  const int n = (t + 1) % 32;
  for (int k = 0; k < 4; ++k) after[4 * t + k] = s[4 * n + k];
}

void check_cp_async() {
  std::vector<float> h(128);
  for (int i = 0; i < 128; ++i) h[i] = static_cast<float>(i + 1);
  float *src, *before, *after;
  cudaMalloc(&src, 128 * 4);
  cudaMalloc(&before, 32 * 4);
  cudaMalloc(&after, 128 * 4);
  cudaMemcpy(src, h.data(), 128 * 4, cudaMemcpyHostToDevice);
  cp_async_kernel<<<1, 32>>>(src, before, after);
  std::string err = launch_error();
  std::vector<float> b(32), a(128);
  cudaMemcpy(b.data(), before, 32 * 4, cudaMemcpyDeviceToHost);
  cudaMemcpy(a.data(), after, 128 * 4, cudaMemcpyDeviceToHost);
  int stale = 0, right = 0;
  for (int t = 0; t < 32; ++t) {
    stale += std::isnan(b[t]);
    const int n = (t + 1) % 32;
    for (int k = 0; k < 4; ++k) right += a[4 * t + k] == (n == 31 && k >= 2 ? 0.0f : h[4 * n + k]);
  }
  report(err.empty() && stale == 32 && right == 128,
         "cp.async lands at its wait_group (stale before it), zero-filling past src-size",
         std::to_string(stale) + " of 32 stale before the wait, " + std::to_string(right) + " of 128 right after");
  cudaFree(src);
  cudaFree(before);
  cudaFree(after);
}

void check_graph() {
  cudaStream_t s;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  float* d;
  cudaMalloc(&d, 64 * 4);
  cudaMemsetAsync(d, 0, 64 * 4, s);
  cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
  add_one_kernel<<<1, 64, 0, s>>>(d, 64);
  add_one_kernel<<<1, 64, 0, s>>>(d, 64);
  cudaGraph_t g = nullptr;
  cudaError_t end = cudaStreamEndCapture(s, &g);
  float h = -1;
  cudaMemcpy(&h, d, 4, cudaMemcpyDeviceToHost);
  const bool untouched = h == 0.0f;
  cudaGraphExec_t e = nullptr;
  cudaGraphInstantiate(&e, g, 0);
  cudaGraphLaunch(e, s);
  cudaGraphLaunch(e, s);
  cudaStreamSynchronize(s);
  cudaMemcpy(&h, d, 4, cudaMemcpyDeviceToHost);
  report(end == cudaSuccess && untouched && h == 4.0f, "a captured graph runs at each launch, not at capture",
         "value " + std::to_string(h));
  cudaGraphExecDestroy(e);
  cudaGraphDestroy(g);

  cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
  void* p = nullptr;
  cudaError_t alloc = cudaMallocAsync(&p, 256, s);
  cudaGraph_t g2 = nullptr;
  cudaError_t end2 = cudaStreamEndCapture(s, &g2);
  cudaGetLastError();
  report(alloc == cudaErrorStreamCaptureUnsupported && end2 == cudaErrorStreamCaptureInvalidated && g2 == nullptr,
         "an allocation inside a capture fails and invalidates it");
  cudaFree(d);
  cudaStreamDestroy(s);
}

}  // namespace

int main() {
  check_mma();
  check_shfl();
  check_fault(
      "a barrier inside a divergent branch is a deadlock", [](int* d) { divergent_barrier_kernel<<<1, 32>>>(d); },
      "16 threads wait in __syncthreads");
  check_fault(
      "a barrier after an early return is a deadlock", [](int* d) { early_return_kernel<<<1, 64>>>(d); },
      "1 threads have returned");
  check_fault(
      "a shuffle by half a warp is a deadlock", [](int* d) { half_warp_shfl_kernel<<<1, 32>>>(d); },
      "wait in __shfl_xor_sync");
  check_past_end();
  check_launch_limits();
  check_launch_bounds();
  check_dynamic_smem();
  check_stale_shared();
  check_cp_async();
  check_graph();
  std::printf("emulator self-test: %d failure(s)\n", failures);
  return failures ? 1 : 0;
}
