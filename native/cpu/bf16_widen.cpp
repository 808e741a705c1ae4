// Storage-only bf16 (ops.h, Precision): an op without a bf16 kernel of its own runs its fp32 kernel
// on f32 copies of its bf16 tensors, and its bf16 outputs are rounded back (nearest even) once.
// The result is by construction the fp32 op applied to the bf16 values, rounded at the store: the
// same numbers a bf16 kernel with fp32 arithmetic would give. What it costs is memory traffic: one
// widening pass per bf16 input, and a widening plus a rounding pass per bf16 output (outputs are
// widened first where ops may read them or leave elements as they are: acc=1, read-and-written
// slots, partial writers).
// The passes are split over the pool and vectorised (AVX-512) where the CPU has it.
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "isa.h"
#include "medic/ops.h"
#include "medic/threads.h"

namespace medic::cpu {
namespace {

MEDIC_INLINE void widen_body(const uint16_t* src, float* dst, int64_t a, int64_t b) {
  for (int64_t i = a; i < b; ++i) {
    const uint32_t u = static_cast<uint32_t>(src[i]) << 16;
    std::memcpy(dst + i, &u, 4);
  }
}
// Round to nearest even, NaN kept quiet: f32_to_bf16 written without branches so it vectorises.
MEDIC_INLINE void round_body(const float* src, uint16_t* dst, int64_t a, int64_t b) {
  for (int64_t i = a; i < b; ++i) {
    uint32_t u;
    std::memcpy(&u, src + i, 4);
    const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    dst[i] = static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : r);
  }
}
static void widen_base(const uint16_t* s, float* d, int64_t a, int64_t b) { widen_body(s, d, a, b); }
MEDIC_AVX2 static void widen_avx2(const uint16_t* s, float* d, int64_t a, int64_t b) { widen_body(s, d, a, b); }
MEDIC_AVX512 static void widen_avx512(const uint16_t* s, float* d, int64_t a, int64_t b) { widen_body(s, d, a, b); }
static void round_base(const float* s, uint16_t* d, int64_t a, int64_t b) { round_body(s, d, a, b); }
MEDIC_AVX2 static void round_avx2(const float* s, uint16_t* d, int64_t a, int64_t b) { round_body(s, d, a, b); }
MEDIC_AVX512 static void round_avx512(const float* s, uint16_t* d, int64_t a, int64_t b) { round_body(s, d, a, b); }

void parallel(ThreadPool* pool, int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  constexpr int64_t kGrain = 1 << 16;
  if (pool && n > kGrain)
    pool->parallel_for(n, kGrain, fn);
  else if (n > 0)
    fn(0, n);
}

}  // namespace

void widen_bf16(const uint16_t* src, float* dst, int64_t n, ThreadPool* pool) {
  const auto fn = pick_isa_variant(widen_base, widen_avx2, widen_avx512);
  parallel(pool, n, [&](int64_t a, int64_t b) { fn(src, dst, a, b); });
}

void round_bf16(const float* src, uint16_t* dst, int64_t n, ThreadPool* pool) {
  const auto fn = pick_isa_variant(round_base, round_avx2, round_avx512);
  parallel(pool, n, [&](int64_t a, int64_t b) { fn(src, dst, a, b); });
}

// Whether the op overwrites every element of output `slot` without reading it (ops.h): then its f32
// copy needs no widening first. Accumulating calls, read-and-written slots and partial writers
// (copy_rows, gather/scatter_rows, mask_fill, scale_add) are not listed: they are widened.
bool overwrites(const OpCall& c, int slot) {
  if (c.ai("acc", 0) != 0) return false;
  switch (c.def->id) {
    case OpId::gelu:
    case OpId::gelu_bwd:
    case OpId::quick_gelu:
    case OpId::quick_gelu_bwd:
    case OpId::softmax:
    case OpId::softmax_bwd:
    case OpId::add:
    case OpId::pixel_norm:
    case OpId::attention:
    case OpId::attention_bwd:
    case OpId::layernorm:
    case OpId::layernorm_bwd:
    case OpId::scale_add_bwd:
    case OpId::mask_fill_bwd: return slot == 0;
    case OpId::medic_loss: return slot == 1 || slot == 2;
    case OpId::cross_entropy: return slot == 1;
    default: return false;
  }
}

// The f32 copies live in one buffer per calling thread, kept between calls: a fresh allocation per
// op would page-fault (and zero) megabytes every time.
struct Scratch {
  float* p = nullptr;
  size_t cap = 0;
  ~Scratch() { std::free(p); }
  float* reserve(size_t n) {
    if (n > cap) {
      std::free(p);
      p = static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) & ~size_t(63)));
      cap = p ? n : 0;
      if (!p)
        throw Error("bf16 storage: out of memory for f32 copies (" + std::to_string(n * sizeof(float)) + " bytes)");
    }
    return p;
  }
};
thread_local Scratch t_scratch;

void run_widened(const OpCall& c, KernelFn f32_kernel) {
  ThreadPool* pool = c.ctx ? c.ctx->pool : nullptr;
  std::vector<Tensor> in(c.in, c.in + c.n_in), out(c.out, c.out + c.n_out);
  size_t total = 0;
  for (const std::vector<Tensor>* ts : {&in, &out})
    for (const Tensor& t : *ts)
      if (t.data && t.dtype == DType::BF16) total += (static_cast<size_t>(t.numel()) + 15) & ~size_t(15);
  float* next = t_scratch.reserve(total);
  auto widen = [&](Tensor& t, bool copy) {
    if (!t.data || t.dtype != DType::BF16) return;
    if (copy) widen_bf16(t.bf16(), next, t.numel(), pool);
    t.data = next;
    t.dtype = DType::F32;
    next += (static_cast<size_t>(t.numel()) + 15) & ~size_t(15);
  };
  for (Tensor& t : in) widen(t, true);
  // (an in-place output still gets a copy of its own: the kernel reads the input's copy)
  for (int i = 0; i < c.n_out; ++i) widen(out[i], !overwrites(c, i));
  OpCall w = c;
  w.in = in.data();
  w.out = out.data();
  f32_kernel(w);
  for (int i = 0; i < c.n_out; ++i)
    if (c.out[i].data && c.out[i].dtype == DType::BF16)
      round_bf16(out[i].f32(), c.out[i].bf16(), c.out[i].numel(), pool);
}

}  // namespace medic::cpu
