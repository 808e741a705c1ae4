// medic_parity: every op's CUDA kernel against its CPU kernel, then CUDA kernel timings at the
// ViT-B/16 MEDiC step shapes next to ceilings measured in the same run. No Node: links the engine.
//
//   medic_parity [--json out.json] [--only op[,op...]] [--no-timing] [--no-parity] [--reps N] [--batch B] [--seed S]
//   medic_parity --cpu-self-test   (no GPU needed: every case on the CPU twice, checks the cases themselves)
//   medic_parity --list            (which ops have a CUDA kernel in this build)
//
// Parity: for each op, several shapes (tiny, odd sizes such as T = 119 / 197 and C = 77, and per-sample
// ViT-B sizes), fresh random inputs, outputs poisoned (NaN on the CPU, 0xFF bytes on the GPU) unless
// the op reads them (acc=1, parameter gradients, read-and-written outputs: those start from the same
// random values on both sides). Each output is compared with relErr = ||gpu - cpu|| / ||cpu||:
// 1e-2 for the bf16 tensor-core ops (gemm, attention, attention_bwd), exact for index / mask / copy /
// init ops, 1e-5 otherwise; every poisoned element must have been written. An op without a CUDA kernel
// is MISSING, which fails the run.
// Mixed precision (ops.h, Precision): every case of an op with bf16 slots also runs as "... bf16" (every
// float slot that bf16_slot() allows stored in bf16: inputs rounded, outputs bf16) and, where the slots
// allow a mix, as "... mixed" (every other such slot bf16). Tolerances of those: a bf16 output is rounded
// once on both sides from fp32 values that agree to ~1e-6, so the two differ only where a value sits on
// a bf16 rounding boundary, by one bf16 step: relErr <= 2e-3 (a quarter of 2^-7, bf16's largest relative
// step) for bf16 outputs, the op's own tolerance for f32 ones, and still bit for bit for the exact ops
// (copies round the same way on both sides). gemm with a bf16 operand (or attr bf16=1) is the bf16
// product on both backends, so its tolerance is 1e-4 (summation order and the tensor cores'
// accumulation) instead of the 1e-2 of CUDA's bf16 product against the CPU's fp32 one.
// Timing: cudaEvent around each launch on the engine stream, median of --reps after a warm-up, with
// TFLOP/s (gemm, attention) or GB/s (the rest, bytes = each input read once + each output written once).
// Prints one line per case and writes a JSON summary; exits 1 on any parity failure or missing kernel.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ceilings.h"
#include "common.cuh"
#include "medic/engine.h"
#include "medic/ops.h"

using namespace medic;

namespace {

// ---------------------------------------------------------------------------------------------
// Host tensors and case descriptions.

enum class Init : uint8_t { Empty, Data, Poison };

struct Slot {
  Init init = Init::Empty;
  Shape shape;
  DType dtype = DType::F32;
  std::vector<uint8_t> bytes;  // Data: the contents (both devices get the same)
  int64_t numel() const { return shape.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
};

enum class Cmp : uint8_t { Rel, Exact };

struct Case {
  std::string op, label;
  std::vector<Slot> in, out;
  Attrs attrs;
  Cmp cmp = Cmp::Rel;        // the op's kind of comparison (Exact ops: bit for bit)
  double tol = 1e-5;         // relErr bound of the Rel outputs
  std::vector<Cmp> out_cmp;  // per output: cmp, except where one output of an exact op is a float sum
};

Shape S(std::initializer_list<int64_t> d) { return make_shape(d); }

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9e3779b97f4a7c15ull + 1) {}
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  double uni() { return (static_cast<double>(next() >> 11) + 0.5) / 9007199254740992.0; }
  float normal() { return static_cast<float>(std::sqrt(-2.0 * std::log(uni())) * std::cos(6.283185307179586 * uni())); }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
};

// Fresh inputs on each run, unless --seed fixes them (two runs with one seed see the same inputs, so
// their GPU outputs can be compared bit for bit through the per-case hash in the JSON).
uint64_t& seed_value() {
  static uint64_t s = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return s;
}
Rng& rng() {
  static Rng r(seed_value());
  return r;
}

// FNV-1a over the bytes of every output: identical outputs give identical hashes.
std::string hash_outputs(const std::vector<std::vector<uint8_t>>& outs) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& o : outs)
    for (uint8_t b : o) h = (h ^ b) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

Slot none() { return Slot{}; }
Slot poison(Shape s, DType dt = DType::F32) {
  Slot t;
  t.init = Init::Poison;
  t.shape = s;
  t.dtype = dt;
  return t;
}
Slot from_f32(Shape s, const std::vector<float>& v) {
  Slot t;
  t.init = Init::Data;
  t.shape = s;
  t.bytes.resize(v.size() * 4);
  std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
  return t;
}
Slot randn(Shape s, float scale = 1.0f) {
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (float& x : v) x = scale * rng().normal();
  return from_f32(s, v);
}
Slot uniform(Shape s, float lo, float hi) {
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (float& x : v) x = lo + (hi - lo) * static_cast<float>(rng().uni());
  return from_f32(s, v);
}
Slot i32(Shape s, const std::vector<int32_t>& v) {
  Slot t;
  t.init = Init::Data;
  t.shape = s;
  t.dtype = DType::I32;
  t.bytes.resize(v.size() * 4);
  std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
  return t;
}
Slot u8(Shape s, const std::vector<uint8_t>& v) {
  Slot t;
  t.init = Init::Data;
  t.shape = s;
  t.dtype = DType::U8;
  t.bytes = v;
  return t;
}
// [B, K] indices into [0, T): distinct per row, in random order.
Slot distinct_idx(int64_t B, int64_t K, int64_t T) {
  std::vector<int32_t> v;
  std::vector<int32_t> perm(static_cast<size_t>(T));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < T; ++i) perm[i] = static_cast<int32_t>(i);
    for (int64_t i = T - 1; i > 0; --i) std::swap(perm[i], perm[rng().below(i + 1)]);
    v.insert(v.end(), perm.begin(), perm.begin() + K);
  }
  return i32(S({B, K}), v);
}
// [B, T] u8 masks with exactly `count` ones per row.
Slot mask_u8(int64_t B, int64_t T, int64_t count) {
  Slot idx = distinct_idx(B, count, T);
  std::vector<uint8_t> m(static_cast<size_t>(B * T), 0);
  const int32_t* p = reinterpret_cast<const int32_t*>(idx.bytes.data());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < count; ++k) m[b * T + p[b * count + k]] = 1;
  return u8(S({B, T}), m);
}
Slot bf16_randn(Shape s) {
  Slot t;
  t.init = Init::Data;
  t.shape = s;
  t.dtype = DType::BF16;
  t.bytes.resize(static_cast<size_t>(s.numel()) * 2);
  auto* p = reinterpret_cast<uint16_t*>(t.bytes.data());
  for (int64_t i = 0; i < s.numel(); ++i) p[i] = f32_to_bf16(rng().normal());
  return t;
}

Attrs A(std::initializer_list<std::pair<const char*, double>> kv) {
  Attrs a;
  for (auto& p : kv) a.set(p.first, p.second);
  return a;
}

