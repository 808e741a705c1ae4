// The op table: every op the engine runs, its contract, and one dispatch per backend.
//
// One contract, two backends. Each op below has a CPU kernel (native/cpu/<family>.cpp, the readable
// reference) and, where written, a CUDA kernel with the same name and semantics (native/cuda/<family>.cu).
// Shapes and dtypes are validated once by the op's check (native/core/op_checks.cpp) before any backend
// runs, so kernels may assume a valid call.
//
// Shape letters (docs/METHOD.md, Shapes): B batch, T tokens in a sequence, N patches, M masked patches,
// C channels / features, R rows (all leading dims flattened), H heads, Hd head dim, P patch pixels,
// Dt teacher width, n a flat element count.
// Attribute defaults below are decoded once, in medic/op_args.h; where the method's defaults come
// from (paper, official code, or our choice): docs/METHOD.md, Defaults.
//
// Gradient convention, stated once for all backward ops:
//   - outputs marked (accumulate) below (layernorm_bwd's dw and db, scale_add_bwd's dgamma, ...)
//     always ADD (+=): the program zero-fills them before their first write;
//   - every other gradient output OVERWRITES (=) unless the op's attr `acc` is 1, in which case it
//     adds. The graph sets acc=0 on the first write to a gradient (of an activation or a parameter)
//     and acc=1 on every later one (the residual stream, a weight used twice), so no separate add op
//     and no zeroing pass over the parameter gradients is needed.
// In place: an output may be the very same tensor (memory, dtype, shape) as one input only in the
// elementwise forms copy, cast, add (y = a or b), gelu, quick_gelu and their backwards (dx = x or dy),
// scale_add (x = y) and mask_fill_bwd (dx_out = dx). check_call rejects any other overlap of an output
// with an input or with another output.
// Optional inputs/outputs are passed as empty slots (Tensor with data == nullptr).
// Precision (dtypes per op). Every tensor not named below is f32. Mixed precision (--precision bf16)
// stores activations in bf16 (the ops below take bf16 gradients as well; the graph stores in bf16
// only the activation gradients that bf16 products and bias sums alone read: a GELU pre-activation's,
// qkv's, the attention output's and a residual branch's, which the gemm and the vdpbf16ps attention
// would round to bf16 as they read them anyway (the fp32 attention kernel of a CPU without
// AVX512-BF16 then reads a rounded do); the rest stay f32) and keeps fp32 where rounding would hurt:
//   - arithmetic is fp32 everywhere: bf16 inputs are widened, sums accumulate in fp32, and a bf16
//     output is rounded once (nearest even) when it is stored;
//   - master weights, gradients of parameters, AdamW moments, biases, LayerNorm/LayerScale
//     parameters, softmax and norm statistics (lse, mean, rstd) and losses stay f32;
//   - bf16 kernels of their own: cast (f32 <-> bf16); gemm (A, B and C each f32 or bf16, preact as
//     C, bias f32). A gemm with a bf16 A or B, or with attr bf16=1, is the "bf16 product": each
//     operand element is rounded to bf16 (an f32 operand, e.g. an fp32 master weight, is rounded as
//     it is read), products are exact in fp32 and summed in fp32. With f32 A and B, no bf16 attr
//     and a bf16 C it is the fp32 product rounded.
//   - storage-only bf16 (bf16_slot() lists the slots): the result is the fp32 kernel's on the bf16
//     values, bf16 outputs rounded once. On the CPU the ops of bf16_native() (add, copy, sum_to, the
//     GELUs, layernorm, attention, scale_add, the row ops and their backwards) read and write bf16
//     themselves with the fp32 kernel's arithmetic and bits; the rest run the fp32 kernel on widened
//     copies (cpu::run_widened). On CUDA every kernel reads and writes bf16 itself with fp32
//     arithmetic, the same numbers (bf16_native_cuda):
//       copy, add (a, b, y), sum_to (x), gelu / quick_gelu / softmax and their backwards (all data
//       slots), layernorm (x -> y; w, b, mean, rstd f32), layernorm_bwd (dy, x -> dx),
//       attention (qkv -> o; lse f32), attention_bwd (do, qkv, o -> dqkv; lse f32),
//       scale_add (y, x), scale_add_bwd (dx, y -> dy; gamma, keep, dgamma f32), copy_rows,
//       gather_rows, scatter_rows (x, y), mask_fill (x), mask_fill_bwd (dx -> dx_out; dtoken f32),
//       pixel_norm, medic_loss (s, t, pred, target -> ds, dpred; losses f32),
//       cross_entropy (logits -> dlogits; loss f32).
//     Every other slot (parameters, their gradients, AdamW state, statistics, losses) is f32.
//   - the exception on the CPU: attention and attention_bwd on bf16 with AVX512-BF16 (and an even
//     Hd) run their tile products on bf16 operands (vdpbf16ps; native/cpu/attention_dpbf16.inc):
//     q, k, v and do enter exactly, the probabilities P and dS are rounded to bf16 (nearest even)
//     before P V, P^T dO, dS K and dS^T Q, as FlashAttention does on GPUs; sums are fp32 (in another
//     order, denormals flushed) and the softmax statistics (lse, D) fp32. So not the fp32 kernel's
//     bits: o and dqkv within relErr 5e-3 of it and of float64 (measured 2e-3 .. 3e-3), lse 1e-6.
//     attention_bwd takes that path whenever qkv and o are bf16, with do and dqkv of either storage
//     (the mixed-precision graph stores both in bf16): an f32 do is rounded to bf16 as it is read, as
//     the bf16 gemm rounds an f32 operand. Without AVX512-BF16, or under MEDIC_CPU_ISA=avx512, the fp32
//     kernel's bits as above (mixed storages through cpu::run_widened).
//   The bf16 GEMM tolerance against a float64 product of the same bf16-rounded operands is the fp32
//   one (rel. 1e-5); against the unrounded f32 operands it is bf16's (about 2^-8 sqrt(2/K) .. 2^-8).
//   Its CPU kernels sum in their own orders, within that tolerance: vdpbf16ps (AVX512-BF16) adds a
//   pair's two products together; AMX tiles (TDPBF16PS, where the CPU has amx-bf16; MEDIC_CPU_AMX=0
//   turns them off) add them one after the other. Each is deterministic for a given thread count.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "medic/tensor.h"

