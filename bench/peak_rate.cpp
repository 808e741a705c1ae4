// The instruction-rate ceilings of one core, for judging the GEMM kernels against them: 24 independent
// chains of 512-bit fp32 FMAs (32 flops each) and of vdpbf16ps (16 lanes x 2 bf16 products = 64 flops
// each), timed on one thread. Run one copy per core at the same time for the whole CPU's ceiling.
//   g++ -O2 -o /tmp/peak_rate bench/peak_rate.cpp && /tmp/peak_rate
// (Needs AVX-512 and AVX512-BF16; bench/README.md, "How close the kernels are to the CPU's ceiling".)
#include <immintrin.h>

#include <chrono>
#include <cstdio>

namespace {

constexpr int kChains = 24;  // enough independent accumulators to cover the latency on two pipes

// The chains' sum, so that none of them is dead code.
__attribute__((target("avx512f"))) float lane_sum(const __m512 (&c)[kChains]) {
  alignas(64) float lanes[16];
  __m512 s = c[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, c[i]);
  _mm512_store_ps(lanes, s);
  float total = 0;
  for (float x : lanes) total += x;
  return total;
}

__attribute__((target("avx512f"))) float fma_chains(long iters) {
  __m512 c[kChains];
  for (int i = 0; i < kChains; ++i) c[i] = _mm512_set1_ps(0.001f * i);
  __m512 a = _mm512_set1_ps(0.999f);
  const __m512 b = _mm512_set1_ps(1e-4f);
  for (long k = 0; k < iters; ++k) {
#pragma GCC unroll 24
    for (int i = 0; i < kChains; ++i) c[i] = _mm512_fmadd_ps(c[i], a, b);
    __asm__ volatile("" : "+v"(a));  // keeps the loop from being folded
  }
  return lane_sum(c);
}

__attribute__((target("avx512f,avx512bf16"))) float dpbf16_chains(long iters) {
  __m512 c[kChains];
  for (int i = 0; i < kChains; ++i) c[i] = _mm512_set1_ps(0.001f * i);
  __m512bh a = reinterpret_cast<__m512bh>(_mm512_set1_epi32(0x3f803f80));  // pairs of 1.0
  const __m512bh b = reinterpret_cast<__m512bh>(_mm512_set1_epi32(0x3a003a00));
  for (long k = 0; k < iters; ++k) {
#pragma GCC unroll 24
    for (int i = 0; i < kChains; ++i) c[i] = _mm512_dpbf16_ps(c[i], a, b);
    __asm__ volatile("" : "+v"(a));
  }
  return lane_sum(c);
}

template <class F>
double seconds(F f) {
  const auto t0 = std::chrono::steady_clock::now();
  volatile float sink = f();
  (void)sink;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main() {
  const long iters = 20'000'000;
  for (int round = 0; round < 2; ++round) {  // the first round also warms the clock up
    const double f = seconds([&] { return fma_chains(iters); });
    const double d = seconds([&] { return dpbf16_chains(iters); });
    std::printf("fp32 FMA %.0f GFLOP/s, vdpbf16ps %.0f GFLOP/s (one core)\n", iters * kChains * 32.0 / f / 1e9,
                iters * kChains * 64.0 / d / 1e9);
  }
}
