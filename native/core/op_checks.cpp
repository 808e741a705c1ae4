// The shape and dtype contract of every op (see ops.h), checked before any backend runs.
// Messages name the op, the slot, what was expected and what was found.
#include <string>
#include <utility>

#include "medic/op_args.h"
#include "medic/ops.h"

namespace medic {

// The activation slots that may be bf16 (ops.h, Precision): bit i of the input / output mask is slot i.
// Statistics (lse, mean, rstd), losses, parameters and their gradients, masks and indices stay f32.
bool bf16_slot(OpId op, bool input, int slot) {
  unsigned ins = 0, outs = 0;
  switch (op) {
    case OpId::copy:
    case OpId::gelu:
    case OpId::quick_gelu:
    case OpId::softmax:
    case OpId::pixel_norm:
    case OpId::copy_rows:
    case OpId::gather_rows:
    case OpId::scatter_rows:
    case OpId::attention:
    case OpId::layernorm: ins = 1, outs = 1; break;
    case OpId::add:
    case OpId::gelu_bwd:
    case OpId::quick_gelu_bwd:
    case OpId::softmax_bwd:
    case OpId::layernorm_bwd: ins = 3, outs = 1; break;  // layernorm_bwd: dy, x -> dx
    case OpId::sum_to: ins = 1; break;
    case OpId::attention_bwd: ins = 7, outs = 1; break;  // do, qkv, o -> dqkv
    case OpId::scale_add: ins = 1, outs = 1; break;      // y -> x
    case OpId::scale_add_bwd: ins = 3, outs = 1; break;  // dx, y -> dy
    case OpId::mask_fill: outs = 1; break;
    case OpId::mask_fill_bwd: ins = 2, outs = 1; break;
    case OpId::medic_loss: ins = 15, outs = 6; break;    // s, t, pred, target -> ds, dpred
    case OpId::cross_entropy: ins = 1, outs = 2; break;  // logits -> dlogits
    default: break;
  }
  return ((input ? ins : outs) >> slot) & 1u;
}

// The CPU kernels that read and write bf16 themselves (templated on the storage, cpu/bf16_io.h); a
// mixed call (bf16 beside an f32 activation) still widens, inside the kernel.
bool bf16_native(OpId op) {
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
    case OpId::scale_add:
    case OpId::scale_add_bwd:
    case OpId::layernorm:
    case OpId::layernorm_bwd:
    case OpId::copy_rows:
    case OpId::gather_rows:
    case OpId::scatter_rows:
    case OpId::attention:
    case OpId::attention_bwd: return true;
    default: return false;
  }
}