namespace medic {

class ThreadPool;

// Attributes: numeric name -> value pairs (enums are small integers, documented per op).
struct Attrs {
  std::vector<std::pair<std::string, double>> kv;

  bool has(const char* key) const;
  double get(const char* key, double def) const;
  int64_t i(const char* key, int64_t def) const { return static_cast<int64_t>(get(key, static_cast<double>(def))); }
  float f(const char* key, float def) const { return static_cast<float>(get(key, def)); }
  void set(const std::string& key, double value);
};

// Where an op runs. CPU kernels use `pool`; CUDA kernels use `cuda` (stream + library handles).
struct CommState;
struct Context {
  Device device = Device::CPU;
  ThreadPool* pool = nullptr;
  void* cuda = nullptr;
  CommState* comm = nullptr;  // data parallel: the collectives of allreduce ops (comm.h); null alone
};

struct OpDef;

struct OpCall {
  const OpDef* def = nullptr;
  const Tensor* in = nullptr;
  int n_in = 0;
  const Tensor* out = nullptr;  // the views are const; the memory they point at is written
  int n_out = 0;
  const Attrs* attrs = nullptr;
  Context* ctx = nullptr;

  bool has_in(int i) const { return i < n_in && in[i].data != nullptr; }
  bool has_out(int i) const { return i < n_out && out[i].data != nullptr; }
  const Tensor& x(int i) const { return in[i]; }
  const Tensor& y(int i) const { return out[i]; }
  int64_t ai(const char* k, int64_t d) const { return attrs->i(k, d); }
  float af(const char* k, float d) const { return attrs->f(k, d); }
};

using KernelFn = void (*)(const OpCall&);
using CheckFn = void (*)(const OpCall&);  // throws medic::Error naming the op, slot, expected and found

// ---------------------------------------------------------------------------------------------
// The ops. X(name, n_in_min, n_in_max, n_out_min, n_out_max)
//
// fill          out x: x = attr value (any dtype).
// copy          in x; out y (same numel, f32): y = alpha * x + acc * y. attrs alpha=1, acc=0.
// cast          in x; out y (same numel): f32 <-> bf16 (round to nearest even), or same-dtype copy.
// add           in a [..., S], b [S] (a trailing sub-shape of a, or equal); out y = a + b (broadcast
//               over a's leading dims). y may alias a.
// sum_to        in x [L..., S]; out y [S]: y = sum over the leading dims of x (+ y when acc=1).
//               The backward of add's broadcast and of a bias.
// gemm          in A, B, [bias [N]]; out C, [preact]. C = act(alpha * op(A) op(B) + bias) (+ C when acc=1).
//               A, B, C: f32 or bf16 each (see Precision above); bias f32; preact has C's dtype.
//               attr bf16=1: the bf16 product even when A and B are f32 (mixed precision's compute).
//               op(A) is [M, K] (A stored [K, M] when trans_a=1), op(B) is [K, N] ([N, K] when trans_b=1).
//               B 2-D: A's leading dims are flattened into rows (a Linear: A [B, T, K], B = W [N, K],
//               trans_b=1 -> C [B, T, N]). B with >2 dims: batched, leading dims of A, B, C equal.
//               act: 0 none, 1 GELU (erf); with act=1 `preact` (same shape as C) receives the value
//               before GELU for the backward, and acc must be 0. attrs trans_a, trans_b, alpha=1, acc, act.
// gelu          in x; out y = x * Phi(x) (erf form).          gelu_bwd: in x, dy; out dx (acc).
// quick_gelu    in x; out y = x * sigmoid(1.702 x).           quick_gelu_bwd: in x, dy; out dx (acc).
// softmax       in x [R, C]; out y = softmax(scale * x) along C. attrs scale=1.
// softmax_bwd   in y, dy; out dx = scale * y * (dy - sum(dy * y)) (acc). attrs scale=1.
// layernorm     in x [R, C], [w [C]], [b [C]]; out y [R, C], mean [R], rstd [R] = 1 / sqrt(var + eps),
//               var = sum((x - mean)^2) / C, or / (C - 1) with unbiased=1 (torch's default var(): the
//               teacher-target normalisation of the official MEDiC code, parameter-free; needs C >= 2).
//               attrs eps=1e-6, unbiased=0.
// layernorm_bwd in dy, x, mean, rstd, [w]; out dx (acc), [dw], [db] (accumulate). attrs unbiased (as the
//               forward's), acc.
// attention     in qkv [B, T, 3*H*Hd] (packed as timm: [3, H, Hd] per token); out o [B, T, H*Hd],
//               lse [B, H, T] (log-sum-exp of each score row, for the backward). Fused, online softmax:
//               no T x T matrix is kept. attrs heads (required), scale = 1/sqrt(Hd). bf16 on the CPU:
//               see Precision above (P rounded to bf16 where the CPU has AVX512-BF16).
// attention_bwd in do [B, T, H*Hd], qkv, o, lse; out dqkv [B, T, 3*H*Hd] (acc). attrs heads, scale.
// attention_probs in qkv [B, T, 3*H*Hd] (packed as attention); out p [B, T-k, T-k], k = attr prefix:
//               p[b, i, j] = (1/H) sum_h softmax(scale q_h[k+i] . k_h[:])[k+j]: the softmax runs over all T
//               keys, then the first k rows and columns (k = 1: the CLS token) are dropped, not renormalised.
//               The head-averaged attention map of one block (the evolved-masking source); no backward.
//               attrs heads (required), scale = 1/sqrt(Hd), prefix=1 (0 <= prefix < T).
// scale_add     in y [B, ..., C], [gamma [C]], [keep [B]]; out x [B, ..., C] (read and written):
//               x += keep[b] * gamma * y. LayerScale + DropPath + residual add in one pass.
// scale_add_bwd in dx (grad of x), y, [gamma], [keep]; out dy (acc), [dgamma] (accumulate).
// drop_path_mask in seed [2] i32 (per-step seed words); out keep [B]: keep[b] = 0 with probability p,
//               else 1/(1-p), drawn for sample row0 + b. attrs p, stream (distinguishes blocks), row0=0
//               (the batch's first sample in the global batch, so a data-parallel rank draws what one
//               process would have drawn for the same samples).
// copy_rows     in x [Bx, Tx, C]; out y [By, Ty, C]: y[b, dst+i] = x[b, src+i] for i < count (+ y when
//               acc=1). Bx == By, or Bx == 1 (broadcast a token), or By == 1 with acc=1 (sum over batch).
//               attrs src, dst, count. Concatenation, slicing and the CLS token's forward and backward.
// gather_rows   in x [B, T, C], idx [B, K] i32; out y [B, K, C]: y[b, k] = x[b, idx[b, k]] (+ y when acc=1).
// scatter_rows  in y [B, K, C], idx [B, K] i32; out x [B, T, C]: x[b, idx[b, k]] = y[b, k] (+= when
//               acc=1); rows of x not named by idx are left as they are. Indices must be distinct per b.
// mask_fill     in mask [B, T] u8, token [C]; out x [B, T, C] (read and written): x[b, t] = token where
//               mask[b, t] != 0.
// mask_fill_bwd in mask, dx [B, T, C]; out dx_out [B, T, C] (may alias dx): dx with masked rows zeroed,
//               dtoken [C] (accumulate): sum of the masked rows of dx.
// patchify      in img [B, Ch, Hi, Wi]; out x [B, N, P], N = (Hi/p)(Wi/p) row-major over the grid.
//               attrs patch, order: 0 -> P ordered (py, px, ch) as MAE's targets; 1 -> (ch, py, px),
//               the flattening of a conv weight [D, Ch, p, p], so patch embedding is patchify + gemm.
// unpatchify    in x [B, N, P]; out img [B, Ch, Hi, Wi]. attrs patch, order (as patchify).
// pixel_norm    in x [R, P]; out y: (x - mean) / sqrt(unbiased var + eps) per row. attrs eps=1e-6.
// batchnorm     in x [R, C]; out y [R, C], run_mean [C], run_var [C] (read; written when train=1).
//               BatchNorm1d without affine parameters (the linear probe's, on frozen features: no
//               backward). train=1: y = (x - mean) / sqrt(var + eps) with the column statistics of this
//               batch (biased var), then run_mean = (1 - momentum) run_mean + momentum mean and run_var
//               likewise with the unbiased var (R >= 2). train=0: y = (x - run_mean) / sqrt(run_var + eps).
//               attrs eps=1e-5, momentum=0.1, train=1.
// medic_loss    in s [B, 1+T, Dt] (distill-head rows: 0 = CLS, 1.. = the T tokens that are scored),
//               t [B, 1+T, Dt] (normalised teacher rows matching s), [pred [B, M, P]], [target [B, M, P]];
//               out losses [4] = (total, L_tok, L_cls, L_pix), ds [B, 1+T, Dt], [dpred [B, M, P]].
//               L_tok = SmoothL1(beta) mean over B*T*Dt; L_cls = mean_b (1 - cos(s0, t0)) / tau;
//               L_pix = MSE mean over B*M*P. total = w_tok L_tok + w_cls L_cls + w_pix L_pix; ds and dpred
//               are d total (overwrite). A zero weight skips its branch (its gradient rows are zero).
//               attrs w_tok=1, w_cls=0.4, w_pix=1, tau=0.1, beta=1.
//               Optional input 4, scale [3] f32 (loss balancing, read on the device so it may change
//               every step): term k's weight becomes w_k * scale[k], in total and in ds / dpred.
// loss_weights  in logvar [3]; out scale [3] = exp(-logvar). Uncertainty weighting (Kendall, Gal and
//               Cipolla 2018): the balanced objective is sum_k w_k (exp(-logvar_k) L_k + logvar_k).
// loss_weights_bwd in logvar [3], losses [4] (medic_loss's, components at 1..3); out dlogvar [3]
//               (accumulate): w_k (1 - exp(-logvar_k) L_k), 0 where w_k = 0. attrs w_tok, w_cls, w_pix
//               (as medic_loss).
// cross_entropy in logits [R, C], labels [R] i32 or targets [R, C] f32; out loss [1] (mean), dlogits [R, C]
//               (d loss, overwrite), [correct [1]] (count of argmax == label; with targets, argmax == the
//               targets' argmax). Labels: label smoothing e gives the target (1-e) one_hot + e/C. Targets
//               (soft, e.g. mixup's, smoothing folded in by the caller; smoothing must be 0):
//               loss_r = sum_c t_rc (lse_r - z_rc), dlogits = (softmax * sum_c t_rc - t) / R.
//               attrs smoothing=0.
// grad_norm     in g (f32, any shape); out norm [1] = sqrt(sum g^2).
// adamw         in grad [n], wd_mask [n] u8, hyper [3] f32 = (lr, weight_decay, step >= 1), [norm [1]],
//               [lr_scale [n] f32]; out param [n], m [n], v [n] (read and written). Decoupled weight decay
//               where wd_mask != 0; bias-corrected moments; with norm and max_norm > 0 the gradient is
//               first scaled by min(1, max_norm / (norm + 1e-6)) (clip by global norm). With lr_scale,
//               element i uses lr * lr_scale[i] for both its step and its decay (layer-wise lr decay).
//               attrs beta1=0.9, beta2=0.999, eps=1e-8, max_norm=0.
// sgd           in grad [n], hyper [2] f32 = (lr, weight_decay); out param [n], mu [n] (read and written),
//               [norms [2]]. SGD with momentum as torch.optim.SGD (mu starting at 0):
//               d = g + wd p;  mu = momentum mu + d;  p -= lr mu. With trust > 0 (LARS, as MAE's linear
//               probe): d is first scaled by trust |p| / |d| when both norms are > 0; norms receives
//               (|p|, |d|) and is then required. Call it once per parameter tensor (LARS norms are per
//               tensor). attrs momentum=0.9, trust=0.
// allreduce     out g f32 (read and written): starts g = mean over the ranks of the engine's
//               communicator (comm.h) of g, asynchronously: g must not be touched until the next
//               allreduce_wait, which completes it. One op per gradient bucket; a bucket started as soon
//               as the backward pass has finished writing it overlaps the rest of the backward pass.
//               Without a communicator (one process) it does nothing, which is that mean.
// allreduce_wait out [g]: completes every allreduce started since the previous allreduce_wait (g, when
//               given, names the buffer they write, for readers). A program with an allreduce must run
//               an allreduce_wait after its last one (checked when the program is compiled).
// init_normal   out x: normal(mean, std) truncated to [lo, hi] (absolute bounds, as torch trunc_normal_),
//               from the counter-based RNG. attrs mean=0, std=1, lo=-2, hi=2, seed, stream.
// init_uniform  out x: uniform[lo, hi). attrs lo, hi, seed, stream. (Xavier: lo = -hi = -sqrt(6/(fi+fo)).)
#define MEDIC_OP_LIST(X)          \
  X(fill, 0, 0, 1, 1)             \
  X(copy, 1, 1, 1, 1)             \
  X(cast, 1, 1, 1, 1)             \
  X(add, 2, 2, 1, 1)              \
  X(sum_to, 1, 1, 1, 1)           \
  X(gemm, 2, 3, 1, 2)             \
  X(gelu, 1, 1, 1, 1)             \
  X(gelu_bwd, 2, 2, 1, 1)         \
  X(quick_gelu, 1, 1, 1, 1)       \
  X(quick_gelu_bwd, 2, 2, 1, 1)   \
  X(softmax, 1, 1, 1, 1)          \
  X(softmax_bwd, 2, 2, 1, 1)      \
  X(layernorm, 1, 3, 3, 3)        \
  X(layernorm_bwd, 4, 5, 1, 3)    \
  X(attention, 1, 1, 2, 2)        \
  X(attention_bwd, 4, 4, 1, 1)    \
  X(attention_probs, 1, 1, 1, 1)  \
  X(scale_add, 1, 3, 1, 1)        \
  X(scale_add_bwd, 2, 4, 1, 2)    \
  X(drop_path_mask, 1, 1, 1, 1)   \
  X(copy_rows, 1, 1, 1, 1)        \
  X(gather_rows, 2, 2, 1, 1)      \
  X(scatter_rows, 2, 2, 1, 1)     \
  X(mask_fill, 2, 2, 1, 1)        \
  X(mask_fill_bwd, 2, 2, 2, 2)    \
  X(patchify, 1, 1, 1, 1)         \
  X(unpatchify, 1, 1, 1, 1)       \
  X(pixel_norm, 1, 1, 1, 1)       \
  X(batchnorm, 1, 1, 3, 3)        \
  X(medic_loss, 2, 5, 2, 3)       \
  X(loss_weights, 1, 1, 1, 1)     \
  X(loss_weights_bwd, 2, 2, 1, 1) \
  X(cross_entropy, 2, 2, 2, 3)    \
  X(grad_norm, 1, 1, 1, 1)        \
  X(adamw, 3, 5, 3, 3)            \
  X(sgd, 2, 2, 2, 3)              \
  X(allreduce, 0, 0, 1, 1)        \
  X(allreduce_wait, 0, 0, 0, 1)   \
  X(init_normal, 0, 0, 1, 1)      \
  X(init_uniform, 0, 0, 1, 1)

enum class OpId : int {
#define MEDIC_OP_ENUM(name, a, b, c, d) name,
  MEDIC_OP_LIST(MEDIC_OP_ENUM)
#undef MEDIC_OP_ENUM
      count
};

struct OpDef {
  OpId id;
  const char* name;
  int n_in_min, n_in_max, n_out_min, n_out_max;
  CheckFn check;
  KernelFn cpu;
  KernelFn cuda;  // nullptr where the CUDA kernel is not built
};

// Declarations: check_<op> in core/op_checks.cpp, cpu::<op> in cpu/, cuda::<op> in cuda/.
#define MEDIC_OP_DECL(name, a, b, c, d) void check_##name(const OpCall&);
MEDIC_OP_LIST(MEDIC_OP_DECL)
#undef MEDIC_OP_DECL
namespace cpu {
#define MEDIC_OP_DECL(name, a, b, c, d) void name(const OpCall&);
MEDIC_OP_LIST(MEDIC_OP_DECL)
#undef MEDIC_OP_DECL
}  // namespace cpu

// The CUDA kernel of an op, or nullptr: defined in cuda/registry.cu, or core/no_cuda.cpp in CPU builds.
KernelFn cuda_kernel(OpId id);
bool cuda_compiled();

const OpDef* find_op(const std::string& name);  // nullptr when unknown
const OpDef& op_def(OpId id);
std::vector<std::string> op_names();

// Precision: may slot `slot` of `op` (an input when `input`) hold bf16? (core/op_checks.cpp)
bool bf16_slot(OpId op, bool input, int slot);
// Ops whose CPU kernels read and write bf16 themselves; every other op with a bf16 tensor runs its
// fp32 kernel on widened copies on the CPU (cpu::run_widened).
bool bf16_native(OpId op);
// Ops whose CUDA kernels read and write bf16 themselves (core/ops_table.cpp): fill, cast, gemm and
// every op with a bf16_slot(). run_op refuses bf16 tensors on CUDA for any other op (there is no
// CUDA widening fallback), so an op given a bf16 slot must get its CUDA kernel at the same time.
bool bf16_native_cuda(OpId op);
namespace cpu {
void run_widened(const OpCall& call, KernelFn f32_kernel);
}

// Validate a call (slot counts, then the op's shape/dtype contract). Throws medic::Error.
void check_call(const OpCall& call);
// Run one op on ctx's device (check_call first when `checked`).
void run_op(const OpCall& call, bool checked = true);

}  // namespace medic
