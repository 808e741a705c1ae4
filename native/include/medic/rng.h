// Counter-based random numbers shared by CPU and CUDA kernels.
//
// Every random value is a pure function of (seed, stream, index), so a kernel can produce element i
// anywhere, in any order, on any backend, and get the same number: CPU and CUDA init agree bit for bit,
// and a resumed run reproduces the masks and drop-path of an uninterrupted one.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MEDIC_HD __host__ __device__ __forceinline__
#else
#define MEDIC_HD inline
#endif

namespace medic {

MEDIC_HD uint64_t mix64(uint64_t z) {  // splitmix64 finaliser
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

MEDIC_HD uint64_t rng_bits(uint64_t seed, uint64_t stream, uint64_t index) {
  return mix64(mix64(seed ^ mix64(stream + 0x632be59bd9b4e019ull)) + index);
}

// Uniform in [0, 1) with 24 random bits (exactly representable in f32).
MEDIC_HD float rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  return static_cast<float>(rng_bits(seed, stream, index) >> 40) * (1.0f / 16777216.0f);
}

// Uniform in (0, 1) with 53 bits, for inverse-CDF sampling.
MEDIC_HD double rng_uniform_open(uint64_t seed, uint64_t stream, uint64_t index) {
  return (static_cast<double>(rng_bits(seed, stream, index) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

}  // namespace medic