namespace {

[[noreturn]] void fail(const OpCall& c, const std::string& msg) { throw Error(std::string(c.def->name) + ": " + msg); }

std::string slot_name(bool input, int i) { return std::string(input ? "input " : "output ") + std::to_string(i); }

const Tensor& in(const OpCall& c, int i) { return c.in[i]; }
const Tensor& out(const OpCall& c, int i) { return c.out[i]; }

void dtype_is(const OpCall& c, const Tensor& t, bool input, int i, DType dt) {
  if (t.dtype != dt) fail(c, slot_name(input, i) + " must be " + dtype_name(dt) + ", got " + t.describe());
}
// An f32 slot, or bf16 where the op's contract lets that slot be stored in bf16 (bf16_slot).
void f32_in(const OpCall& c, int i) {
  if (in(c, i).dtype == DType::BF16 && bf16_slot(c.def->id, true, i)) return;
  dtype_is(c, in(c, i), true, i, DType::F32);
}
void f32_out(const OpCall& c, int i) {
  if (out(c, i).dtype == DType::BF16 && bf16_slot(c.def->id, false, i)) return;
  dtype_is(c, out(c, i), false, i, DType::F32);
}
// A float tensor: f32 or bf16 (the slots of the mixed-precision ops, ops.h).
void float_is(const OpCall& c, const Tensor& t, bool input, int i) {
  if (t.dtype != DType::F32 && t.dtype != DType::BF16)
    fail(c, slot_name(input, i) + " must be f32 or bf16, got " + t.describe());
}

void shape_is(const OpCall& c, const Tensor& t, bool input, int i, const Shape& s) {
  if (t.shape != s) fail(c, slot_name(input, i) + " must have shape " + s.str() + ", got " + t.shape.str());
}
void ndim_is(const OpCall& c, const Tensor& t, bool input, int i, int nd) {
  if (t.shape.nd != nd)
    fail(c, slot_name(input, i) + " must have " + std::to_string(nd) + " dims, got " + t.shape.str());
}
void ndim_at_least(const OpCall& c, const Tensor& t, bool input, int i, int nd) {
  if (t.shape.nd < nd)
    fail(c, slot_name(input, i) + " must have at least " + std::to_string(nd) + " dims, got " + t.shape.str());
}
void same_shape(const OpCall& c, const Tensor& a, bool ia, int i, const Tensor& b, bool ib, int j) {
  if (a.shape != b.shape)
    fail(c, slot_name(ib, j) + " must have the shape of " + slot_name(ia, i) + " " + a.shape.str() + ", got " +
                b.shape.str());
}
void numel_is(const OpCall& c, const Tensor& t, bool input, int i, int64_t n) {
  if (t.numel() != n)
    fail(c, slot_name(input, i) + " must have " + std::to_string(n) + " elements, got " + t.shape.str());
}
void acc_ok(const OpCall& c) {
  const int64_t a = acc_value(c);
  if (a != 0 && a != 1) fail(c, "attr acc must be 0 or 1, got " + std::to_string(a));
}
// A required positive integer attr: `value` is what op_args.h decoded for it.
void positive_attr(const OpCall& c, const char* name, int64_t value) {
  if (!c.attrs->has(name)) fail(c, std::string("attr ") + name + " is required");
  if (value <= 0) fail(c, std::string("attr ") + name + " must be positive, got " + std::to_string(value));
}
// Rows x last-dim view of a tensor: every tensor with >= 1 dims.
int64_t last_dim(const Tensor& t) { return t.shape.nd ? t.shape[-1] : 1; }

}  // namespace

void check_fill(const OpCall&) {}

void check_copy(const OpCall& c) {
  f32_in(c, 0);
  f32_out(c, 0);
  numel_is(c, out(c, 0), false, 0, in(c, 0).numel());
  acc_ok(c);
}

void check_cast(const OpCall& c) {
  auto ok = [](DType d) { return d == DType::F32 || d == DType::BF16; };
  if (!ok(in(c, 0).dtype) || !ok(out(c, 0).dtype))
    fail(c, "casts between f32 and bf16 only, got " + in(c, 0).describe() + " -> " + out(c, 0).describe());
  numel_is(c, out(c, 0), false, 0, in(c, 0).numel());
}

void check_add(const OpCall& c) {
  f32_in(c, 0);
  f32_in(c, 1);
  f32_out(c, 0);
  const Shape& a = in(c, 0).shape;
  const Shape& b = in(c, 1).shape;
  if (b.nd > a.nd) fail(c, "input 1 " + b.str() + " has more dims than input 0 " + a.str());
  for (int i = 0; i < b.nd; ++i)
    if (b.d[i] != a.d[a.nd - b.nd + i])
      fail(c, "input 1 " + b.str() + " must equal the trailing dims of input 0 " + a.str());
  same_shape(c, in(c, 0), true, 0, out(c, 0), false, 0);
}

void check_sum_to(const OpCall& c) {
  f32_in(c, 0);
  f32_out(c, 0);
  const Shape& x = in(c, 0).shape;
  const Shape& y = out(c, 0).shape;
  if (y.nd > x.nd) fail(c, "output 0 " + y.str() + " has more dims than input 0 " + x.str());
  for (int i = 0; i < y.nd; ++i)
    if (y.d[i] != x.d[x.nd - y.nd + i])
      fail(c, "output 0 " + y.str() + " must equal the trailing dims of input 0 " + x.str());
  acc_ok(c);
}

