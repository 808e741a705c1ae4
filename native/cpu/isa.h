// The one definition of the CPU instruction-set paths. Kernels with a vector path are compiled up to
// three times (baseline, AVX2+FMA, AVX-512) with the target attributes below, never -march=native,
// and one path is picked at run time by cpu_isa(): a path is taken only when the CPU has every
// feature its attribute lets the compiler use. MEDIC_CPU_ISA=avx2|scalar caps cpu_features() and so
// the pick (the tests run each narrower path on a wider machine that way).
//
// Users: elementwise.cpp and layernorm.cpp through pick_isa_variant; gemm.cpp and attention.cpp
// (attention_isa.inc) through cpu_isa() and the target macros, for their wider variant tables.
#pragma once

#include "medic/engine.h"

#if defined(__x86_64__) || defined(__i386__)
#define MEDIC_X86 1
#else
#define MEDIC_X86 0
#endif

#define MEDIC_INLINE inline __attribute__((always_inline))
// AVX-512 as Skylake-SP and later have it: F for the 512-bit ops, VL for masked 128/256-bit forms,
// BW and DQ for the integer/bit helpers the compiler may pick in the exp and mask code.
#define MEDIC_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
#define MEDIC_AVX2 __attribute__((target("avx2,fma")))

namespace medic::cpu {

enum class Isa { scalar, avx2, avx512 };

// The path this CPU runs: each level needs every feature its target attribute names.
inline Isa cpu_isa() {
  const CpuFeatures& f = cpu_features();
  if (f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl && f.avx2 && f.fma) return Isa::avx512;
  if (f.avx2 && f.fma) return Isa::avx2;
  return Isa::scalar;
}

// One of three compilations of the same body, by cpu_isa().
template <class F>
F pick_isa_variant(F base, F avx2, F avx512) {
  switch (cpu_isa()) {
    case Isa::avx512: return avx512;
    case Isa::avx2: return avx2;
    default: return base;
  }
}

}  // namespace medic::cpu
