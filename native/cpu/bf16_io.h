// Loads and stores for CPU kernels templated on the storage of their activations (ops.h, Precision:
// f32, or bf16 held as uint16_t). Arithmetic stays fp32: a bf16 value is widened in a register as it
// is loaded (exact) and a result is rounded to nearest even (NaN kept quiet) as it is stored. These
// are the conversions of cpu::run_widened's passes, so a kernel reading and writing bf16 through them
// gives, bit for bit, the result of its fp32 form on widened copies when it does the same arithmetic
// in the same order, without the copies' memory passes. Written without branches so that the loops
// using them still vectorise.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>

#include "isa.h"
#include "medic/ops.h"

namespace medic::cpu {

MEDIC_INLINE float ld(const float* p, int64_t i) { return p[i]; }
MEDIC_INLINE float ld(const uint16_t* p, int64_t i) {
  const uint32_t u = static_cast<uint32_t>(p[i]) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
MEDIC_INLINE void st(float* p, int64_t i, float v) { p[i] = v; }
MEDIC_INLINE void st(uint16_t* p, int64_t i, float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  p[i] = static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : r);
}

// The storage shared by a call's activation slots (null tensors ignored): F32 or BF16 when they all
// agree, `mixed` otherwise. Kernels are instantiated for the two uniform cases and for the mixed forms
// the mixed-precision step runs (layernorm f32 -> bf16, scale_add of a bf16 branch into the f32
// stream and its backward, whose branch gradient is f32 or bf16, the GELU backwards with a bf16 x, an
// f32 dy and an f32 or bf16 dx); any other mixed call runs the fp32 kernel through cpu::run_widened.
enum class Storage { f32, bf16, mixed };
inline Storage storage_of(std::initializer_list<const Tensor*> ts) {
  int f = 0, h = 0;
  for (const Tensor* t : ts) {
    if (!t->data) continue;
    (t->dtype == DType::BF16 ? h : f) += 1;
  }
  return h == 0 ? Storage::f32 : f == 0 ? Storage::bf16 : Storage::mixed;
}

}  // namespace medic::cpu
