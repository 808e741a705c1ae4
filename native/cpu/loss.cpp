// The training losses: MEDiC's three-part loss and cross-entropy (linear probe / fine-tune).
//
// Shape letters: B batch, T scored tokens (row 0 of s/t is the CLS row, rows 1..T the tokens),
// Dt teacher width, M masked patches, P pixels per patch, R rows, C classes.
//
// Both ops compute values and gradients in one pass over their inputs (the loss is always followed by
// its backward, so there is no separate *_bwd op). Determinism: every row (a Dt-, P- or C-vector)
// produces one double partial sum with a fixed in-row order; the partials are then added in row
// order on one thread. The result is therefore identical for any thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "medic/op_args.h"
#include "medic/ops.h"
#include "medic/threads.h"

namespace medic::cpu {

namespace {

// Sum of a float row into double with 8 independent lanes: a fixed summation order (so the result
// does not depend on how the compiler vectorises), and short dependency chains (so it is fast).
struct Lanes {
  double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  double total() const { return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); }
};

// One token row: SmoothL1(beta) between s and t, summed; ds = scale * dSmoothL1/ds. PyTorch:
//   loss = |d| < beta ? 0.5 d^2 / beta : |d| - 0.5 beta;   grad = clamp(d / beta, -1, 1).
// With q = min(|d|, beta), loss = q (|d| - q/2) / beta covers both sides. Written with std::min/max in
// the argument order that maps to minps/maxps, so GCC vectorises the row (other spellings of the same
// selects stay scalar, ~2x slower). A NaN d still makes the loss NaN; its gradient element is clamped.
double smooth_l1_row(const float* __restrict s, const float* __restrict t, float* __restrict ds, int64_t n, float beta,
                     float scale) {
  const float inv_beta = 1.0f / beta;
  Lanes acc;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      float d = s[i + j] - t[i + j], ad = std::fabs(d), q = std::min(ad, beta);
      acc.a[j] += q * (ad - 0.5f * q) * inv_beta;
      ds[i + j] = scale * std::max(-1.0f, std::min(1.0f, d * inv_beta));
    }
  }
  for (; i < n; ++i) {
    float d = s[i] - t[i], ad = std::fabs(d), q = std::min(ad, beta);
    acc.a[i & 7] += q * (ad - 0.5f * q) * inv_beta;
    ds[i] = scale * std::max(-1.0f, std::min(1.0f, d * inv_beta));
  }
  return acc.total();
}

// One pixel row: sum (pred - target)^2; dpred = scale * (pred - target) (scale includes the 2).
double mse_row(const float* __restrict p, const float* __restrict q, float* __restrict dp, int64_t n, float scale) {
  Lanes acc;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      float d = p[i + j] - q[i + j];
      dp[i + j] = scale * d;
      acc.a[j] += static_cast<double>(d) * d;
    }
  }
  for (; i < n; ++i) {
    float d = p[i] - q[i];
    dp[i] = scale * d;
    acc.a[i & 7] += static_cast<double>(d) * d;
  }
  return acc.total();
}

// One CLS row: returns 1 - cos(s, t) (cos on F.normalize'd vectors, clamped to [-1, 1]) and writes
// ds = coef * d(1 - cos)/ds. F.normalize divides by max(||x||, 1e-12); where that floor is active the
// norm is a constant, and where the clamp is active (|cos| > 1 by rounding) the gradient is 0, both
// as autograd does. Done in double: one row per image, so precision is free.
double cls_row(const float* s, const float* t, float* ds, int64_t n, double coef) {
  double ss = 0, tt = 0, st = 0;
  for (int64_t i = 0; i < n; ++i) {
    ss += static_cast<double>(s[i]) * s[i];
    tt += static_cast<double>(t[i]) * t[i];
    st += static_cast<double>(s[i]) * t[i];
  }
  const double eps = 1e-12;
  double ns = std::max(std::sqrt(ss), eps), nt = std::max(std::sqrt(tt), eps);
  double c = st / (ns * nt);
  double cc = std::min(1.0, std::max(-1.0, c));
  if (c > 1.0 || c < -1.0) {
    std::fill(ds, ds + n, 0.0f);
  } else {
    // d cos / ds_i = t_i / (ns nt) - [||s|| > eps] * cos * s_i / ns^2
    double a = 1.0 / (ns * nt), b = std::sqrt(ss) > eps ? c / (ns * ns) : 0.0;
    for (int64_t i = 0; i < n; ++i) ds[i] = static_cast<float>(-coef * (a * t[i] - b * s[i]));
  }
  return 1.0 - cc;
}

}  // namespace