void check_gemm(const OpCall& c) {
  const Tensor &A = in(c, 0), &B = in(c, 1), &C = out(c, 0);
  float_is(c, A, true, 0);
  float_is(c, B, true, 1);
  float_is(c, C, false, 0);
  ndim_at_least(c, A, true, 0, 2);
  ndim_at_least(c, B, true, 1, 2);
  const GemmDims d = gemm_dims(c);  // what both kernels will read (medic/op_args.h)
  const bool ta = d.ta, tb = d.tb;
  const int64_t act = d.act;
  if (act != 0 && act != 1) fail(c, "attr act must be 0 (none) or 1 (gelu), got " + std::to_string(act));
  acc_ok(c);
  if (act == 1 && d.acc) fail(c, "act=1 (gelu) cannot accumulate (acc=1)");
  const int64_t K_b = d.K_b, N = d.N, M = d.M, K_a = d.K;
  Shape expect;
  if (B.shape.nd == 2) {
    // A's leading dims are rows. trans_a: A is [K, M] after flattening its leading dims into K.
    if (ta) {
      expect = make_shape({M, N});
    } else {
      expect = A.shape;
      expect.d[expect.nd - 1] = N;
    }
  } else {
    if (A.shape.nd != B.shape.nd)
      fail(c, "batched gemm needs A and B with the same number of dims, got A " + A.shape.str() + " and B " +
                  B.shape.str());
    for (int i = 0; i < A.shape.nd - 2; ++i)
      if (A.shape.d[i] != B.shape.d[i])
        fail(c, "batched gemm needs equal batch dims, got A " + A.shape.str() + " and B " + B.shape.str());
    expect = A.shape;
    expect.d[expect.nd - 2] = M;
    expect.d[expect.nd - 1] = N;
  }
  if (K_a != K_b)
    fail(c, "inner dims differ: op(A) has K=" + std::to_string(K_a) + " (A " + A.shape.str() + (ta ? ", trans_a" : "") +
                "), op(B) has K=" + std::to_string(K_b) + " (B " + B.shape.str() + (tb ? ", trans_b" : "") + ")");
  if (C.numel() != expect.numel() || C.shape[-1] != N)
    fail(c, "output 0 must have shape " + expect.str() + ", got " + C.shape.str());
  if (c.has_in(2)) {
    f32_in(c, 2);
    numel_is(c, in(c, 2), true, 2, N);
  }
  if (act == 1) {
    if (!c.has_out(1)) fail(c, "act=1 (gelu) needs output 1 (preact) for the backward");
    dtype_is(c, out(c, 1), false, 1, C.dtype);  // preact is stored as C is
    same_shape(c, C, false, 0, out(c, 1), false, 1);
  }
}

static void check_unary(const OpCall& c) {
  f32_in(c, 0);
  f32_out(c, 0);
  same_shape(c, in(c, 0), true, 0, out(c, 0), false, 0);
}
static void check_unary_bwd(const OpCall& c) {
  f32_in(c, 0);
  f32_in(c, 1);
  f32_out(c, 0);
  same_shape(c, in(c, 0), true, 0, in(c, 1), true, 1);
  same_shape(c, in(c, 0), true, 0, out(c, 0), false, 0);
  acc_ok(c);
}
void check_gelu(const OpCall& c) { check_unary(c); }
void check_gelu_bwd(const OpCall& c) { check_unary_bwd(c); }
void check_quick_gelu(const OpCall& c) { check_unary(c); }
void check_quick_gelu_bwd(const OpCall& c) { check_unary_bwd(c); }
void check_softmax(const OpCall& c) {
  check_unary(c);
  ndim_at_least(c, in(c, 0), true, 0, 1);
}
void check_softmax_bwd(const OpCall& c) { check_unary_bwd(c); }

