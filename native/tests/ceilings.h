// Device helpers for the parity harness (ceilings.cu): measured ceilings and device-side random fill.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace medic::bench {

// Fill n floats with scale * (uniform(-1, 1) ~ hash of (seed, i)): timing inputs, never zeros.
void fill_random(float* p, int64_t n, uint64_t seed, float scale, cudaStream_t s);

struct CopyCeiling {
  double kernel_gbs = 0;  // float4 copy kernel, bytes read + written per second
  double memcpy_gbs = 0;  // cudaMemcpyAsync device to device, same count
  double bytes = 0;       // bytes moved per copy (read + write)
};
CopyCeiling measure_copy(size_t bytes_each_way, int reps, cudaStream_t s);

struct MmaCeiling {
  double tflops = 0;  // bf16 mma.sync m16n8k16 with f32 accumulate, registers only
  double ms = 0;
};
MmaCeiling measure_mma(int sm_count, int reps, cudaStream_t s);

struct H2DCeiling {
  double pageable_gbs = 0;  // what Engine::to_device does now (pageable host memory)
  double pinned_gbs = 0;    // from cudaMallocHost memory
  double bytes = 0;
};
H2DCeiling measure_h2d(size_t bytes, int reps, cudaStream_t s);

}  // namespace medic::bench
