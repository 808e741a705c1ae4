// The bf16 forms of gemm (ops.h): called by cpu::gemm when an operand or the output is bf16.
#pragma once

#include "medic/ops.h"

namespace medic::cpu {

// True when the call takes the bf16 path: A, B or C is bf16.
bool gemm_is_bf16(const OpCall& call);
// The bf16 gemm: AVX512-BF16 kernels where the CPU has them, else gemm_bf16_reference.
void gemm_bf16(const OpCall& call);
// The readable reference and fallback: operands rounded to bf16 and widened to f32, the fp32 gemm,
// then the result rounded to C's dtype. Exactly the bf16 product with fp32 accumulation.
void gemm_bf16_reference(const OpCall& call);
// The fp32 gemm itself (gemm.cpp), whatever the call's dtypes and attrs say: every tensor must be f32.
// The reference calls it on its widened copies; calling cpu::gemm there would see attr bf16=1 and come
// back to the bf16 path without end.
void gemm_f32(const OpCall& call);

}  // namespace medic::cpu