void check_batchnorm(const OpCall& c) {
  const Tensor& x = in(c, 0);
  f32_in(c, 0);
  ndim_is(c, x, true, 0, 2);
  const int64_t R = x.shape[0], C = x.shape[1];
  f32_out(c, 0);
  same_shape(c, x, true, 0, out(c, 0), false, 0);
  for (int i = 1; i < 3; ++i) {
    f32_out(c, i);
    numel_is(c, out(c, i), false, i, C);
  }
  const BatchNormArgs bn = batchnorm_args(c);
  const int64_t train = bn.train;
  if (train != 0 && train != 1) fail(c, "attr train must be 0 or 1, got " + std::to_string(train));
  if (train == 1 && R < 2)
    fail(c, "training needs at least 2 rows per batch (the unbiased variance), got " + x.shape.str());
  const double eps = bn.eps, momentum = bn.momentum;
  if (!(eps > 0)) fail(c, "attr eps must be > 0, got " + std::to_string(eps));
  if (!(momentum >= 0 && momentum <= 1)) fail(c, "attr momentum must be in [0, 1], got " + std::to_string(momentum));
}

void check_layernorm(const OpCall& c) {
  const Tensor& x = in(c, 0);
  f32_in(c, 0);
  ndim_at_least(c, x, true, 0, 1);
  const NormArgs a = norm_args(c);
  const int64_t C = a.C, R = a.R;
  for (int i = 1; i < 3; ++i)
    if (c.has_in(i)) {
      f32_in(c, i);
      numel_is(c, in(c, i), true, i, C);
    }
  if (c.has_in(2) && !c.has_in(1)) fail(c, "a bias (input 2) without a weight (input 1) is not supported");
  if (norm_args(c).unbiased && C < 2)
    fail(c, "unbiased=1 needs at least 2 features per row, found " + std::to_string(C));
  f32_out(c, 0);
  same_shape(c, x, true, 0, out(c, 0), false, 0);
  for (int i = 1; i < 3; ++i) {
    f32_out(c, i);
    numel_is(c, out(c, i), false, i, R);
  }
}

void check_layernorm_bwd(const OpCall& c) {
  const Tensor& x = in(c, 1);
  for (int i = 0; i < 4; ++i) f32_in(c, i);
  same_shape(c, x, true, 1, in(c, 0), true, 0);
  const NormArgs a = norm_args(c);
  const int64_t C = a.C, R = a.R;
  numel_is(c, in(c, 2), true, 2, R);
  numel_is(c, in(c, 3), true, 3, R);
  if (norm_args(c).unbiased && C < 2)
    fail(c, "unbiased=1 needs at least 2 features per row, found " + std::to_string(C));
  if (c.has_in(4)) {
    f32_in(c, 4);
    numel_is(c, in(c, 4), true, 4, C);
  }
  f32_out(c, 0);
  same_shape(c, x, true, 1, out(c, 0), false, 0);
  for (int i = 1; i < 3; ++i)
    if (c.has_out(i)) {
      if (!c.has_in(4)) fail(c, "output " + std::to_string(i) + " (a parameter gradient) needs the weight (input 4)");
      f32_out(c, i);
      numel_is(c, out(c, i), false, i, C);
    }
  acc_ok(c);
}

// heads, then qkv's rank and width, then the dims both kernels will read (medic/op_args.h).
static AttentionDims checked_attention_dims(const OpCall& c) {
  const int slot = attention_qkv_slot(c);
  const Tensor& qkv = in(c, slot);
  const int64_t H = attention_heads(c);
  positive_attr(c, "heads", H);
  ndim_is(c, qkv, true, slot, 3);
  if (qkv.shape[2] % (3 * H) != 0)
    fail(c, "qkv last dim " + std::to_string(qkv.shape[2]) +
                " is not 3 * heads * head_dim with heads=" + std::to_string(H));
  return attention_dims(c);
}

void check_attention(const OpCall& c) {
  f32_in(c, 0);
  const AttentionDims d = checked_attention_dims(c);
  const int64_t B = d.B, T = d.T, H = d.H, Hd = d.Hd;
  f32_out(c, 0);
  f32_out(c, 1);
  shape_is(c, out(c, 0), false, 0, make_shape({B, T, H * Hd}));
  shape_is(c, out(c, 1), false, 1, make_shape({B, H, T}));
}

