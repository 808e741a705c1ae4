// The op table (one row per op of MEDIC_OP_LIST) and the single dispatch point for every backend.
#include <string>

#include "medic/ops.h"

namespace medic {

bool Attrs::has(const char* key) const {
  for (auto& p : kv)
    if (p.first == key) return true;
  return false;
}

double Attrs::get(const char* key, double def) const {
  for (auto& p : kv)
    if (p.first == key) return p.second;
  return def;
}

void Attrs::set(const std::string& key, double value) {
  for (auto& p : kv)
    if (p.first == key) {
      p.second = value;
      return;
    }
  kv.emplace_back(key, value);
}

namespace {

struct Table {
  OpDef defs[static_cast<int>(OpId::count)];
  Table() {
#define MEDIC_OP_ROW(name, a, b, c, d) \
  defs[static_cast<int>(OpId::name)] = \
      OpDef{OpId::name, #name, a, b, c, d, check_##name, cpu::name, cuda_kernel(OpId::name)};
    MEDIC_OP_LIST(MEDIC_OP_ROW)
#undef MEDIC_OP_ROW
  }
};

const Table& table() {
  static const Table t;
  return t;
}

}  // namespace

const OpDef* find_op(const std::string& name) {
  for (const OpDef& d : table().defs)
    if (name == d.name) return &d;
  return nullptr;
}

const OpDef& op_def(OpId id) { return table().defs[static_cast<int>(id)]; }

std::vector<std::string> op_names() {
  std::vector<std::string> names;
  for (const OpDef& d : table().defs) names.emplace_back(d.name);
  return names;
}

namespace {

// The in-place forms the contract allows (ops.h): output `out` may be exactly input `in`.
bool in_place_ok(OpId op, int out, int in) {
  switch (op) {
    case OpId::copy:
    case OpId::cast:
    case OpId::gelu:
    case OpId::quick_gelu:
    case OpId::scale_add: return out == 0 && in == 0;
    case OpId::add:
    case OpId::gelu_bwd:
    case OpId::quick_gelu_bwd: return out == 0;
    case OpId::mask_fill_bwd: return out == 0 && in == 1;
    default: return false;
  }
}

bool overlap(const Tensor& a, const Tensor& b) {
  if (!a.data || !b.data || !a.nbytes() || !b.nbytes()) return false;
  auto pa = static_cast<const char*>(a.data), pb = static_cast<const char*>(b.data);
  return pa < pb + b.nbytes() && pb < pa + a.nbytes();
}

// Kernels assume that an output overlaps nothing else the op reads or writes, except the in-place forms.
void check_aliasing(const OpCall& c) {
  const char* name = c.def->name;
  for (int o = 0; o < c.n_out; ++o) {
    const Tensor& y = c.out[o];
    for (int i = 0; i < c.n_in; ++i) {
      const Tensor& x = c.in[i];
      if (!overlap(y, x)) continue;
      const bool allowed = in_place_ok(c.def->id, o, i);
      if (allowed && y.data == x.data && y.dtype == x.dtype && y.shape == x.shape) continue;
      throw Error(std::string(name) + ": output " + std::to_string(o) + " " + y.describe() + " overlaps input " +
                  std::to_string(i) + " " + x.describe() +
                  (allowed ? " (in place needs the very same tensor)" : " (this op cannot write over that input)"));
    }
    for (int p = 0; p < o; ++p)
      if (overlap(y, c.out[p]))
        throw Error(std::string(name) + ": output " + std::to_string(o) + " " + y.describe() + " overlaps output " +
                    std::to_string(p) + " " + c.out[p].describe());
  }
}

}  // namespace

void check_call(const OpCall& c) {
  const OpDef& d = *c.def;
  auto count = [&](const char* what, int n, int lo, int hi) {
    if (n < lo || n > hi)
      throw Error(std::string(d.name) + ": expected " +
                  (lo == hi ? std::to_string(lo) : std::to_string(lo) + ".." + std::to_string(hi)) + " " + what +
                  ", got " + std::to_string(n));
  };
  count("inputs", c.n_in, d.n_in_min, d.n_in_max);
  count("outputs", c.n_out, d.n_out_min, d.n_out_max);
  for (int i = 0; i < c.n_in; ++i) {
    if (i < d.n_in_min && c.in[i].data == nullptr && c.in[i].numel() != 0)
      throw Error(std::string(d.name) + ": input " + std::to_string(i) + " is required but was empty");
    if (c.in[i].data && c.in[i].device != c.ctx->device)
      throw Error(std::string(d.name) + ": input " + std::to_string(i) + " is " + c.in[i].describe() +
                  " but the op runs on " + (c.ctx->device == Device::CPU ? "cpu" : "cuda"));
  }
  for (int i = 0; i < c.n_out; ++i) {
    if (i < d.n_out_min && c.out[i].data == nullptr && c.out[i].numel() != 0)
      throw Error(std::string(d.name) + ": output " + std::to_string(i) + " is required but was empty");
    if (c.out[i].data && c.out[i].device != c.ctx->device)
      throw Error(std::string(d.name) + ": output " + std::to_string(i) + " is " + c.out[i].describe() +
                  " but the op runs on " + (c.ctx->device == Device::CPU ? "cpu" : "cuda"));
  }
  d.check(c);
  check_aliasing(c);
}

bool bf16_native_cuda(OpId op) {
  switch (op) {
    case OpId::fill:
    case OpId::cast:
    case OpId::gemm:
    case OpId::copy:
    case OpId::add:
    case OpId::sum_to:
    case OpId::gelu:
    case OpId::gelu_bwd:
    case OpId::quick_gelu:
    case OpId::quick_gelu_bwd:
    case OpId::softmax:
    case OpId::softmax_bwd:
    case OpId::layernorm:
    case OpId::layernorm_bwd:
    case OpId::attention:
    case OpId::attention_bwd:
    case OpId::scale_add:
    case OpId::scale_add_bwd:
    case OpId::copy_rows:
    case OpId::gather_rows:
    case OpId::scatter_rows:
    case OpId::mask_fill:
    case OpId::mask_fill_bwd:
    case OpId::pixel_norm:
    case OpId::medic_loss:
    case OpId::cross_entropy: return true;
    default: return false;
  }
}

namespace {
bool any_bf16(const OpCall& c) {
  for (int i = 0; i < c.n_in; ++i)
    if (c.in[i].data && c.in[i].dtype == DType::BF16) return true;
  for (int i = 0; i < c.n_out; ++i)
    if (c.out[i].data && c.out[i].dtype == DType::BF16) return true;
  return false;
}
}  // namespace

void run_op(const OpCall& c, bool checked) {
  if (checked) check_call(c);
  const bool cpu = c.ctx->device == Device::CPU;
  KernelFn fn = cpu ? c.def->cpu : c.def->cuda;
  if (!fn) throw Error(std::string(c.def->name) + ": no CUDA kernel in this build");
  const OpId id = c.def->id;
  if (any_bf16(c)) {
    // On the CPU, ops without a bf16 kernel run the fp32 one on widened copies; CUDA has no such
    // fallback (bf16_native_cuda lists every op its kernels take bf16 tensors in).
    if (!cpu && !bf16_native_cuda(id))
      throw Error(std::string(c.def->name) + ": its CUDA kernel does not take bf16 tensors");
    if (cpu && !bf16_native(id)) return cpu::run_widened(c, fn);
  }
  fn(c);
}

}  // namespace medic