std::string shape_list(const std::vector<Slot>& v) {
  std::string s;
  for (const Slot& t : v) {
    if (t.init == Init::Empty) continue;
    if (!s.empty()) s += " ";
    s += t.shape.str();
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Engines and running one op on either device from host slots.

struct Engines {
  std::unique_ptr<Engine> cpu, gpu;
};
Engines& engines() {
  static Engines e;
  return e;
}

struct DevTensors {
  Engine* eng = nullptr;
  std::vector<Tensor> in, out;
  std::vector<size_t> in_bytes, out_bytes;
  ~DevTensors() {
    for (size_t i = 0; i < in.size(); ++i)
      if (in[i].data) eng->release(in[i].data, in_bytes[i]);
    for (size_t i = 0; i < out.size(); ++i)
      if (out[i].data) eng->release(out[i].data, out_bytes[i]);
  }
};

Tensor place(Engine& e, const Slot& s, size_t& bytes) {
  Tensor t;
  t.shape = s.shape;
  t.dtype = s.dtype;
  t.device = e.device();
  bytes = s.nbytes();
  if (s.init == Init::Empty) return t;
  t.data = e.alloc(std::max<size_t>(bytes, 1));
  if (s.init == Init::Data) {
    e.to_device(t.data, s.bytes.data(), bytes);
  } else {  // poison: NaN on the CPU (f32), 0xFF bytes on the GPU (also NaN for f32)
    std::vector<uint8_t> p(bytes, 0xFF);
    if (e.device() == Device::CPU && s.dtype == DType::F32) {
      float nan = std::nanf("");
      for (size_t i = 0; i < bytes / 4; ++i) std::memcpy(p.data() + 4 * i, &nan, 4);
    }
    e.to_device(t.data, p.data(), bytes);
  }
  return t;
}

// Runs the case's op on engine e; returns each output's bytes (empty for empty slots).
std::vector<std::vector<uint8_t>> run_on(Engine& e, const Case& c) {
  DevTensors d;
  d.eng = &e;
  d.in_bytes.resize(c.in.size());
  d.out_bytes.resize(c.out.size());
  for (size_t i = 0; i < c.in.size(); ++i) d.in.push_back(place(e, c.in[i], d.in_bytes[i]));
  for (size_t i = 0; i < c.out.size(); ++i) d.out.push_back(place(e, c.out[i], d.out_bytes[i]));
  const OpDef* def = find_op(c.op);
  if (!def) throw Error("unknown op " + c.op);
  OpCall call{def,      d.in.data(), static_cast<int>(d.in.size()), d.out.data(), static_cast<int>(d.out.size()),
              &c.attrs, &e.context()};
  run_op(call, true);
  e.synchronize();
  std::vector<std::vector<uint8_t>> res(c.out.size());
  for (size_t i = 0; i < c.out.size(); ++i) {
    if (!d.out[i].data) continue;
    res[i].resize(d.out_bytes[i]);
    e.to_host(res[i].data(), d.out[i].data, d.out_bytes[i]);
  }
  return res;
}

// Fill `c.out[k]` of a helper case from a CPU run, to feed a consistent input to another case
// (attention_bwd needs o and lse of its qkv; layernorm_bwd the mean and rstd of its x).
std::vector<Slot> cpu_outputs(const Case& c) {
  auto res = run_on(*engines().cpu, c);
  std::vector<Slot> out;
  for (size_t i = 0; i < c.out.size(); ++i) {
    Slot s = c.out[i];
    if (s.init != Init::Empty) {
      s.init = Init::Data;
      s.bytes = res[i];
    }
    out.push_back(s);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The cases. Tiers: tiny, odd (T = 119 / 197, C = 77), and per-sample ViT-B sizes (B = 2).

const std::set<std::string>& exact_ops() {
  static const std::set<std::string> s = {"fill",         "copy",         "cast",           "copy_rows",
                                          "gather_rows",  "scatter_rows", "mask_fill",      "mask_fill_bwd",
                                          "patchify",     "unpatchify",   "drop_path_mask", "init_normal",
                                          "init_uniform", "allreduce",    "allreduce_wait"};
  return s;
}
double default_tol(const std::string& op) {
  if (op == "gemm" || op == "attention" || op == "attention_bwd") return 1e-2;  // bf16 operands, f32 accumulation
  return 1e-5;
}
constexpr double kBf16OutTol = 2e-3;   // a bf16 output (see the header)
constexpr double kBf16GemmTol = 1e-4;  // gemm as the bf16 product on both backends

// A float slot in bf16: data rounded to nearest even, poison as 0xFF bytes (NaN).
Slot as_bf16(const Slot& f) {
  Slot t = f;
  t.dtype = DType::BF16;
  if (f.init != Init::Data) return t;
  t.bytes.resize(static_cast<size_t>(f.numel()) * 2);
  for (int64_t i = 0; i < f.numel(); ++i) {
    float v;
    std::memcpy(&v, f.bytes.data() + 4 * i, 4);
    const uint16_t h = f32_to_bf16(v);
    std::memcpy(t.bytes.data() + 2 * i, &h, 2);
  }
  return t;
}

// Whether a case's gemm is the bf16 product on the CPU too (ops.h: a bf16 operand, or attr bf16=1).
bool bf16_product(const Case& c) {
  return c.op == "gemm" && (c.attrs.i("bf16", 0) == 1 || c.in[0].dtype == DType::BF16 || c.in[1].dtype == DType::BF16);
}

struct Builder {
  std::vector<Case> cases;
  void add(std::string op, std::string label, std::vector<Slot> in, std::vector<Slot> out, Attrs attrs = {}) {
    Case c;
    c.op = std::move(op);
    c.label = std::move(label);
    c.in = std::move(in);
    c.out = std::move(out);
    c.attrs = std::move(attrs);
    c.cmp = exact_ops().count(c.op) ? Cmp::Exact : Cmp::Rel;
    c.tol = default_tol(c.op);
    c.out_cmp.assign(c.out.size(), c.cmp);
    // mask_fill_bwd's dtoken is a column sum: the GPU adds the rows in another fixed order than the CPU
    // (per-chunk partials), so it matches to rounding, not bit for bit. Its dx_out is a copy: exact.
    if (c.op == "mask_fill_bwd") c.out_cmp[1] = Cmp::Rel;
    add_bf16_variants(c);
    cases.push_back(std::move(c));
  }

  // The "bf16" and "mixed" variants of a case (see the header); gemm also gets "bf16 attr" (f32
  // operands, attr bf16=1, f32 C) and the storage pattern of the mixed-precision step's linear layers,
  // "bf16 act x f32 W" (forward: bf16 A, f32 weight, bf16 C) and "f32 grad x bf16 act" (the weight
  // gradient: f32 dz, bf16 activations, f32 dW).
  void add_bf16_variants(const Case& c) {
    const OpDef* def = find_op(c.op);
    if (!def || c.op == "cast" || c.op == "fill") return;  // (their bf16 cases are written out)
    std::vector<std::pair<bool, int>> slots;               // (input?, index) of the eligible float slots
    for (size_t i = 0; i < c.in.size(); ++i)
      if (c.in[i].init != Init::Empty && c.in[i].dtype == DType::F32 && bf16_slot(def->id, true, static_cast<int>(i)))
        slots.push_back({true, static_cast<int>(i)});
    for (size_t i = 0; i < c.out.size(); ++i)
      if (c.out[i].init != Init::Empty && c.out[i].dtype == DType::F32 &&
          bf16_slot(def->id, false, static_cast<int>(i)))
        slots.push_back({false, static_cast<int>(i)});
    if (c.op == "gemm") {
      slots = {{true, 0}, {true, 1}, {false, 0}};
      if (c.out.size() > 1) slots.push_back({false, 1});  // preact has C's dtype
    }
    if (slots.empty()) return;
    auto variant = [&](const std::string& tag, const std::function<bool(size_t k)>& pick) {
      Case v = c;
      v.label += " " + tag;
      for (size_t k = 0; k < slots.size(); ++k) {
        if (!pick(k)) continue;
        Slot& t = slots[k].first ? v.in[slots[k].second] : v.out[slots[k].second];
        t = as_bf16(t);
      }
      if (bf16_product(v)) v.tol = kBf16GemmTol;
      cases.push_back(std::move(v));
    };
    variant("bf16", [](size_t) { return true; });
    // The other gemm variants exercise the register-staged kernel's bf16 loads and the CPU's bf16
    // product from f32 operands; the small and split-K shapes cover them, the ViT-B-sized products
    // (each minutes on the emulator) run the bf16 variant (the cp.async pipeline) only.
    const Shape& cs = c.out[0].shape;
    const int64_t k_inner = c.attrs.i("trans_a", 0) ? c.in[0].shape[-2] : c.in[0].shape[-1];
    if (c.op == "gemm" && static_cast<double>(cs.numel()) * static_cast<double>(k_inner) > 5e7) return;
    if (c.op == "gemm") {
      const bool gelu = c.out.size() > 1;
      variant("bf16 act x f32 W", [&](size_t k) { return k == 0 || k == 2 || (gelu && k == 3); });
      variant("f32 grad x bf16 act", [](size_t k) { return k == 1; });
      Case v = c;
      v.label += " bf16 attr";
      v.attrs.set("bf16", 1);
      v.tol = kBf16GemmTol;
      cases.push_back(std::move(v));
    } else if (slots.size() > 1) {
      variant("mixed", [](size_t k) { return k % 2 == 0; });
    }
  }
};

void build_elementwise(Builder& b) {
  b.add("fill", "f32 [7,5]", {}, {poison(S({7, 5}))}, A({{"value", 0.5}}));
  b.add("fill", "i32 [197,3]", {}, {poison(S({197, 3}), DType::I32)}, A({{"value", 7}}));
  b.add("fill", "u8 [119]", {}, {poison(S({119}), DType::U8)}, A({{"value", 3}}));
  b.add("fill", "bf16 [2,77]", {}, {poison(S({2, 77}), DType::BF16)}, A({{"value", 1.5}}));
  for (Shape s : {S({7}), S({2, 119, 77}), S({2, 197, 768})}) {
    b.add("copy", s.str(), {randn(s)}, {poison(s)});
    b.add("copy", s.str() + " alpha 0.5 acc", {randn(s)}, {randn(s)}, A({{"alpha", 0.5}, {"acc", 1}}));
    b.add("cast", s.str() + " f32->bf16", {randn(s)}, {poison(s, DType::BF16)});
    b.add("cast", s.str() + " bf16->f32", {bf16_randn(s)}, {poison(s)});
  }
  b.add("add", "[3,5]+[5]", {randn(S({3, 5})), randn(S({5}))}, {poison(S({3, 5}))});
  b.add("add", "[2,197,77]+[77]", {randn(S({2, 197, 77})), randn(S({77}))}, {poison(S({2, 197, 77}))});
  b.add("add", "[2,197,768]+[197,768]", {randn(S({2, 197, 768})), randn(S({197, 768}))}, {poison(S({2, 197, 768}))});
  b.add("sum_to", "[3,5]->[5]", {randn(S({3, 5}))}, {poison(S({5}))});
  b.add("sum_to", "[2,119,77]->[77] acc", {randn(S({2, 119, 77}))}, {randn(S({77}))}, A({{"acc", 1}}));
  b.add("sum_to", "[2,197,3072]->[3072]", {randn(S({2, 197, 3072}))}, {poison(S({3072}))});
  b.add("sum_to", "[2,197,768]->[197,768]", {randn(S({2, 197, 768}))}, {poison(S({197, 768}))});
  for (const char* op : {"gelu", "quick_gelu"}) {
    std::string bwd = std::string(op) + "_bwd";
    for (Shape s : {S({7}), S({2, 119, 77}), S({2, 197, 3072})}) {
      b.add(op, s.str(), {randn(s, 2)}, {poison(s)});
      b.add(bwd, s.str(), {randn(s, 2), randn(s)}, {poison(s)});
      b.add(bwd, s.str() + " acc", {randn(s, 2), randn(s)}, {randn(s)}, A({{"acc", 1}}));
    }
  }
  for (Shape s : {S({3, 7}), S({2 * 3 * 119, 119}), S({2 * 12 * 197, 197})}) {
    b.add("softmax", s.str(), {randn(s, 3)}, {poison(s)}, A({{"scale", 0.125}}));
    Case fwd;
    fwd.op = "softmax";
    fwd.in = {randn(s, 3)};
    fwd.out = {poison(s)};
    fwd.attrs = A({{"scale", 0.125}});
    Slot y = cpu_outputs(fwd)[0];
    b.add("softmax_bwd", s.str(), {y, randn(s)}, {poison(s)}, A({{"scale", 0.125}}));
    b.add("softmax_bwd", s.str() + " acc", {y, randn(s)}, {randn(s)}, A({{"scale", 0.125}, {"acc", 1}}));
  }
  // LayerScale + DropPath + residual.
  for (Shape s : {S({2, 3, 5}), S({2, 119, 77}), S({2, 197, 768})}) {
    int64_t B = s[0], C = s[-1];
    Slot keep = from_f32(S({B}), {0.0f, 1.0f / 0.9f});
    b.add("scale_add", s.str() + " gamma keep", {randn(s), randn(S({C}), 0.1f), keep}, {randn(s)});
    b.add("scale_add", s.str() + " plain", {randn(s), none(), none()}, {randn(s)});
    b.add("scale_add_bwd", s.str() + " gamma keep", {randn(s), randn(s), randn(S({C}), 0.1f), keep},
          {poison(s), randn(S({C}))});
    b.add("scale_add_bwd", s.str() + " acc", {randn(s), randn(s), randn(S({C}), 0.1f), none()},
          {randn(s), randn(S({C}))}, A({{"acc", 1}}));
    b.add("scale_add_bwd", s.str() + " plain", {randn(s), randn(s)}, {poison(s)});
  }
  for (int64_t B : {1, 7, 256}) {
    b.add("drop_path_mask", "B=" + std::to_string(B), {i32(S({2}), {12345, -678})}, {poison(S({B}))},
          A({{"p", 0.1}, {"stream", 3}}));
    b.add("drop_path_mask", "B=" + std::to_string(B) + " row0", {i32(S({2}), {12345, -678})}, {poison(S({B}))},
          A({{"p", 0.1}, {"stream", 3}, {"row0", 4099}}));
  }
}

void build_gemm(Builder& b) {
  auto G = [&](std::string label, Slot a, Slot w, Slot bias, Shape c, Attrs at, bool acc_out = false) {
    bool gelu = at.i("act", 0) == 1;
    std::vector<Slot> out = {acc_out ? randn(c) : poison(c)};
    if (gelu) out.push_back(poison(c));
    b.add("gemm", label, {a, w, bias}, out, at);
  };
  G("[7,33]x[19,33]^T +bias", randn(S({7, 33})), randn(S({19, 33})), randn(S({19})), S({7, 19}), A({{"trans_b", 1}}));
  G("[2,119,77]x[131,77]^T +bias gelu", randn(S({2, 119, 77})), randn(S({131, 77})), randn(S({131})), S({2, 119, 131}),
    A({{"trans_b", 1}, {"act", 1}}));
  G("[238,77]^T x[238,131] acc (dW)", randn(S({238, 77})), randn(S({238, 131})), none(), S({77, 131}),
    A({{"trans_a", 1}, {"acc", 1}}), true);
  G("[197,131]x[131,77] alpha 0.5", randn(S({197, 131})), randn(S({131, 77})), none(), S({197, 77}),
    A({{"alpha", 0.5}}));
  G("batched [3,5,19,33]x[3,5,33,21]", randn(S({3, 5, 19, 33})), randn(S({3, 5, 33, 21})), none(), S({3, 5, 19, 21}),
    {});
  G("batched [2,3,197,64]x[2,3,197,64]^T", randn(S({2, 3, 197, 64})), randn(S({2, 3, 197, 64})), none(),
    S({2, 3, 197, 197}), A({{"trans_b", 1}}));
  G("batched [2,3,64,119]^T x[2,3,64,33]", randn(S({2, 3, 64, 119})), randn(S({2, 3, 64, 33})), none(),
    S({2, 3, 119, 33}), A({{"trans_a", 1}}));
  G("vitb qkv [2,197,768]x[2304,768]^T", randn(S({2, 197, 768})), randn(S({2304, 768}), 0.02f), randn(S({2304})),
    S({2, 197, 2304}), A({{"trans_b", 1}}));
  G("vitb fc1 [2,119,768]x[3072,768]^T gelu", randn(S({2, 119, 768})), randn(S({3072, 768}), 0.02f), randn(S({3072})),
    S({2, 119, 3072}), A({{"trans_b", 1}, {"act", 1}}));
  G("vitb dX [394,3072]x[3072,768]", randn(S({394, 3072})), randn(S({3072, 768}), 0.02f), none(), S({394, 768}), {});
  G("vitb dX acc [394,3072]x[3072,768]", randn(S({394, 3072})), randn(S({3072, 768}), 0.02f), none(), S({394, 768}),
    A({{"acc", 1}}), true);
  G("vitb dW [394,768]^T x[394,3072] acc", randn(S({394, 768})), randn(S({394, 3072})), none(), S({768, 3072}),
    A({{"trans_a", 1}, {"acc", 1}}), true);
  // Split-K (one output tile, K >= 4096: 8 slices on a 132-SM GPU), last slice shorter than the others,
  // K not a multiple of the 32-deep slice; epilogues (acc, bias + GELU) applied by the reduce kernel.
  G("split-K [4100,64]^T x[4100,96] acc", randn(S({4100, 64})), randn(S({4100, 96})), none(), S({64, 96}),
    A({{"trans_a", 1}, {"acc", 1}}), true);
  G("split-K [64,4100]x[96,4100]^T +bias gelu", randn(S({64, 4100})), randn(S({96, 4100}), 0.05f), randn(S({96})),
    S({64, 96}), A({{"trans_b", 1}, {"act", 1}}));
  G("split-K scalar loads [4099,63]^T x[4099,97]", randn(S({4099, 63})), randn(S({4099, 97})), none(), S({63, 97}),
    A({{"trans_a", 1}}));
}

void build_norm(Builder& b) {
  for (Shape s : {S({3, 7}), S({2, 119, 77}), S({2, 197, 768})}) {
    int64_t C = s[-1], R = s.leading(1);
    Slot x = randn(s, 2);
    b.add("layernorm", s.str() + " affine", {x, randn(S({C})), randn(S({C}))},
          {poison(s), poison(S({R})), poison(S({R}))}, A({{"eps", 1e-6}}));
    b.add("layernorm", s.str() + " no params", {x}, {poison(s), poison(S({R})), poison(S({R}))}, A({{"eps", 1e-6}}));
    Case fwd;
    fwd.op = "layernorm";
    fwd.in = {x};
    fwd.out = {poison(s), poison(S({R})), poison(S({R}))};
    fwd.attrs = A({{"eps", 1e-6}});
    auto st = cpu_outputs(fwd);
    b.add("layernorm_bwd", s.str() + " affine", {randn(s), x, st[1], st[2], randn(S({C}))},
          {poison(s), randn(S({C})), randn(S({C}))});
    b.add("layernorm_bwd", s.str() + " acc", {randn(s), x, st[1], st[2], randn(S({C}))},
          {randn(s), randn(S({C})), randn(S({C}))}, A({{"acc", 1}}));
    b.add("layernorm_bwd", s.str() + " no params", {randn(s), x, st[1], st[2]}, {poison(s)});
    // The teacher targets: parameter-free, unbiased variance (and its backward, for the contract).
    const Attrs ub = A({{"eps", 1e-6}, {"unbiased", 1}});
    b.add("layernorm", s.str() + " unbiased", {x}, {poison(s), poison(S({R})), poison(S({R}))}, ub);
    fwd.attrs = ub;
    fwd.in = {x};
    auto su = cpu_outputs(fwd);
    b.add("layernorm_bwd", s.str() + " unbiased affine", {randn(s), x, su[1], su[2], randn(S({C}))},
          {poison(s), randn(S({C})), randn(S({C}))}, A({{"unbiased", 1}}));
  }
  for (Shape s : {S({3, 48}), S({2 * 78, 768}), S({2 * 119, 77})})
    b.add("pixel_norm", s.str(), {randn(s, 3)}, {poison(s)}, A({{"eps", 1e-6}}));
  // The linear probe's BatchNorm: odd column counts (tail blocks), a ViT-B feature batch.
  for (Shape s : {S({2, 5}), S({37, 77}), S({512, 768})}) {
    int64_t C = s[1];
    b.add("batchnorm", s.str() + " train", {randn(s, 2)}, {poison(s), randn(S({C})), uniform(S({C}), 0.5f, 2.0f)},
          A({{"eps", 1e-6}, {"momentum", 0.1}}));
    b.add("batchnorm", s.str() + " eval", {randn(s, 2)}, {poison(s), randn(S({C})), uniform(S({C}), 0.5f, 2.0f)},
          A({{"eps", 1e-6}, {"train", 0}}));
  }
}

void build_attention(Builder& b) {
  struct Dims {
    int64_t B, T, H, Hd;
  };
  // Hd 40 / 80 / 10 run on the padded 48 / 96 / 16 kernels (10 also on the scalar-load path), Hd 128 on
  // the widest one; T = 130 leaves a second query/key block of 2 rows.
  for (Dims d :
       {Dims{2, 7, 2, 32}, Dims{2, 119, 3, 64}, Dims{1, 197, 2, 64}, Dims{2, 197, 12, 64}, Dims{2, 197, 16, 32},
        Dims{2, 120, 12, 64}, Dims{2, 65, 3, 40}, Dims{1, 150, 2, 80}, Dims{1, 33, 2, 10}, Dims{1, 130, 1, 128}}) {
    std::string label = "B" + std::to_string(d.B) + " T" + std::to_string(d.T) + " H" + std::to_string(d.H) + " Hd" +
                        std::to_string(d.Hd);
    Shape qs = S({d.B, d.T, 3 * d.H * d.Hd}), os = S({d.B, d.T, d.H * d.Hd}), ls = S({d.B, d.H, d.T});
    Attrs at = A({{"heads", static_cast<double>(d.H)}});
    Slot qkv = randn(qs);
    b.add("attention", label, {qkv}, {poison(os), poison(ls)}, at);
    Case fwd;
    fwd.op = "attention";
    fwd.in = {qkv};
    fwd.out = {poison(os), poison(ls)};
    fwd.attrs = at;
    auto ol = cpu_outputs(fwd);
    b.add("attention_bwd", label, {randn(os), qkv, ol[0], ol[1]}, {poison(qs)}, at);
    Attrs acc = at;
    acc.set("acc", 1);
    b.add("attention_bwd", label + " acc", {randn(os), qkv, ol[0], ol[1]}, {randn(qs)}, acc);
    if (d.T > 1) b.add("attention_probs", label, {qkv}, {poison(S({d.B, d.T - 1, d.T - 1}))}, at);
  }
  // No prefix dropped, and a scale other than 1/sqrt(Hd).
  b.add("attention_probs", "B2 T9 H3 Hd5 prefix 0 scale 0.7", {randn(S({2, 9, 45}), 2)}, {poison(S({2, 9, 9}))},
        A({{"heads", 3}, {"prefix", 0}, {"scale", 0.7}}));
}

void build_tokens(Builder& b) {
  struct Dims {
    int64_t B, T, C, K;
  };
  for (Dims d : {Dims{2, 5, 3, 2}, Dims{2, 197, 77, 119}, Dims{2, 197, 768, 119}}) {
    std::string tag = "B" + std::to_string(d.B) + " T" + std::to_string(d.T) + " C" + std::to_string(d.C);
    Shape x = S({d.B, d.T, d.C}), y = S({d.B, d.K, d.C});
    b.add("copy_rows", tag + " window", {randn(x)}, {randn(S({d.B, d.T + 1, d.C}))},
          A({{"src", 1}, {"dst", 2}, {"count", static_cast<double>(d.T - 1)}}));
    b.add("copy_rows", tag + " acc", {randn(x)}, {randn(x)},
          A({{"src", 0}, {"dst", 0}, {"count", static_cast<double>(d.T)}, {"acc", 1}}));
    b.add("copy_rows", tag + " broadcast", {randn(S({1, 1, d.C}))}, {randn(x)},
          A({{"src", 0}, {"dst", 0}, {"count", 1}}));
    b.add("copy_rows", tag + " batch sum", {randn(x)}, {randn(S({1, 1, d.C}))},
          A({{"src", 0}, {"dst", 0}, {"count", 1}, {"acc", 1}}));
    b.add("gather_rows", tag + " K" + std::to_string(d.K), {randn(x), distinct_idx(d.B, d.K, d.T)}, {poison(y)});
    b.add("gather_rows", tag + " acc", {randn(x), distinct_idx(d.B, d.K, d.T)}, {randn(y)}, A({{"acc", 1}}));
    b.add("scatter_rows", tag + " K" + std::to_string(d.K), {randn(y), distinct_idx(d.B, d.K, d.T)}, {randn(x)});
    b.add("scatter_rows", tag + " acc", {randn(y), distinct_idx(d.B, d.K, d.T)}, {randn(x)}, A({{"acc", 1}}));
    b.add("mask_fill", tag, {mask_u8(d.B, d.T, d.K), randn(S({d.C}))}, {randn(x)});
    b.add("mask_fill_bwd", tag, {mask_u8(d.B, d.T, d.K), randn(x)}, {poison(x), randn(S({d.C}))});
  }
  struct Img {
    int64_t B, Ch, H, W, p;
  };
  for (Img im : {Img{2, 3, 8, 12, 4}, Img{1, 3, 28, 28, 4}, Img{2, 3, 224, 224, 16}}) {
    Shape is = S({im.B, im.Ch, im.H, im.W}), xs = S({im.B, (im.H / im.p) * (im.W / im.p), im.p * im.p * im.Ch});
    for (int order : {0, 1}) {
      std::string tag = is.str() + " p" + std::to_string(im.p) + " order " + std::to_string(order);
      Attrs at = A({{"patch", static_cast<double>(im.p)}, {"order", static_cast<double>(order)}});
      b.add("patchify", tag, {randn(is)}, {poison(xs)}, at);
      b.add("unpatchify", tag, {randn(xs)}, {poison(is)}, at);
    }
  }
}

void build_loss(Builder& b) {
  struct Dims {
    int64_t B, T, Dt, M, P;
  };
  for (Dims d : {Dims{2, 3, 8, 2, 12}, Dims{3, 119, 77, 78, 48}, Dims{2, 119, 768, 78, 768}}) {
    Shape s = S({d.B, 1 + d.T, d.Dt}), p = S({d.B, d.M, d.P});
    std::string tag = s.str() + " " + p.str();
    b.add("medic_loss", tag, {randn(s), randn(s), randn(p), randn(p)}, {poison(S({4})), poison(s), poison(p)},
          A({{"w_tok", 1}, {"w_cls", 0.4}, {"w_pix", 1}, {"tau", 0.1}, {"beta", 1}}));
    b.add("medic_loss", tag + " w_pix 0", {randn(s), randn(s), none(), none()}, {poison(S({4})), poison(s), none()},
          A({{"w_tok", 1}, {"w_cls", 0.4}, {"w_pix", 0}}));
    b.add("medic_loss", tag + " balanced",
          {randn(s), randn(s), randn(p), randn(p), from_f32(S({3}), {0.7f, 2.5f, 0.3f})},
          {poison(S({4})), poison(s), poison(p)}, A({{"w_tok", 1}, {"w_cls", 0.4}, {"w_pix", 1}}));
  }
  b.add("loss_weights", "[3]", {randn(S({3}))}, {poison(S({3}))});
  b.add("loss_weights_bwd", "[3]", {randn(S({3})), from_f32(S({4}), {3.0f, 0.8f, 1.7f, 0.4f})}, {randn(S({3}))},
        A({{"w_tok", 1}, {"w_cls", 0.4}, {"w_pix", 0}}));
  for (auto rc : {std::pair<int64_t, int64_t>{3, 5}, {119, 77}, {256, 1000}}) {
    std::vector<int32_t> labels(static_cast<size_t>(rc.first));
    for (auto& l : labels) l = static_cast<int32_t>(rng().below(rc.second));
    Shape z = S({rc.first, rc.second});
    b.add("cross_entropy", z.str(), {randn(z, 3), i32(S({rc.first}), labels)},
          {poison(S({1})), poison(z), poison(S({1}))});
    b.add("cross_entropy", z.str() + " smoothing 0.1", {randn(z, 3), i32(S({rc.first}), labels)},
          {poison(S({1})), poison(z)}, A({{"smoothing", 0.1}}));
    b.add("cross_entropy", z.str() + " soft targets", {randn(z, 3), uniform(z, 0, 0.2f)},
          {poison(S({1})), poison(z), poison(S({1}))});
  }
}

void build_optim(Builder& b) {
  for (int64_t n : {int64_t{7}, int64_t{1000003}, int64_t{4 * 1024 * 1024 + 5}}) {
    b.add("grad_norm", "n=" + std::to_string(n), {randn(S({n}), 0.01f)}, {poison(S({1}))});
    std::vector<uint8_t> wd(static_cast<size_t>(n));
    for (auto& w : wd) w = static_cast<uint8_t>(rng().below(2));
    Slot hyper = from_f32(S({3}), {1e-3f, 0.05f, 3.0f});
    b.add("adamw", "n=" + std::to_string(n) + " clip",
          {randn(S({n}), 0.01f), u8(S({n}), wd), hyper, from_f32(S({1}), {5.0f})},
          {randn(S({n}), 0.02f), randn(S({n}), 0.01f), uniform(S({n}), 0, 1e-4f)}, A({{"max_norm", 3.0}}));
    b.add("adamw", "n=" + std::to_string(n), {randn(S({n}), 0.01f), u8(S({n}), wd), hyper},
          {randn(S({n}), 0.02f), randn(S({n}), 0.01f), uniform(S({n}), 0, 1e-4f)});
    b.add("adamw", "n=" + std::to_string(n) + " lr_scale",
          {randn(S({n}), 0.01f), u8(S({n}), wd), hyper, from_f32(S({1}), {5.0f}), uniform(S({n}), 0.05f, 1)},
          {randn(S({n}), 0.02f), randn(S({n}), 0.01f), uniform(S({n}), 0, 1e-4f)}, A({{"max_norm", 3.0}}));
    Slot sgd_hyper = from_f32(S({2}), {0.1f, 0.01f});
    b.add("sgd", "n=" + std::to_string(n), {randn(S({n}), 0.01f), sgd_hyper},
          {randn(S({n}), 0.02f), randn(S({n}), 0.01f)});
    b.add("sgd", "n=" + std::to_string(n) + " LARS", {randn(S({n}), 0.01f), sgd_hyper},
          {randn(S({n}), 0.02f), randn(S({n}), 0.01f), poison(S({2}))}, A({{"trust", 0.001}, {"momentum", 0.9}}));
    b.add("init_normal", "n=" + std::to_string(n), {}, {poison(S({n}))},
          A({{"mean", 0}, {"std", 0.02}, {"lo", -0.04}, {"hi", 0.04}, {"seed", 42}, {"stream", 7}}));
    b.add("init_uniform", "n=" + std::to_string(n), {}, {poison(S({n}))},
          A({{"lo", -0.1}, {"hi", 0.1}, {"seed", 42}, {"stream", 3}}));
  }
  // Without a communicator (one process) both leave the gradient as it is, on either backend.
  b.add("allreduce", "alone", {}, {randn(S({1000003}), 0.01f)});
  b.add("allreduce_wait", "alone", {}, {randn(S({7}))});
}

// ---------------------------------------------------------------------------------------------
// Comparison.

struct OutCheck {
  double err = 0;          // relErr (Rel) or max |diff| (Exact)
  int64_t unwritten = 0;   // poisoned GPU elements still 0xFF
  int64_t mismatched = 0;  // Exact: elements that differ
  bool cpu_bad = false;    // the CPU reference left non-finite values (a harness or CPU bug)
};

double to_f64(const uint8_t* p, DType dt) {
  switch (dt) {
    case DType::F32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case DType::BF16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return bf16_to_f32(h);
    }
    case DType::I32: {
      int32_t i;
      std::memcpy(&i, p, 4);
      return i;
    }
    case DType::U8: return *p;
  }
  return 0;
}

OutCheck compare(const Slot& s, const std::vector<uint8_t>& cpu, const std::vector<uint8_t>& gpu, Cmp cmp) {
  OutCheck r;
  const size_t es = dtype_size(s.dtype);
  const int64_t n = s.numel();
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* g = gpu.data() + i * es;
    const uint8_t* c = cpu.data() + i * es;
    if (s.init == Init::Poison) {
      bool ff = true;
      for (size_t k = 0; k < es; ++k) ff = ff && g[k] == 0xFF;
      if (ff) r.unwritten += 1;
    }
    double cv = to_f64(c, s.dtype), gv = to_f64(g, s.dtype);
    if (!std::isfinite(cv)) r.cpu_bad = true;
    if (cmp == Cmp::Exact) {
      bool same = s.dtype == DType::F32 ? (cv == gv || (std::isnan(cv) && std::isnan(gv))) : std::memcmp(g, c, es) == 0;
      if (!same) {
        r.mismatched += 1;
        r.err = std::max(r.err, std::isfinite(gv) ? std::fabs(gv - cv) : INFINITY);
      }
    } else {
      if (!std::isfinite(gv)) {
        num = INFINITY;
        continue;
      }
      num += (gv - cv) * (gv - cv);
      den += cv * cv;
    }
  }
  if (cmp == Cmp::Rel) r.err = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return r;
}

// ---------------------------------------------------------------------------------------------
// JSON output (small and hand-written: the harness has no dependencies).

std::string jstr(const std::string& s) {
  std::string o = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') o += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) continue;
    o += ch;
  }
  return o + "\"";
}
std::string jnum(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

struct ParityRow {
  std::string op, label, status, detail;
  double err = 0, tol = 0;
  int64_t unwritten = 0;
  std::string hash;  // of the GPU outputs (hash_outputs)
};

// ---------------------------------------------------------------------------------------------
// Parity run.

std::vector<ParityRow> run_parity(const std::set<std::string>& only) {
  Builder b;
  build_elementwise(b);
  build_gemm(b);
  build_norm(b);
  build_attention(b);
  build_tokens(b);
  build_loss(b);
  build_optim(b);
  std::vector<ParityRow> rows;
  std::set<std::string> covered;
  for (const Case& c : b.cases) covered.insert(c.op);
  // Every op in the table must have cases; one without is a harness bug, reported as a failure.
  for (const std::string& name : op_names()) {
    if (!only.empty() && !only.count(name)) continue;
    const OpDef* def = find_op(name);
    // An op that may hold bf16 (bf16_slot) must take it on CUDA (bf16_native_cuda): CUDA has no
    // widening fallback, so a slot added without its kernel fails here rather than in a training run.
    bool any_slot = false;
    for (int i = 0; i < 8; ++i) any_slot = any_slot || bf16_slot(def->id, true, i) || bf16_slot(def->id, false, i);
    if (any_slot && !bf16_native_cuda(def->id)) {
      rows.push_back({name, "-", "FAIL", "bf16_slot() allows bf16 but bf16_native_cuda() does not list it", 0, 0, 0});
      std::printf("FAIL    %-15s bf16_slot() allows bf16 but bf16_native_cuda() does not list it\n", name.c_str());
    }
    if (!def->cuda && engines().gpu) {
      rows.push_back({name, "-", "MISSING", "no CUDA kernel in this build", 0, 0, 0});
      std::printf("MISSING %-15s no CUDA kernel in this build\n", name.c_str());
      continue;
    }
    if (!covered.count(name)) {
      rows.push_back({name, "-", "FAIL", "the harness has no case for this op", 0, 0, 0});
      std::printf("FAIL    %-15s the harness has no case for this op\n", name.c_str());
    }
  }
  for (const Case& c : b.cases) {
    if (!only.empty() && !only.count(c.op)) continue;
    if (!find_op(c.op)->cuda && engines().gpu) continue;  // reported once above
    ParityRow row{c.op, c.label, "PASS", "", 0, c.cmp == Cmp::Exact ? 0 : c.tol, 0};
    try {
      auto cpu = run_on(*engines().cpu, c);
      // --cpu-self-test (no GPU): the CPU against itself, which checks the cases against the contracts.
      auto gpu = run_on(engines().gpu ? *engines().gpu : *engines().cpu, c);
      row.hash = hash_outputs(gpu);
      std::ostringstream det;
      for (size_t i = 0; i < c.out.size(); ++i) {
        if (c.out[i].init == Init::Empty) continue;
        const Cmp cmp = c.out_cmp[i];
        OutCheck k = compare(c.out[i], cpu[i], gpu[i], cmp);
        row.err = std::max(row.err, k.err);
        row.unwritten += k.unwritten;
        det << (det.tellp() > 0 ? ", " : "") << "out" << i << " " << (cmp == Cmp::Exact ? "maxdiff " : "rel ")
            << jnum(k.err);
        if (k.mismatched) det << " (" << k.mismatched << " differ)";
        if (!engines().gpu) k.unwritten = 0;  // the CPU poisons with NaN, not 0xFF
        if (k.unwritten) det << " (" << k.unwritten << " unwritten)";
        if (k.cpu_bad) det << " (cpu reference not finite)";
        const double tol = c.out[i].dtype == DType::BF16 ? std::max(c.tol, kBf16OutTol) : c.tol;
        if (cmp == Cmp::Rel) row.tol = std::max(row.tol, tol);
        bool bad = k.cpu_bad || k.unwritten > 0 || (cmp == Cmp::Exact ? k.mismatched > 0 : !(k.err <= tol));
        if (bad) row.status = "FAIL";
      }
      row.detail = det.str();
    } catch (const std::exception& e) {
      row.status = "FAIL";
      row.detail = std::string("threw: ") + e.what();
      // A device-side fault leaves the context unusable; recreate the GPU engine for the next case.
      cudaGetLastError();
      try {
        engines().gpu.reset();
        engines().gpu = std::make_unique<Engine>(Device::CUDA, 0, 1);
      } catch (const std::exception& e2) {
        row.detail += std::string("; the CUDA engine could not be recreated: ") + e2.what();
      }
    }
    std::printf("%-7s %-15s %-44s %s%s\n", row.status.c_str(), c.op.c_str(), c.label.c_str(), row.detail.c_str(),
                c.cmp == Cmp::Exact ? "  [exact]" : (" [tol " + jnum(row.tol) + "]").c_str());
    std::fflush(stdout);
    rows.push_back(row);
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Timings at the ViT-B/16 MEDiC step shapes (GPU only; inputs random, outputs not compared).

struct TimeCase {
  std::string op, label;
  std::vector<Slot> in, out;  // Data slots for index/mask inputs; Poison slots become device-random f32
  Attrs attrs;
  double flops = 0, bytes = 0;
};

struct TimeRow {
  std::string op, label, status;
  double ms = 0, tflops = 0, gbs = 0, flops = 0, bytes = 0;
};

Slot dev(Shape s, DType dt = DType::F32) { return poison(s, dt); }  // filled on the device

std::vector<TimeCase> time_cases(int64_t B) {
  std::vector<TimeCase> v;
  const int64_t D = 768, Dt = 768, Dd = 512, N = 196, Tf = 1 + N, V = 118, Ts = 1 + V, M = N - V, P = 768;
  auto add = [&](std::string op, std::string label, std::vector<Slot> in, std::vector<Slot> out, Attrs at, double flops,
                 double bytes) {
    v.push_back({std::move(op), std::move(label), std::move(in), std::move(out), std::move(at), flops, bytes});
  };
  auto nb = [](std::initializer_list<int64_t> d) {
    double n = 4;
    for (int64_t x : d) n *= static_cast<double>(x);
    return n;
  };
  struct Lin {
    const char* name;
    int64_t T, K, Nout;
    bool gelu;
  };
  for (Lin l : {Lin{"student qkv", Ts, D, 3 * D, false}, Lin{"student fc1+gelu", Ts, D, 4 * D, true},
                Lin{"student fc2", Ts, 4 * D, D, false}, Lin{"teacher qkv", Tf, Dt, 3 * Dt, false},
                Lin{"teacher fc1", Tf, Dt, 4 * Dt, false}, Lin{"decoder fc1+gelu", Tf, Dd, 4 * Dd, true},
                Lin{"head", Ts, D, Dt, false}}) {
    double R = static_cast<double>(B * l.T), f = 2.0 * R * l.K * l.Nout;
    std::vector<Slot> out = {dev(S({B, l.T, l.Nout}))};
    if (l.gelu) out.push_back(dev(S({B, l.T, l.Nout})));
    Attrs at = A({{"trans_b", 1}, {"act", l.gelu ? 1.0 : 0.0}});
    add("gemm",
        std::string(l.name) + " fwd [" + std::to_string(B * l.T) + "," + std::to_string(l.K) + "]x[" +
            std::to_string(l.Nout) + "," + std::to_string(l.K) + "]^T",
        {dev(S({B, l.T, l.K})), dev(S({l.Nout, l.K})), dev(S({l.Nout}))}, out, at, f,
        4 * (R * l.K + l.K * l.Nout + R * l.Nout * out.size()));
  }
  for (Lin l : {Lin{"student fc2", Ts, 4 * D, D, false}, Lin{"student fc1", Ts, D, 4 * D, false}}) {
    double R = static_cast<double>(B * l.T), f = 2.0 * R * l.K * l.Nout;
    add("gemm", std::string(l.name) + " bwd dX", {dev(S({B * l.T, l.Nout})), dev(S({l.Nout, l.K}))},
        {dev(S({B * l.T, l.K}))}, {}, f, 4 * (R * l.Nout + l.Nout * l.K + R * l.K));
    add("gemm", std::string(l.name) + " bwd dW (trans_a, acc)", {dev(S({B * l.T, l.Nout})), dev(S({B * l.T, l.K}))},
        {dev(S({l.Nout, l.K}))}, A({{"trans_a", 1}, {"acc", 1}}), f, 4 * (R * l.Nout + R * l.K + 2.0 * l.Nout * l.K));
  }
  struct Att {
    const char* name;
    int64_t T, H, Hd;
  };
  for (Att a : {Att{"student (sparse)", Ts, 12, 64}, Att{"teacher", Tf, 12, 64}, Att{"decoder", Tf, 16, 32}}) {
    double f = 4.0 * B * a.H * static_cast<double>(a.T) * a.T * a.Hd;
    Shape qs = S({B, a.T, 3 * a.H * a.Hd}), os = S({B, a.T, a.H * a.Hd}), ls = S({B, a.H, a.T});
    Attrs at = A({{"heads", static_cast<double>(a.H)}});
    std::string tag = std::string(a.name) + " B" + std::to_string(B) + " T" + std::to_string(a.T) + " H" +
                      std::to_string(a.H) + " Hd" + std::to_string(a.Hd);
    add("attention", tag, {dev(qs)}, {dev(os), dev(ls)}, at, f, 4.0 * (qs.numel() + os.numel() + ls.numel()));
    add("attention_bwd", tag, {dev(os), dev(qs), dev(os), dev(ls)}, {dev(qs)}, at, 2.5 * f,
        4.0 * (2 * qs.numel() + 2 * os.numel() + ls.numel()));
  }
  const Shape xs = S({B, Ts, D}), xf = S({B, Tf, Dt}), hs = S({B, Ts, 4 * D});
  const double nx = xs.numel(), nh = hs.numel();
  add("layernorm", "student [B,119,768]", {dev(xs), dev(S({D})), dev(S({D}))},
      {dev(xs), dev(S({B * Ts})), dev(S({B * Ts}))}, A({{"eps", 1e-6}}), 0, 4 * (2 * nx));
  add("layernorm_bwd", "student [B,119,768]", {dev(xs), dev(xs), dev(S({B * Ts})), dev(S({B * Ts})), dev(S({D}))},
      {dev(xs), dev(S({D})), dev(S({D}))}, {}, 0, 4 * (3 * nx));
  add("layernorm", "teacher [B,197,768]", {dev(xf), dev(S({Dt})), dev(S({Dt}))},
      {dev(xf), dev(S({B * Tf})), dev(S({B * Tf}))}, A({{"eps", 1e-6}}), 0, 4.0 * 2 * xf.numel());
  add("gelu_bwd", "student [B,119,3072]", {dev(hs), dev(hs)}, {dev(hs)}, {}, 0, 4 * 3 * nh);
  add("quick_gelu", "teacher [B,197,3072]", {dev(S({B, Tf, 4 * Dt}))}, {dev(S({B, Tf, 4 * Dt}))}, {}, 0,
      4.0 * 2 * B * Tf * 4 * Dt);
  add("gelu", "student [B,119,3072]", {dev(hs)}, {dev(hs)}, {}, 0, 4 * 2 * nh);
  add("add", "bias [B,119,768]+[768]", {dev(xs), dev(S({D}))}, {dev(xs)}, {}, 0, 4 * 2 * nx);
  add("sum_to", "bias grad [B,119,3072]->[3072]", {dev(hs)}, {dev(S({4 * D}))}, {}, 0, 4 * nh);
  add("scale_add", "residual [B,119,768]", {dev(xs), dev(S({D})), dev(S({B}))}, {dev(xs)}, {}, 0, 4 * 3 * nx);
  add("scale_add_bwd", "residual [B,119,768]", {dev(xs), dev(xs), dev(S({D})), dev(S({B}))}, {dev(xs), dev(S({D}))}, {},
      0, 4 * 3 * nx);
  add("copy", "[B,119,768]", {dev(xs)}, {dev(xs)}, {}, 0, 4 * 2 * nx);
  add("copy_rows", "cls concat [B,197,768]", {dev(S({B, N, D}))}, {dev(xf)},
      A({{"src", 0}, {"dst", 1}, {"count", static_cast<double>(N)}}), 0, 4.0 * 2 * B * N * D);
  add("gather_rows", "visible [B,197,768]->[B,119,768]", {dev(xf), distinct_idx(B, Ts, Tf)}, {dev(xs)}, {}, 0,
      4 * 2 * nx);
  add("scatter_rows", "decoder [B,119,512]->[B,197,512]", {dev(S({B, Ts, Dd})), distinct_idx(B, Ts, Tf)},
      {dev(S({B, Tf, Dd}))}, {}, 0, 4.0 * 2 * B * Ts * Dd);
  add("mask_fill", "decoder [B,197,512]", {mask_u8(B, Tf, M), dev(S({Dd}))}, {dev(S({B, Tf, Dd}))}, {}, 0,
      4.0 * 2 * B * M * Dd);
  add("mask_fill_bwd", "decoder [B,197,512]", {mask_u8(B, Tf, M), dev(S({B, Tf, Dd}))},
      {dev(S({B, Tf, Dd})), dev(S({Dd}))}, {}, 0, 4.0 * 2 * B * Tf * Dd);
  add("patchify", "images [B,3,224,224] p16", {dev(S({B, 3, 224, 224}))}, {dev(S({B, N, P}))},
      A({{"patch", 16}, {"order", 1}}), 0, nb({B, 3, 224, 224}) * 2);
  add("unpatchify", "[B,196,768] p16", {dev(S({B, N, P}))}, {dev(S({B, 3, 224, 224}))},
      A({{"patch", 16}, {"order", 0}}), 0, nb({B, 3, 224, 224}) * 2);
  add("pixel_norm", "targets [B*78,768]", {dev(S({B * M, P}))}, {dev(S({B * M, P}))}, A({{"eps", 1e-6}}), 0,
      nb({B, M, P}) * 2);
  add("medic_loss", "s,t [B,119,768] pred [B,78,768]",
      {dev(S({B, Ts, Dt})), dev(S({B, Ts, Dt})), dev(S({B, M, P})), dev(S({B, M, P}))},
      {dev(S({4})), dev(S({B, Ts, Dt})), dev(S({B, M, P}))}, {}, 0, nb({B, Ts, Dt}) * 3 + nb({B, M, P}) * 3);
  add("softmax", "[B*12*197,197]", {dev(S({B * 12 * Tf, Tf}))}, {dev(S({B * 12 * Tf, Tf}))}, {}, 0,
      nb({B, 12, Tf, Tf}) * 2);
  add("cross_entropy", "[B,1000]", {dev(S({B, 1000})), i32(S({B}), std::vector<int32_t>(static_cast<size_t>(B), 3))},
      {dev(S({1})), dev(S({B, 1000}))}, {}, 0, nb({B, 1000}) * 2);
  add("drop_path_mask", "B", {i32(S({2}), {1, 2})}, {dev(S({B}))}, A({{"p", 0.1}}), 0, 4.0 * B);
  const int64_t params = 86'000'000 + 590'000 + 26'000'000;  // student + head + decoder, about
  add("grad_norm", "all trainable params", {dev(S({params}))}, {dev(S({1}))}, {}, 0, 4.0 * params);
  add("adamw", "all trainable params",
      {dev(S({params})), u8(S({params}), std::vector<uint8_t>(static_cast<size_t>(params), 1)),
       from_f32(S({3}), {1e-3f, 0.05f, 2}), dev(S({1}))},
      {dev(S({params})), dev(S({params})), dev(S({params}))}, A({{"max_norm", 3.0}}), 0, 29.0 * params);
  add("init_normal", "all trainable params", {}, {dev(S({params}))},
      A({{"std", 0.02}, {"lo", -0.04}, {"hi", 0.04}, {"seed", 1}}), 0, 4.0 * params);
  add("init_uniform", "all trainable params", {}, {dev(S({params}))}, A({{"lo", -0.1}, {"hi", 0.1}, {"seed", 1}}), 0,
      4.0 * params);
  add("fill", "all trainable params", {}, {dev(S({params}))}, A({{"value", 0}}), 0, 4.0 * params);
  add("cast", "[B,119,768] f32->bf16", {dev(xs)}, {dev(xs, DType::BF16)}, {}, 0, 6 * nx);
  return v;
}

std::vector<TimeRow> run_timing(int64_t B, int reps, const std::set<std::string>& only) {
  std::vector<TimeRow> rows;
  Engine& e = *engines().gpu;
  cudaStream_t st = static_cast<cuda::CudaContext*>(e.context().cuda)->stream;
  cudaEvent_t e0, e1;
  cuda::check(cudaEventCreate(&e0), "cudaEventCreate");
  cuda::check(cudaEventCreate(&e1), "cudaEventCreate");
  uint64_t seed = 1;
  for (TimeCase& c : time_cases(B)) {
    if (!only.empty() && !only.count(c.op)) continue;
    TimeRow row{c.op, c.label, "OK", 0, 0, 0, c.flops, c.bytes};
    const OpDef* def = find_op(c.op);
    if (!def->cuda) {
      row.status = "MISSING";
      rows.push_back(row);
      std::printf("MISSING %-15s %s\n", c.op.c_str(), c.label.c_str());
      continue;
    }
    try {
      DevTensors d;
      d.eng = &e;
      d.in_bytes.resize(c.in.size());
      d.out_bytes.resize(c.out.size());
      for (size_t i = 0; i < c.in.size(); ++i) {
        const Slot& s = c.in[i];
        Tensor t;
        t.shape = s.shape;
        t.dtype = s.dtype;
        t.device = Device::CUDA;
        d.in_bytes[i] = s.nbytes();
        t.data = e.alloc(std::max<size_t>(s.nbytes(), 1));
        if (s.init == Init::Data)
          e.to_device(t.data, s.bytes.data(), s.nbytes());
        else if (s.dtype == DType::F32)
          bench::fill_random(t.f32(), s.numel(), seed++, 1.0f, st);
        d.in.push_back(t);
      }
      // Positive values where the op needs them: lse is a log-sum-exp, rstd a reciprocal std, keep 0 or 1/(1-p).
      for (size_t i = 0; i < c.out.size(); ++i) {
        const Slot& s = c.out[i];
        Tensor t;
        t.shape = s.shape;
        t.dtype = s.dtype;
        t.device = Device::CUDA;
        d.out_bytes[i] = s.nbytes();
        t.data = e.alloc(std::max<size_t>(s.nbytes(), 1));
        if (s.dtype == DType::F32) bench::fill_random(t.f32(), s.numel(), seed++, 1.0f, st);
        d.out.push_back(t);
      }
      OpCall call{def,      d.in.data(), static_cast<int>(d.in.size()), d.out.data(), static_cast<int>(d.out.size()),
                  &c.attrs, &e.context()};
      check_call(call);
      for (int w = 0; w < 2; ++w) run_op(call, false);
      e.synchronize();
      std::vector<float> ms;
      for (int r = 0; r < reps; ++r) {
        cuda::check(cudaEventRecord(e0, st), "cudaEventRecord");
        run_op(call, false);
        cuda::check(cudaEventRecord(e1, st), "cudaEventRecord");
        cuda::check(cudaEventSynchronize(e1), "cudaEventSynchronize");
        float m = 0;
        cuda::check(cudaEventElapsedTime(&m, e0, e1), "cudaEventElapsedTime");
        ms.push_back(m);
      }
      std::sort(ms.begin(), ms.end());
      row.ms = ms[ms.size() / 2];
      if (c.flops > 0) row.tflops = c.flops / (row.ms * 1e-3) / 1e12;
      if (c.bytes > 0) row.gbs = c.bytes / (row.ms * 1e-3) / 1e9;
    } catch (const std::exception& ex) {
      row.status = std::string("ERROR: ") + ex.what();
      cudaGetLastError();
      try {
        engines().gpu.reset();
        engines().gpu = std::make_unique<Engine>(Device::CUDA, 0, 1);
      } catch (...) {
      }
      rows.push_back(row);
      std::printf("ERROR   %-15s %-48s %s\n", c.op.c_str(), c.label.c_str(), ex.what());
      return rows;  // the engine (and its stream) changed: stop timing rather than time on a stale stream
    }
    if (c.flops > 0)
      std::printf("TIME    %-15s %-48s %9.3f ms  %7.1f TFLOP/s  %7.0f GB/s\n", c.op.c_str(), c.label.c_str(), row.ms,
                  row.tflops, row.gbs);
    else
      std::printf("TIME    %-15s %-48s %9.3f ms  %7.0f GB/s\n", c.op.c_str(), c.label.c_str(), row.ms, row.gbs);
    std::fflush(stdout);
    rows.push_back(row);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path;
  std::set<std::string> only;
  bool timing = true, parity = true, self_test = false;
  int reps = 10;
  int64_t batch = 256;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--json") {
      json_path = next();
    } else if (a == "--only") {
      std::stringstream ss(next());
      std::string op;
      while (std::getline(ss, op, ',')) {
        if (!find_op(op)) {
          std::fprintf(stderr, "--only: unknown op '%s'\n", op.c_str());
          return 2;
        }
        only.insert(op);
      }
    } else if (a == "--no-timing") {
      timing = false;
    } else if (a == "--no-parity") {
      parity = false;
    } else if (a == "--reps") {
      reps = std::max(1, std::atoi(next().c_str()));
    } else if (a == "--batch") {
      batch = std::max<int64_t>(1, std::atoll(next().c_str()));
    } else if (a == "--seed") {
      seed_value() = std::strtoull(next().c_str(), nullptr, 10);
    } else if (a == "--cpu-self-test") {
      self_test = true;
    } else if (a == "--list") {
      for (const std::string& n : op_names()) std::printf("%s %s\n", n.c_str(), find_op(n)->cuda ? "cuda" : "MISSING");
      return 0;
    } else {
      std::fprintf(stderr,
                   "usage: medic_parity [--json out.json] [--only op,...] [--no-timing] [--no-parity] [--reps N] "
                   "[--batch B] [--seed S] [--list] [--cpu-self-test]\n");
      return 2;
    }
  }
  if (self_test) {
    engines().cpu = std::make_unique<Engine>(Device::CPU, 0, 0);
    auto rows = run_parity(only);
    int bad = 0;
    for (auto& r : rows) bad += r.status != "PASS";
    std::printf("cpu self-test: %zu cases, %d not passing\n", rows.size(), bad);
    return bad ? 1 : 0;
  }
  if (cuda_device_count() < 1) {
    std::fprintf(stderr, "medic_parity: no CUDA device: %s\n", cuda_describe(0).c_str());
    return 3;
  }
  std::string device = cuda_describe(0);
  std::printf("device: %s\n", device.c_str());
  engines().cpu = std::make_unique<Engine>(Device::CPU, 0, 0);
  engines().gpu = std::make_unique<Engine>(Device::CUDA, 0, 1);
  std::printf("cpu: %s\n", engines().cpu->describe().c_str());
  std::printf("seed: %llu (--seed %llu reproduces these inputs)\n", static_cast<unsigned long long>(seed_value()),
              static_cast<unsigned long long>(seed_value()));

  int pass = 0, fail = 0, missing = 0;
  std::vector<ParityRow> prow;
  auto t0 = std::chrono::steady_clock::now();
  if (parity) {
    prow = run_parity(only);
    for (auto& r : prow) (r.status == "PASS" ? pass : r.status == "MISSING" ? missing : fail) += 1;
  }
  double parity_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  bench::CopyCeiling copy;
  bench::MmaCeiling mma;
  bench::H2DCeiling h2d;
  std::vector<TimeRow> trow;
  std::string ceiling_error;
  if (timing) {
    cudaStream_t st = static_cast<cuda::CudaContext*>(engines().gpu->context().cuda)->stream;
    try {
      copy = bench::measure_copy(size_t{2} << 30, reps, st);
      mma = bench::measure_mma(static_cast<cuda::CudaContext*>(engines().gpu->context().cuda)->sm_count, reps, st);
      const size_t images = static_cast<size_t>(batch) * 3 * 224 * 224 * 4;
      h2d = bench::measure_h2d(images, std::max(3, reps / 2), st);
      std::printf(
          "CEILING copy kernel %.0f GB/s, cudaMemcpy D2D %.0f GB/s (bytes read + written); bf16 mma.sync %.0f TFLOP/s; "
          "H2D of the image batch (%.0f MB) pageable %.1f GB/s, pinned %.1f GB/s\n",
          copy.kernel_gbs, copy.memcpy_gbs, mma.tflops, h2d.bytes / 1e6, h2d.pageable_gbs, h2d.pinned_gbs);
    } catch (const std::exception& e) {
      ceiling_error = e.what();
      std::printf("CEILING error: %s\n", e.what());
    }
    trow = run_timing(batch, reps, only);
  }

  const double kGemmRef = 790.0;  // TFLOP/s, bf16 GEMM through PyTorch (cuBLAS) on this H200 kind (docs/GPU.md)
  const double copy_ref = std::max(copy.kernel_gbs, copy.memcpy_gbs);
  if (!json_path.empty()) {
    std::ostringstream j;
    j << "{\n  \"tool\": \"medic_parity\",\n  \"device\": " << jstr(device)
      << ",\n  \"cpu\": " << jstr(engines().cpu->describe()) << ",\n";
    j << "  \"seed\": " << seed_value() << ",\n";
    j << "  \"summary\": {\"pass\": " << pass << ", \"fail\": " << fail << ", \"missing\": " << missing
      << ", \"parity_seconds\": " << jnum(parity_s) << "},\n";
    j << "  \"ceilings\": {\"copy_kernel_gbs\": " << jnum(copy.kernel_gbs)
      << ", \"copy_memcpy_gbs\": " << jnum(copy.memcpy_gbs) << ", \"mma_sync_bf16_tflops\": " << jnum(mma.tflops)
      << ", \"gemm_reference_tflops\": " << kGemmRef << ", \"h2d_pageable_gbs\": " << jnum(h2d.pageable_gbs)
      << ", \"h2d_pinned_gbs\": " << jnum(h2d.pinned_gbs) << ", \"h2d_bytes\": " << jnum(h2d.bytes)
      << ", \"error\": " << jstr(ceiling_error) << "},\n";
    j << "  \"parity\": [";
    for (size_t i = 0; i < prow.size(); ++i) {
      const ParityRow& r = prow[i];
      j << (i ? ",\n    " : "\n    ") << "{\"op\": " << jstr(r.op) << ", \"case\": " << jstr(r.label)
        << ", \"status\": " << jstr(r.status) << ", \"err\": " << jnum(r.err) << ", \"tol\": " << jnum(r.tol)
        << ", \"unwritten\": " << r.unwritten << ", \"hash\": " << jstr(r.hash) << ", \"detail\": " << jstr(r.detail)
        << "}";
    }
    j << "\n  ],\n  \"timing\": {\"batch\": " << batch << ", \"reps\": " << reps << ", \"rows\": [";
    for (size_t i = 0; i < trow.size(); ++i) {
      const TimeRow& r = trow[i];
      j << (i ? ",\n    " : "\n    ") << "{\"op\": " << jstr(r.op) << ", \"case\": " << jstr(r.label)
        << ", \"status\": " << jstr(r.status) << ", \"ms\": " << jnum(r.ms) << ", \"flops\": " << jnum(r.flops)
        << ", \"bytes\": " << jnum(r.bytes) << ", \"tflops\": " << jnum(r.tflops) << ", \"gbs\": " << jnum(r.gbs)
        << ", \"pct_gemm_ref\": " << jnum(r.flops > 0 ? 100.0 * r.tflops / kGemmRef : NAN)
        << ", \"pct_copy\": " << jnum(copy_ref > 0 && r.flops == 0 ? 100.0 * r.gbs / copy_ref : NAN) << "}";
    }
    j << "\n  ]}\n}\n";
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
      return 2;
    }
    std::fputs(j.str().c_str(), f);
    std::fclose(f);
  }
  std::printf("\nparity: %d pass, %d fail, %d missing (%.1f s)\n", pass, fail, missing, parity_s);
  if (timing)
    std::printf(
        "ceilings: copy %.0f GB/s, mma.sync bf16 %.0f TFLOP/s, reference bf16 GEMM %.0f TFLOP/s (docs/GPU.md)\n",
        copy_ref, mma.tflops, kGemmRef);
  return fail || missing ? 1 : 0;
}