void check_attention_bwd(const OpCall& c) {
  for (int i = 0; i < 4; ++i) f32_in(c, i);
  const AttentionDims d = checked_attention_dims(c);
  const int64_t B = d.B, T = d.T, H = d.H, Hd = d.Hd;
  shape_is(c, in(c, 0), true, 0, make_shape({B, T, H * Hd}));
  shape_is(c, in(c, 2), true, 2, make_shape({B, T, H * Hd}));
  shape_is(c, in(c, 3), true, 3, make_shape({B, H, T}));
  f32_out(c, 0);
  same_shape(c, in(c, 1), true, 1, out(c, 0), false, 0);
  acc_ok(c);
}

void check_attention_probs(const OpCall& c) {
  f32_in(c, 0);
  positive_attr(c, "heads", attention_heads(c));
  ndim_is(c, in(c, 0), true, 0, 3);
  const AttnProbsArgs a = attention_probs_args(c);
  if (in(c, 0).shape[2] % (3 * a.H) != 0)
    fail(c, "qkv last dim " + std::to_string(in(c, 0).shape[2]) +
                " is not 3 * heads * head_dim with heads=" + std::to_string(a.H));
  if (a.prefix < 0 || a.prefix >= a.T)
    fail(c, "attr prefix must be in [0, T) with T=" + std::to_string(a.T) + ", got " + std::to_string(a.prefix));
  f32_out(c, 0);
  shape_is(c, out(c, 0), false, 0, make_shape({a.B, a.N, a.N}));
}

static void check_gamma_keep(const OpCall& c, const Tensor& x, int gamma_slot, int keep_slot) {
  if (c.has_in(gamma_slot)) {
    f32_in(c, gamma_slot);
    numel_is(c, in(c, gamma_slot), true, gamma_slot, last_dim(x));
  }
  if (c.has_in(keep_slot)) {
    f32_in(c, keep_slot);
    numel_is(c, in(c, keep_slot), true, keep_slot, x.shape.nd ? x.shape[0] : 1);
  }
}

void check_scale_add(const OpCall& c) {
  f32_in(c, 0);
  f32_out(c, 0);
  ndim_at_least(c, out(c, 0), false, 0, 2);
  same_shape(c, out(c, 0), false, 0, in(c, 0), true, 0);
  check_gamma_keep(c, out(c, 0), 1, 2);
}

void check_scale_add_bwd(const OpCall& c) {
  f32_in(c, 0);
  f32_in(c, 1);
  ndim_at_least(c, in(c, 0), true, 0, 2);
  same_shape(c, in(c, 0), true, 0, in(c, 1), true, 1);
  check_gamma_keep(c, in(c, 0), 2, 3);
  f32_out(c, 0);
  same_shape(c, in(c, 0), true, 0, out(c, 0), false, 0);
  if (c.has_out(1)) {
    if (!c.has_in(2)) fail(c, "output 1 (dgamma) needs gamma (input 2)");
    f32_out(c, 1);
    numel_is(c, out(c, 1), false, 1, last_dim(in(c, 0)));
  }
  acc_ok(c);
}

void check_drop_path_mask(const OpCall& c) {
  dtype_is(c, in(c, 0), true, 0, DType::I32);
  numel_is(c, in(c, 0), true, 0, 2);
  f32_out(c, 0);
  ndim_is(c, out(c, 0), false, 0, 1);
  const float p = drop_path_args(c).p;
  if (!(p >= 0 && p < 1)) fail(c, "attr p must be in [0, 1), got " + std::to_string(p));
  if (c.ai("row0", 0) < 0) fail(c, "attr row0 must be >= 0, got " + std::to_string(c.ai("row0", 0)));
}

