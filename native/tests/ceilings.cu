// Ceilings measured in the same run as the kernel timings (so the percentages compare like with like):
// device copy bandwidth, bf16 tensor-core rate of mma.sync from registers, host-to-device copies.
// The bf16 GEMM ceiling of the device (about 790 TFLOP/s, cuBLAS through PyTorch, docs/GPU.md) uses wgmma;
// mma.sync reaches a fraction of it on Hopper, so both figures are reported.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "ceilings.h"
#include "medic/tensor.h"

namespace medic::bench {

namespace {

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}

__device__ __forceinline__ uint32_t hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}

__global__ void fill_random_kernel(float* p, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint32_t h = hash32(seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(i));
    p[i] = scale * ((h >> 8) * (2.0f / 16777216.0f) - 1.0f);
  }
}

__global__ void copy_kernel(const float4* __restrict src, float4* __restrict dst, int64_t n4) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n4;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = src[i];
}

// 8 independent accumulator chains per warp hide the mma latency; operands stay in registers, so
// this is the tensor-core issue rate of mma.sync, not a memory figure.
constexpr int kChains = 8;
__global__ void mma_loop_kernel(float* out, int iters) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const uint32_t t = threadIdx.x & 7;
  const uint32_t a = (0x3A80u + t) | ((0x3A80u + t) << 16);  // bf16 pairs near 2^-10: no overflow
  const uint32_t b = (0x3A00u + t) | ((0x3A00u + t) << 16);
  float c[kChains][4] = {};
  for (int i = 0; i < iters; ++i) {
#pragma unroll
    for (int k = 0; k < kChains; ++k)
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
          : "+f"(c[k][0]), "+f"(c[k][1]), "+f"(c[k][2]), "+f"(c[k][3])
          : "r"(a), "r"(a ^ 1u), "r"(a ^ 2u), "r"(a ^ 3u), "r"(b), "r"(b ^ 1u));
  }
  float s = 0;
#pragma unroll
  for (int k = 0; k < kChains; ++k) s += c[k][0] + c[k][1] + c[k][2] + c[k][3];
  if (s == -1.0f) out[blockIdx.x * blockDim.x + threadIdx.x] = s;  // never true; keeps the loop alive
#endif
}

template <class F>
double median_ms(int reps, cudaStream_t s, F&& launch) {
  cudaEvent_t e0, e1;
  ck(cudaEventCreate(&e0), "cudaEventCreate");
  ck(cudaEventCreate(&e1), "cudaEventCreate");
  launch();  // warm-up
  ck(cudaStreamSynchronize(s), "warm-up");
  std::vector<float> ms;
  for (int r = 0; r < reps; ++r) {
    ck(cudaEventRecord(e0, s), "cudaEventRecord");
    launch();
    ck(cudaEventRecord(e1, s), "cudaEventRecord");
    ck(cudaEventSynchronize(e1), "cudaEventSynchronize");
    float m = 0;
    ck(cudaEventElapsedTime(&m, e0, e1), "cudaEventElapsedTime");
    ms.push_back(m);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

void fill_random(float* p, int64_t n, uint64_t seed, float scale, cudaStream_t s) {
  if (n <= 0) return;
  int blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 65536));
  fill_random_kernel<<<blocks, 256, 0, s>>>(p, n, seed, scale);
  ck(cudaGetLastError(), "fill_random");
}

CopyCeiling measure_copy(size_t bytes, int reps, cudaStream_t s) {
  CopyCeiling r;
  bytes = bytes / 16 * 16;
  float *src = nullptr, *dst = nullptr;
  ck(cudaMalloc(&src, bytes), "cudaMalloc (copy ceiling)");
  ck(cudaMalloc(&dst, bytes), "cudaMalloc (copy ceiling)");
  fill_random(src, static_cast<int64_t>(bytes / 4), 7, 1.0f, s);
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  int64_t n4 = static_cast<int64_t>(bytes / 16);
  double k_ms = median_ms(reps, s, [&] {
    copy_kernel<<<sms * 8, 512, 0, s>>>(reinterpret_cast<const float4*>(src), reinterpret_cast<float4*>(dst), n4);
  });
  ck(cudaGetLastError(), "copy_kernel");
  double m_ms =
      median_ms(reps, s, [&] { ck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync"); });
  r.bytes = 2.0 * static_cast<double>(bytes);
  r.kernel_gbs = r.bytes / (k_ms * 1e-3) / 1e9;
  r.memcpy_gbs = r.bytes / (m_ms * 1e-3) / 1e9;
  cudaFree(src);
  cudaFree(dst);
  return r;
}

MmaCeiling measure_mma(int sm_count, int reps, cudaStream_t s) {
  MmaCeiling r;
  float* out = nullptr;
  const int blocks = sm_count * 8, threads = 256, iters = 4096;
  ck(cudaMalloc(&out, sizeof(float) * blocks * threads), "cudaMalloc (mma ceiling)");
  r.ms = median_ms(reps, s, [&] { mma_loop_kernel<<<blocks, threads, 0, s>>>(out, iters); });
  ck(cudaGetLastError(), "mma_loop_kernel");
  double mmas = static_cast<double>(blocks) * (threads / 32) * iters * kChains;
  r.tflops = mmas * 2.0 * 16 * 8 * 16 / (r.ms * 1e-3) / 1e12;
  cudaFree(out);
  return r;
}

H2DCeiling measure_h2d(size_t bytes, int reps, cudaStream_t s) {
  H2DCeiling r;
  r.bytes = static_cast<double>(bytes);
  std::vector<uint8_t> pageable(bytes, 1);
  void *pinned = nullptr, *dev = nullptr;
  ck(cudaMallocHost(&pinned, bytes), "cudaMallocHost");
  std::memset(pinned, 1, bytes);
  ck(cudaMalloc(&dev, bytes), "cudaMalloc (h2d)");
  double pg = median_ms(
      reps, s, [&] { ck(cudaMemcpyAsync(dev, pageable.data(), bytes, cudaMemcpyHostToDevice, s), "h2d pageable"); });
  double pn =
      median_ms(reps, s, [&] { ck(cudaMemcpyAsync(dev, pinned, bytes, cudaMemcpyHostToDevice, s), "h2d pinned"); });
  r.pageable_gbs = r.bytes / (pg * 1e-3) / 1e9;
  r.pinned_gbs = r.bytes / (pn * 1e-3) / 1e9;
  cudaFreeHost(pinned);
  cudaFree(dev);
  return r;
}

}  // namespace medic::bench