// medic_loss: in s, t [B, 1+T, Dt], [pred, target [B, M, P]]; out losses [4], ds [B, 1+T, Dt], [dpred].
// losses = (total, L_tok, L_cls, L_pix): components unweighted, total weighted. A branch whose weight
// is 0 is not computed: its component reads 0 and its gradient rows are written as zeros. With T = 0
// (or M = 0) there is nothing to average and that component is 0.
void medic_loss(const OpCall& c) {
  const Tensor &S = c.x(0), &Tt = c.x(1);
  const MedicLossPlan plan = medic_loss_plan(c);  // shared with the CUDA kernel (medic/op_args.h)
  const int64_t B = plan.B, R = plan.R, Dt = plan.Dt, T = plan.T, M = plan.M, P = plan.P;
  const float w_tok = plan.w_tok, w_cls = plan.w_cls, w_pix = plan.w_pix, tau = plan.tau, beta = plan.beta;
  const bool has_pix = plan.has_pix, do_tok = plan.do_tok, do_cls = plan.do_cls, do_pix = plan.do_pix;
  // Loss balancing: the per-term scales multiply the weights (and so every gradient of the term).
  const float* sc = plan.has_scale ? c.x(4).f32() : nullptr;
  const float sc_tok = sc ? sc[0] : 1.0f, sc_cls = sc ? sc[1] : 1.0f, sc_pix = sc ? sc[2] : 1.0f;
  const float tok_scale = plan.tok_scale * sc_tok, pix_scale = plan.pix_scale * sc_pix;
  const double cls_coef = plan.cls_coef * sc_cls;

  const float* s = S.f32();
  const float* t = Tt.f32();
  float* ds = c.y(1).f32();
  const float* pred = has_pix ? c.x(2).f32() : nullptr;
  const float* target = has_pix ? c.x(3).f32() : nullptr;
  float* dpred = has_pix ? c.y(2).f32() : nullptr;

  // Work items: the B*(1+T) head rows, then the B*M pixel rows; one partial per item.
  const int64_t n_head = plan.n_head, n_pix = plan.n_pix;
  std::vector<double> part(static_cast<size_t>(n_head + n_pix), 0.0);
  const int64_t row_cost = std::max<int64_t>(1, std::max(Dt, P));
  const int64_t grain = std::max<int64_t>(1, 16384 / row_cost);
  c.ctx->pool->parallel_for(n_head + n_pix, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      if (r < n_head) {
        const int64_t off = r * Dt;
        if (r % R == 0) {
          if (do_cls)
            part[r] = cls_row(s + off, t + off, ds + off, Dt, cls_coef);
          else
            std::fill(ds + off, ds + off + Dt, 0.0f);
        } else {
          if (do_tok)
            part[r] = smooth_l1_row(s + off, t + off, ds + off, Dt, beta, tok_scale);
          else
            std::fill(ds + off, ds + off + Dt, 0.0f);
        }
      } else {
        const int64_t off = (r - n_head) * P;
        if (do_pix)
          part[r] = mse_row(pred + off, target + off, dpred + off, P, pix_scale);
        else
          std::fill(dpred + off, dpred + off + P, 0.0f);
      }
    }
  });

  // Ordered reduction on this thread.
  double tok = 0, cls = 0, pix = 0;
  for (int64_t r = 0; r < n_head; ++r) (r % R == 0 ? cls : tok) += part[r];
  for (int64_t r = n_head; r < n_head + n_pix; ++r) pix += part[r];
  double L_tok = do_tok ? tok / (static_cast<double>(B) * T * Dt) : 0.0;
  double L_cls = do_cls ? cls / (static_cast<double>(B) * tau) : 0.0;
  double L_pix = do_pix ? pix / (static_cast<double>(B) * M * P) : 0.0;
  float* losses = c.y(0).f32();
  losses[0] =
      static_cast<float>(static_cast<double>(w_tok) * sc_tok * L_tok + static_cast<double>(w_cls) * sc_cls * L_cls +
                         static_cast<double>(w_pix) * sc_pix * L_pix);
  losses[1] = static_cast<float>(L_tok);
  losses[2] = static_cast<float>(L_cls);
  losses[3] = static_cast<float>(L_pix);
}

// loss_weights: scale = exp(-logvar), the uncertainty weighting's factor on each term (ops.h).
void loss_weights(const OpCall& c) {
  const float* lv = c.x(0).f32();
  float* scale = c.y(0).f32();
  for (int k = 0; k < 3; ++k) scale[k] = static_cast<float>(std::exp(-static_cast<double>(lv[k])));
}

// loss_weights_bwd: d/dlogvar_k of w_k (exp(-logvar_k) L_k + logvar_k), accumulated.
void loss_weights_bwd(const OpCall& c) {
  const LossWeightArgs w = loss_weight_args(c);
  const float* lv = c.x(0).f32();
  const float* losses = c.x(1).f32();
  float* dlv = c.y(0).f32();
  for (int k = 0; k < 3; ++k) {
    if (w.w[k] == 0) continue;
    const double e = std::exp(-static_cast<double>(lv[k]));
    dlv[k] += static_cast<float>(static_cast<double>(w.w[k]) * (1.0 - e * losses[1 + k]));
  }
}