void check_copy_rows(const OpCall& c) {
  const Tensor &x = in(c, 0), &y = out(c, 0);
  f32_in(c, 0);
  f32_out(c, 0);
  ndim_is(c, x, true, 0, 3);
  ndim_is(c, y, false, 0, 3);
  acc_ok(c);
  if (x.shape[2] != y.shape[2]) fail(c, "row widths differ: input " + x.shape.str() + ", output " + y.shape.str());
  const CopyRowsArgs a = copy_rows_args(c);
  const int64_t src = a.src, dst = a.dst, n = a.count;
  if (n < 0 || src < 0 || dst < 0 || src + n > x.shape[1] || dst + n > y.shape[1])
    fail(c, "rows out of range: src=" + std::to_string(src) + " dst=" + std::to_string(dst) +
                " count=" + std::to_string(n) + " for input " + x.shape.str() + " and output " + y.shape.str());
  int64_t bx = x.shape[0], by = y.shape[0];
  bool ok = bx == by || bx == 1 || (by == 1 && a.acc);
  if (!ok)
    fail(c, "batch sizes " + std::to_string(bx) + " -> " + std::to_string(by) +
                ": expected equal, input batch 1 (broadcast), or output batch 1 with acc=1 (sum)");
}

static void check_index(const OpCall& c, const Tensor& idx, int slot, int64_t B) {
  dtype_is(c, idx, true, slot, DType::I32);
  ndim_is(c, idx, true, slot, 2);
  if (idx.shape[0] != B)
    fail(c, "input " + std::to_string(slot) + " (indices) must have batch " + std::to_string(B) + ", got " +
                idx.shape.str());
}

void check_gather_rows(const OpCall& c) {
  const Tensor &x = in(c, 0), &idx = in(c, 1), &y = out(c, 0);
  f32_in(c, 0);
  ndim_is(c, x, true, 0, 3);
  check_index(c, idx, 1, x.shape[0]);
  f32_out(c, 0);
  shape_is(c, y, false, 0, make_shape({x.shape[0], idx.shape[1], x.shape[2]}));
  acc_ok(c);
}

void check_scatter_rows(const OpCall& c) {
  const Tensor &y = in(c, 0), &idx = in(c, 1), &x = out(c, 0);
  f32_in(c, 0);
  ndim_is(c, y, true, 0, 3);
  check_index(c, idx, 1, y.shape[0]);
  if (idx.shape[1] != y.shape[1])
    fail(c, "input 1 (indices) must have shape [" + std::to_string(y.shape[0]) + ", " + std::to_string(y.shape[1]) +
                "], got " + idx.shape.str());
  f32_out(c, 0);
  ndim_is(c, x, false, 0, 3);
  if (x.shape[0] != y.shape[0] || x.shape[2] != y.shape[2])
    fail(c, "output 0 must be [" + std::to_string(y.shape[0]) + ", T, " + std::to_string(y.shape[2]) + "], got " +
                x.shape.str());
  acc_ok(c);
}

static void check_mask(const OpCall& c, const Tensor& mask, const Tensor& x) {
  dtype_is(c, mask, true, 0, DType::U8);
  shape_is(c, mask, true, 0, make_shape({x.shape[0], x.shape[1]}));
}

void check_mask_fill(const OpCall& c) {
  const Tensor& x = out(c, 0);
  f32_out(c, 0);
  ndim_is(c, x, false, 0, 3);
  check_mask(c, in(c, 0), x);
  f32_in(c, 1);
  numel_is(c, in(c, 1), true, 1, x.shape[2]);
}

void check_mask_fill_bwd(const OpCall& c) {
  const Tensor& dx = in(c, 1);
  f32_in(c, 1);
  ndim_is(c, dx, true, 1, 3);
  check_mask(c, in(c, 0), dx);
  f32_out(c, 0);
  same_shape(c, dx, true, 1, out(c, 0), false, 0);
  f32_out(c, 1);
  numel_is(c, out(c, 1), false, 1, dx.shape[2]);
}

