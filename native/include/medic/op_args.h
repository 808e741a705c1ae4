// Op calls decoded once: the attributes with their defaults and the sizes derived from the shapes,
// shared by the checker (core/op_checks.cpp) and both backends (cpu/, cuda/), so that the CPU and
// CUDA kernels of one op cannot drift apart in how they read its contract (ops.h).
// Every attribute of every op is read here and nowhere else: a default named in ops.h is written once.
// Call them after the op's tensor-count and rank checks (run_op does those first); the checker
// validates the decoded values, the kernels may then assume them valid.
#pragma once

#include <cmath>
#include <cstdint>

#include "medic/ops.h"

namespace medic {

// ---- Attributes several families share ------------------------------------------------------
// acc: 0 overwrite, 1 add into the output (ops.h, gradient convention). The raw value is for the
// checker (anything but 0 or 1 is rejected); kernels read accumulates().
inline int64_t acc_value(const OpCall& c) { return c.ai("acc", 0); }
inline bool accumulates(const OpCall& c) { return acc_value(c) != 0; }

// eps of layernorm and pixel_norm: 1e-6, the student's LayerNorm eps and the pixel target's
// (docs/METHOD.md, Defaults). The CLIP teacher passes its own 1e-5 explicitly.
constexpr float kNormEpsDefault = 1e-6f;

// ---- fill, copy -----------------------------------------------------------------------------
inline double fill_value(const OpCall& c) { return c.attrs->get("value", 0.0); }

struct CopyArgs {
  float alpha;
  bool acc;
};
inline CopyArgs copy_args(const OpCall& c) { return {c.af("alpha", 1.0f), accumulates(c)}; }

// ---- softmax, softmax_bwd: rows of C values (input 0: x, or y for the backward) ------------------
struct SoftmaxArgs {
  int64_t R, C;
  float scale;
  bool acc;  // backward only
};
inline SoftmaxArgs softmax_args(const OpCall& c) {
  const Shape& s = c.x(0).shape;
  SoftmaxArgs a{};
  a.C = s.nd ? s[-1] : 1;
  a.R = a.C ? c.x(0).numel() / a.C : 0;
  a.scale = c.af("scale", 1.0f);
  a.acc = accumulates(c);
  return a;
}

// ---- layernorm, layernorm_bwd, pixel_norm: rows of C values (x is input 1 of layernorm_bwd) -----
// unbiased=1 (layernorm) divides the variance by C - 1 (torch's default var(), the official MEDiC
// teacher-target normalisation) instead of C (F.layer_norm). The backward must be called with the
// forward's attrs: dx = rstd (g - mean(g) - xhat sum(g xhat) / var_div).
struct NormArgs {
  int64_t R, C;
  float eps;      // layernorm, pixel_norm
  bool unbiased;  // layernorm, layernorm_bwd
  bool acc;       // layernorm_bwd
  float var_div;  // C, or C - 1 when unbiased
};
inline NormArgs norm_args(const OpCall& c) {
  const Shape& s = c.x(c.def->id == OpId::layernorm_bwd ? 1 : 0).shape;
  NormArgs a{};
  a.C = s.nd ? s[-1] : 1;
  a.R = s.leading(1);
  a.eps = c.af("eps", kNormEpsDefault);
  a.unbiased = c.ai("unbiased", 0) != 0;
  a.acc = accumulates(c);
  a.var_div = static_cast<float>(a.unbiased ? a.C - 1 : a.C);
  return a;
}

// ---- attention, attention_bwd: qkv is input 0 of the forward, input 1 of the backward -----------
// heads is required (the checker says so); scale defaults to 1/sqrt(Hd), computed in double.
struct AttentionDims {
  int64_t B, T, H, Hd;
  float scale;
  bool acc;  // backward only
};
inline int attention_qkv_slot(const OpCall& c) { return c.def->id == OpId::attention ? 0 : 1; }
inline int64_t attention_heads(const OpCall& c) { return c.ai("heads", 0); }
// Valid once the checker has seen heads > 0 and a qkv width divisible by 3 * heads.
inline AttentionDims attention_dims(const OpCall& c) {
  const Shape& s = c.x(attention_qkv_slot(c)).shape;
  AttentionDims d{};
  d.B = s[0];
  d.T = s[1];
  d.H = attention_heads(c);
  d.Hd = d.H > 0 ? s[2] / (3 * d.H) : 0;
  d.scale = static_cast<float>(c.attrs->get("scale", 1.0 / std::sqrt(static_cast<double>(d.Hd))));
  d.acc = accumulates(c);
  return d;
}

// ---- drop_path_mask ---------------------------------------------------------------------------
struct DropPathArgs {
  float p;          // drop probability, in [0, 1)
  uint64_t stream;  // distinguishes the blocks drawing from one step's seed
  uint64_t row0;    // global index of row 0 (data parallel: a rank draws its own samples' rows)
};
inline DropPathArgs drop_path_args(const OpCall& c) {
  return {c.af("p", 0.0f), static_cast<uint64_t>(c.ai("stream", 0)), static_cast<uint64_t>(c.ai("row0", 0))};
}

// ---- copy_rows --------------------------------------------------------------------------------
// count has no usable default: a missing count reads -1, which the checker rejects as out of range.
struct CopyRowsArgs {
  int64_t src, dst, count;
  bool acc;
};
inline CopyRowsArgs copy_rows_args(const OpCall& c) {
  return {c.ai("src", 0), c.ai("dst", 0), c.ai("count", -1), accumulates(c)};
}

// ---- patchify, unpatchify: the image is input 0 of patchify and output 0 of unpatchify ----------
// order 0: P ordered (py, px, ch) as MAE's targets; order 1: (ch, py, px) as a conv weight.
struct PatchGeom {
  int64_t patch, order;  // as given (the checker validates them)
  int64_t B, Ch, Hi, Wi;
  int64_t Gw, N, P;  // grid width, patches per image, values per patch
};
inline PatchGeom patch_geom(const OpCall& c) {
  const Shape& img = (c.def->id == OpId::patchify ? c.x(0) : c.y(0)).shape;
  PatchGeom g{};
  g.patch = c.ai("patch", 0);
  g.order = c.ai("order", 0);
  g.B = img[0];
  g.Ch = img[1];
  g.Hi = img[2];
  g.Wi = img[3];
  if (g.patch > 0) {
    g.Gw = g.Wi / g.patch;
    g.N = (g.Hi / g.patch) * g.Gw;
    g.P = g.patch * g.patch * g.Ch;
  }
  return g;
}

// ---- cross_entropy ----------------------------------------------------------------------------
inline double ce_smoothing(const OpCall& c) { return c.attrs->get("smoothing", 0.0); }

// ---- adamw ------------------------------------------------------------------------------------
// Plain data: the CUDA kernel takes it by value.
struct AdamwArgs {
  double beta1, beta2, eps, max_norm;  // max_norm 0: no clipping
};
inline AdamwArgs adamw_args(const OpCall& c) {
  return {c.attrs->get("beta1", 0.9), c.attrs->get("beta2", 0.999), c.attrs->get("eps", 1e-8),
          c.attrs->get("max_norm", 0.0)};
}

// ---- init_normal, init_uniform ----------------------------------------------------------------
// seed and stream are counters held exactly by a double (the checker requires integers below 2^53).
struct InitArgs {
  double seed, stream;  // as given, for the checker
  double mean, std;     // init_normal
  double lo, hi;        // init_normal: absolute truncation bounds; init_uniform: the range [lo, hi)
  uint64_t seed_u, stream_u;
};
constexpr double kCounterLimit = 9007199254740992.0;  // 2^53
inline bool counter_ok(double v) { return v >= 0 && v < kCounterLimit && v == std::floor(v); }
inline uint64_t counter_value(double v) { return counter_ok(v) ? static_cast<uint64_t>(v) : 0; }
inline InitArgs init_args(const OpCall& c) {
  const bool normal = c.def->id == OpId::init_normal;
  InitArgs a{};
  a.seed = c.attrs->get("seed", 0.0);
  a.stream = c.attrs->get("stream", 0.0);
  a.mean = c.attrs->get("mean", 0.0);
  a.std = c.attrs->get("std", 1.0);
  a.lo = c.attrs->get("lo", normal ? -2.0 : 0.0);
  a.hi = c.attrs->get("hi", normal ? 2.0 : 1.0);
  a.seed_u = counter_value(a.seed);
  a.stream_u = counter_value(a.stream);
  return a;
}

// gemm: C = act(alpha * op(A) op(B) + bias) (+ C when acc). With a 2-D B, A's leading dims are the
// rows (or, with trans_a, they are K); with a batched B, nb = the product of the batch dims.
struct GemmDims {
  bool ta, tb, acc;
  int act;  // 0 none, 1 gelu (preact in output 1)
  float alpha;
  int64_t M, N, K;   // K: op(A)'s inner dim
  int64_t K_b;       // op(B)'s inner dim (equal to K in a valid call)
  int64_t nb;        // batch count (1 for a 2-D B)
  int64_t lda, ldb;  // row strides of A and B as stored; C (and the preact) have row stride N
};

inline GemmDims gemm_dims(const OpCall& c) {
  const Shape &a = c.x(0).shape, &b = c.x(1).shape;
  GemmDims g{};
  g.ta = c.ai("trans_a", 0) != 0;
  g.tb = c.ai("trans_b", 0) != 0;
  g.acc = c.ai("acc", 0) != 0;
  g.act = static_cast<int>(c.ai("act", 0));
  g.alpha = c.af("alpha", 1.f);
  g.N = g.tb ? b[-2] : b[-1];
  g.K_b = g.tb ? b[-1] : b[-2];
  g.nb = 1;
  if (b.nd == 2) {
    g.M = g.ta ? a[-1] : a.leading(1);
    g.K = g.ta ? a.leading(1) : a[-1];
  } else {
    g.nb = a.leading(2);
    g.M = g.ta ? a[-1] : a[-2];
    g.K = g.ta ? a[-2] : a[-1];
  }
  g.lda = g.ta ? g.M : g.K;
  g.ldb = g.tb ? g.K : g.N;
  return g;
}

// The static weights of MEDiC's three terms (tok, cls, pix): medic_loss and loss_weights_bwd.
struct LossWeightArgs {
  float w[3];
};

inline LossWeightArgs loss_weight_args(const OpCall& c) {
  return {{c.af("w_tok", 1.0f), c.af("w_cls", 0.4f), c.af("w_pix", 1.0f)}};
}

// medic_loss: in s, t [B, 1+T, Dt], [pred, target [B, M, P]]. Which of the three terms run (a term
// whose weight is 0, or that has nothing to average, is skipped and reads 0) and the gradient scale
// of each: d total / d element = weight over the element count of its mean (the 2 of d^2 folded in).
struct MedicLossPlan {
  int64_t B, R, T, Dt;  // R = 1 + T rows per image: the CLS row, then the T token rows
  int64_t M, P;         // pixel rows per image and their width (0 without pred/target)
  float w_tok, w_cls, w_pix, tau, beta;
  bool has_pix, do_tok, do_cls, do_pix;
  bool has_scale;  // input 4: per-term weight scales on the device (loss balancing)
  float tok_scale, pix_scale;
  double cls_coef;        // w_cls / (B tau): the CLS term's gradient factor
  int64_t n_head, n_pix;  // work rows: B * R head rows, then B * M pixel rows
};

inline MedicLossPlan medic_loss_plan(const OpCall& c) {
  MedicLossPlan p{};
  const Shape& s = c.x(0).shape;
  p.B = s[0];
  p.R = s[1];
  p.Dt = s[2];
  p.T = p.R - 1;
  const LossWeightArgs w = loss_weight_args(c);
  p.w_tok = w.w[0];
  p.w_cls = w.w[1];
  p.w_pix = w.w[2];
  p.tau = c.af("tau", 0.1f);
  p.beta = c.af("beta", 1.0f);
  p.has_pix = c.has_in(2);
  p.has_scale = c.has_in(4);
  p.M = p.has_pix ? c.x(2).shape[1] : 0;
  p.P = p.has_pix ? c.x(2).shape[2] : 0;
  p.do_tok = p.w_tok != 0 && p.T > 0;
  p.do_cls = p.w_cls != 0 && p.B > 0;
  p.do_pix = p.has_pix && p.w_pix != 0 && p.M > 0 && p.P > 0;
  p.tok_scale =
      p.do_tok ? static_cast<float>(static_cast<double>(p.w_tok) / (static_cast<double>(p.B) * p.T * p.Dt)) : 0.0f;
  p.cls_coef = p.do_cls ? static_cast<double>(p.w_cls) / (static_cast<double>(p.B) * p.tau) : 0.0;
  p.pix_scale = p.do_pix ? static_cast<float>(2.0 * p.w_pix / (static_cast<double>(p.B) * p.M * p.P)) : 0.0f;
  p.n_head = p.B * p.R;
  p.n_pix = p.has_pix ? p.B * p.M : 0;
  return p;
}

// batchnorm: train (batch statistics, running stats updated) or eval (running stats), eps, momentum.
struct BatchNormArgs {
  int64_t train;  // 0 or 1 (the checker refuses anything else)
  double eps, momentum;
};
inline BatchNormArgs batchnorm_args(const OpCall& c) {
  return {c.ai("train", 1), c.attrs->get("eps", 1e-5), c.attrs->get("momentum", 0.1)};
}

// sgd: momentum, and the LARS trust ratio (0 = plain SGD with momentum).
struct SgdArgs {
  float momentum;
  double trust;
};
inline SgdArgs sgd_args(const OpCall& c) { return {c.af("momentum", 0.9f), c.attrs->get("trust", 0.0)}; }

// attention_probs: qkv [B, T, 3*H*Hd] -> p [B, N, N], N = T - prefix.
struct AttnProbsArgs {
  int64_t B, T, H, Hd, prefix, N;
  float scale;
};

inline AttnProbsArgs attention_probs_args(const OpCall& c) {
  const Shape& q = c.x(0).shape;
  AttnProbsArgs a{};
  a.B = q[0];
  a.T = q[1];
  a.H = c.ai("heads", 1);
  a.Hd = a.H > 0 ? q[2] / (3 * a.H) : 0;
  a.prefix = c.ai("prefix", 1);
  a.N = a.T - a.prefix;
  a.scale = static_cast<float>(c.attrs->get("scale", a.Hd > 0 ? 1.0 / std::sqrt(static_cast<double>(a.Hd)) : 1.0));
  return a;
}

}  // namespace medic