// cross_entropy: in logits [R, C], labels [R] i32 or targets [R, C] f32; out loss [1], dlogits [R, C], [correct [1]].
// Labels: F.cross_entropy(label_smoothing=e), mean over rows: the target distribution is (1-e) one_hot + e/C,
//   loss_r = lse_r - (1-e) z[r, y_r] - (e/C) sum_c z[r, c],   dlogits = (softmax - target) / R.
// Labels are validated first (there is no ignore_index); a bad label throws before anything is written.
// Targets (timm's SoftTargetCrossEntropy: mixup / cutmix targets with the smoothing folded in):
//   loss_r = sum_c t_rc (lse_r - z_rc),   dlogits = (softmax * sum_c t_rc - t) / R,
//   correct counts argmax(z) == argmax(t) (first maxima).
namespace {

void cross_entropy_soft(const OpCall& c) {
  const Tensor& Z = c.x(0);
  const int64_t R = Z.shape[0], C = Z.shape[1];
  const float *z = Z.f32(), *t = c.x(1).f32();
  float* dz = c.y(1).f32();
  std::vector<double> part(static_cast<size_t>(R), 0.0);
  std::vector<uint8_t> hit(static_cast<size_t>(R), 0);
  const float inv_r = R > 0 ? static_cast<float>(1.0 / static_cast<double>(R)) : 0.0f;
  c.ctx->pool->parallel_for(R, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float *zr = z + r * C, *tr = t + r * C;
      float* dr = dz + r * C;
      int64_t arg = 0, targ = 0;
      float mx = zr[0], tmx = tr[0];
      for (int64_t k = 1; k < C; ++k) {
        if (zr[k] > mx) mx = zr[k], arg = k;
        if (tr[k] > tmx) tmx = tr[k], targ = k;
      }
      double se = 0, st = 0, stz = 0;
      for (int64_t k = 0; k < C; ++k) {
        float e = std::exp(zr[k] - mx);
        dr[k] = e;
        se += e;
        st += tr[k];
        stz += static_cast<double>(tr[k]) * zr[k];
      }
      const double lse = mx + std::log(se);
      part[r] = lse * st - stz;
      const float sm_scale = static_cast<float>(st / se);
      for (int64_t k = 0; k < C; ++k) dr[k] = (dr[k] * sm_scale - tr[k]) * inv_r;
      hit[r] = arg == targ;
    }
  });
  double sum = 0, correct = 0;
  for (int64_t r = 0; r < R; ++r) sum += part[r], correct += hit[r];
  c.y(0).f32()[0] = R > 0 ? static_cast<float>(sum / R) : 0.0f;
  if (c.has_out(2)) c.y(2).f32()[0] = static_cast<float>(correct);
}

}  // namespace

void cross_entropy(const OpCall& c) {
  if (c.x(1).dtype == DType::F32) return cross_entropy_soft(c);
  const Tensor& Z = c.x(0);
  const int64_t R = Z.shape[0], C = Z.shape[1];
  const float* z = Z.f32();
  const int32_t* y = c.x(1).i32();
  float* dz = c.y(1).f32();
  const double eps = ce_smoothing(c);
  for (int64_t r = 0; r < R; ++r)
    if (y[r] < 0 || y[r] >= C)
      throw Error("cross_entropy: label " + std::to_string(y[r]) + " at row " + std::to_string(r) + " is outside [0, " +
                  std::to_string(C) + ") (C = " + std::to_string(C) + " classes)");

  std::vector<double> part(static_cast<size_t>(R), 0.0);
  std::vector<uint8_t> hit(static_cast<size_t>(R), 0);
  const float inv_r = R > 0 ? static_cast<float>(1.0 / static_cast<double>(R)) : 0.0f;
  const float on = static_cast<float>(1.0 - eps + eps / C), off = static_cast<float>(eps / C);
  c.ctx->pool->parallel_for(R, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float* zr = z + r * C;
      float* dr = dz + r * C;
      int64_t arg = 0;
      float mx = zr[0];
      for (int64_t k = 1; k < C; ++k)
        if (zr[k] > mx) mx = zr[k], arg = k;  // first maximum, as torch.argmax
      double se = 0, sz = 0;
      for (int64_t k = 0; k < C; ++k) {
        float e = std::exp(zr[k] - mx);
        dr[k] = e;
        se += e;
        sz += zr[k];
      }
      const double lse = mx + std::log(se);
      part[r] = lse - (1.0 - eps) * zr[y[r]] - (eps / C) * sz;
      const float inv_se = static_cast<float>(1.0 / se);
      for (int64_t k = 0; k < C; ++k) dr[k] = (dr[k] * inv_se - off) * inv_r;
      dr[y[r]] -= (on - off) * inv_r;
      hit[r] = arg == y[r];
    }
  });
  double sum = 0, correct = 0;
  for (int64_t r = 0; r < R; ++r) sum += part[r], correct += hit[r];
  c.y(0).f32()[0] = R > 0 ? static_cast<float>(sum / R) : 0.0f;
  if (c.has_out(2)) c.y(2).f32()[0] = static_cast<float>(correct);
}

}  // namespace medic::cpu