static void check_patch_pair(const OpCall& c, const Tensor& img, bool img_in, const Tensor& x, bool x_in) {
  ndim_is(c, img, img_in, 0, 4);
  const PatchGeom g = patch_geom(c);  // what both kernels will read (medic/op_args.h)
  const int64_t p = g.patch;
  positive_attr(c, "patch", p);
  if (g.order != 0 && g.order != 1)
    fail(c, "attr order must be 0 (py, px, ch) or 1 (ch, py, px), got " + std::to_string(g.order));
  if (g.Hi % p || g.Wi % p)
    fail(c, "image " + std::to_string(g.Hi) + "x" + std::to_string(g.Wi) + " is not divisible by patch " +
                std::to_string(p));
  Shape s = make_shape({g.B, g.N, g.P});
  shape_is(c, x, x_in, 0, s);
  dtype_is(c, img, img_in, 0, DType::F32);
  dtype_is(c, x, x_in, 0, DType::F32);
}
void check_patchify(const OpCall& c) { check_patch_pair(c, in(c, 0), true, out(c, 0), false); }
void check_unpatchify(const OpCall& c) { check_patch_pair(c, out(c, 0), false, in(c, 0), true); }

void check_pixel_norm(const OpCall& c) {
  check_unary(c);
  if (norm_args(c).C < 2)
    fail(c, "needs at least 2 values per row for an unbiased variance, got " + in(c, 0).shape.str());
}

void check_medic_loss(const OpCall& c) {
  const Tensor &s = in(c, 0), &t = in(c, 1);
  f32_in(c, 0);
  f32_in(c, 1);
  ndim_is(c, s, true, 0, 3);
  same_shape(c, s, true, 0, t, true, 1);
  if (s.shape[1] < 1) fail(c, "input 0 needs the CLS row, got " + s.shape.str());
  f32_out(c, 0);
  numel_is(c, out(c, 0), false, 0, 4);
  f32_out(c, 1);
  same_shape(c, s, true, 0, out(c, 1), false, 1);
  // The weights and scales both kernels will read (medic/op_args.h); M and P are meaningful once
  // pred's rank has been checked below, and are not used before.
  const MedicLossPlan plan = medic_loss_plan(c);
  if (c.has_in(2) || c.has_in(3) || plan.w_pix != 0) {
    if (!c.has_in(2) || !c.has_in(3)) fail(c, "w_pix != 0 needs pred (input 2) and target (input 3)");
    f32_in(c, 2);
    f32_in(c, 3);
    ndim_is(c, in(c, 2), true, 2, 3);
    same_shape(c, in(c, 2), true, 2, in(c, 3), true, 3);
    if (in(c, 2).shape[0] != s.shape[0])
      fail(c, "pred batch " + std::to_string(in(c, 2).shape[0]) + " differs from the head's batch " +
                  std::to_string(s.shape[0]));
    if (!c.has_out(2)) fail(c, "pred (input 2) needs dpred (output 2)");
    f32_out(c, 2);
    same_shape(c, in(c, 2), true, 2, out(c, 2), false, 2);
  }
  if (!(plan.tau > 0)) fail(c, "attr tau must be positive");
  if (!(plan.beta > 0)) fail(c, "attr beta must be positive");
  if (plan.has_scale) {
    f32_in(c, 4);
    numel_is(c, in(c, 4), true, 4, 3);
  }
}

void check_loss_weights(const OpCall& c) {
  f32_in(c, 0);
  numel_is(c, in(c, 0), true, 0, 3);
  f32_out(c, 0);
  numel_is(c, out(c, 0), false, 0, 3);
}

void check_loss_weights_bwd(const OpCall& c) {
  f32_in(c, 0);
  numel_is(c, in(c, 0), true, 0, 3);
  f32_in(c, 1);
  numel_is(c, in(c, 1), true, 1, 4);
  f32_out(c, 0);
  numel_is(c, out(c, 0), false, 0, 3);
}

