// Run-time instruction-set choice for the CPU kernels written once and compiled three times
// (baseline, AVX2+FMA, AVX-512) through always-inline bodies: the target attributes, and the pick
// of one variant from cpu_features() (which MEDIC_CPU_ISA=avx2|scalar caps). gemm.cpp and the
// attention kernels carry their own, wider variant tables.
#pragma once

#include "medic/engine.h"

#define MEDIC_INLINE inline __attribute__((always_inline))
#define MEDIC_AVX2 __attribute__((target("avx2,fma")))
#define MEDIC_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))

namespace medic::cpu {

template <class F>
F pick_isa_variant(F base, F avx2, F avx512) {
  const CpuFeatures& f = cpu_features();
  if (f.avx512f) return avx512;
  if (f.avx2 && f.fma) return avx2;
  return base;
}

}  // namespace medic::cpu