void check_cross_entropy(const OpCall& c) {
  const Tensor &z = in(c, 0), &y = in(c, 1);
  f32_in(c, 0);
  ndim_is(c, z, true, 0, 2);
  const bool soft = y.dtype == DType::F32;
  if (soft) {
    same_shape(c, z, true, 0, y, true, 1);
  } else {
    if (y.dtype != DType::I32) fail(c, "input 1 must be i32 labels [R] or f32 targets [R, C], got " + y.describe());
    numel_is(c, y, true, 1, z.shape[0]);
  }
  f32_out(c, 0);
  numel_is(c, out(c, 0), false, 0, 1);
  f32_out(c, 1);
  same_shape(c, z, true, 0, out(c, 1), false, 1);
  if (c.has_out(2)) {
    f32_out(c, 2);
    numel_is(c, out(c, 2), false, 2, 1);
  }
  const double ls = ce_smoothing(c);
  if (!(ls >= 0 && ls < 1)) fail(c, "attr smoothing must be in [0, 1), got " + std::to_string(ls));
  if (soft && ls != 0)
    fail(c,
         "attr smoothing must be 0 with soft targets (fold the smoothing into the targets), got " + std::to_string(ls));
}

void check_grad_norm(const OpCall& c) {
  f32_in(c, 0);
  f32_out(c, 0);
  numel_is(c, out(c, 0), false, 0, 1);
}

void check_allreduce(const OpCall& c) { f32_out(c, 0); }

void check_allreduce_wait(const OpCall& c) {
  if (c.has_out(0)) f32_out(c, 0);
}

void check_adamw(const OpCall& c) {
  int64_t n = in(c, 0).numel();
  f32_in(c, 0);
  dtype_is(c, in(c, 1), true, 1, DType::U8);
  numel_is(c, in(c, 1), true, 1, n);
  f32_in(c, 2);
  numel_is(c, in(c, 2), true, 2, 3);
  if (c.has_in(3)) {
    f32_in(c, 3);
    numel_is(c, in(c, 3), true, 3, 1);
  } else if (adamw_args(c).max_norm > 0) {
    fail(c, "attr max_norm > 0 needs the global gradient norm as input 3");
  }
  if (c.has_in(4)) {
    f32_in(c, 4);
    numel_is(c, in(c, 4), true, 4, n);
  }
  for (int i = 0; i < 3; ++i) {
    f32_out(c, i);
    numel_is(c, out(c, i), false, i, n);
  }
}

void check_sgd(const OpCall& c) {
  int64_t n = in(c, 0).numel();
  f32_in(c, 0);
  f32_in(c, 1);
  numel_is(c, in(c, 1), true, 1, 2);
  for (int i = 0; i < 2; ++i) {
    f32_out(c, i);
    numel_is(c, out(c, i), false, i, n);
  }
  const SgdArgs a = sgd_args(c);
  const double trust = a.trust, momentum = a.momentum;
  if (!(trust >= 0)) fail(c, "attr trust must be >= 0, got " + std::to_string(trust));
  if (!(momentum >= 0 && momentum < 1)) fail(c, "attr momentum must be in [0, 1), got " + std::to_string(momentum));
  if (c.has_out(2)) {
    f32_out(c, 2);
    numel_is(c, out(c, 2), false, 2, 2);
  } else if (trust > 0) {
    fail(c, "attr trust > 0 (LARS) needs output 2, norms [2]");
  }
}

// Both inits: the decoded attrs (medic/op_args.h), validated here once for both kernels.
static InitArgs check_init(const OpCall& c) {
  f32_out(c, 0);
  if (!c.attrs->has("seed")) fail(c, "attr seed is required (init is always seeded)");
  const InitArgs a = init_args(c);
  // seed and stream are counters: integers a double holds exactly.
  const std::pair<const char*, double> counters[] = {{"seed", a.seed}, {"stream", a.stream}};
  for (const auto& [key, v] : counters)
    if (!counter_ok(v))
      fail(c, std::string("attr ") + key + " must be an integer in [0, 2^53), got " + std::to_string(v));
  return a;
}
void check_init_normal(const OpCall& c) {
  const InitArgs a = check_init(c);
  if (!(a.std > 0)) fail(c, "attr std must be positive");
  if (!(a.lo < a.hi)) fail(c, "attr lo must be below hi");
}
void check_init_uniform(const OpCall& c) {
  const InitArgs a = check_init(c);
  if (!(a.lo < a.hi)) fail(c, "attr lo must be below hi");
}

}  // namespace medic
