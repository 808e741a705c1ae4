// The training losses on the GPU: MEDiC's three-part loss and cross-entropy.
// CPU reference: native/cpu/loss.cpp; contracts in ops.h.
//
// Shape letters: B batch, T scored tokens (row 0 of s/t is the CLS row, rows 1..T the tokens),
// Dt teacher width, M masked patches, P pixels per patch, R rows, C classes.
//
// Both ops compute values and gradients in one kernel over their rows (one warp per row), then a
// second, single-block kernel reduces the per-row partials. Determinism: each row's partial is a double
// summed in a fixed lane/shuffle order, stored in the workspace, and the final kernel adds the partials
// in a fixed order (contiguous segments per thread, then a fixed tree). No atomics, so the losses have
// the same bits on every run (they may differ from the CPU's in the last bits of the double sums).
// Zero-weight branches are skipped: their component is 0 and their gradient rows are written as zeros.
//
// Storage: s, t, pred, target, ds, dpred and the logits / dlogits are f32 or bf16 (FIn / FOut views,
// common.cuh); the sums are the same fp32 / double sums of the widened values, gradients are rounded
// once when stored in bf16. Losses and soft targets stay f32.
//
// Precision: the build uses --use_fast_math, so the exponentials and the CLS-row arithmetic here are
// done in double (unaffected by it; single rows or one exp per logit, so the cost is small).
#include <cstdint>

#include "common.cuh"
#include "medic/op_args.h"
#include "ops_util.cuh"

namespace medic::cuda {

using namespace memops;

namespace {

struct LossArgs {
  FIn s, t, pred, target;
  FOut ds, dpred;
  int64_t R, Dt, P, n_head, n_pix;
  bool do_tok, do_cls, do_pix;
  float beta, inv_beta, tok_scale, pix_scale;
  double cls_coef;
  const float* wscale;  // [3] per-term weight scales (loss balancing) or nullptr
  double* part;         // [n_head + n_pix]
};

__global__ void __launch_bounds__(kBlock) medic_loss_rows(LossArgs a) {
  const int lane = threadIdx.x & 31;
  // The balancing scales multiply each term's gradient factor, in the same precision as on the CPU.
  const float tok_scale = a.wscale ? a.tok_scale * a.wscale[0] : a.tok_scale;
  const double cls_coef = a.wscale ? a.cls_coef * a.wscale[1] : a.cls_coef;
  const float pix_scale = a.wscale ? a.pix_scale * a.wscale[2] : a.pix_scale;
  const int64_t n_warps = static_cast<int64_t>(gridDim.x) * kWarps;
  for (int64_t w = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5); w < a.n_head + a.n_pix;
       w += n_warps) {
    double partial = 0.0;
    if (w < a.n_head) {
      const int64_t off = w * a.Dt;
      const FIn s = a.s + off;
      const FIn t = a.t + off;
      const FOut ds = a.ds + off;
      const int n = static_cast<int>(a.Dt);
      if (w % a.R == 0) {
        if (a.do_cls) {
          // 1 - cos(s, t) on F.normalize'd vectors (norm floor 1e-12), cos clamped to [-1, 1].
          double ss = 0, tt = 0, st = 0;
          for (int i = lane; i < n; i += 32) {
            const double sv = s[i], tv = t[i];
            ss += sv * sv;
            tt += tv * tv;
            st += sv * tv;
          }
          ss = warp_sum(ss), tt = warp_sum(tt), st = warp_sum(st);
          const double eps = 1e-12;
          const double ns = fmax(sqrt(ss), eps), nt = fmax(sqrt(tt), eps);
          const double c = st / (ns * nt);
          const double cc = fmin(1.0, fmax(-1.0, c));
          if (c > 1.0 || c < -1.0) {
            for (int i = lane; i < n; i += 32) ds.set(i, 0.0f);
          } else {
            const double ka = 1.0 / (ns * nt), kb = sqrt(ss) > eps ? c / (ns * ns) : 0.0;
            for (int i = lane; i < n; i += 32) ds.set(i, static_cast<float>(-cls_coef * (ka * t[i] - kb * s[i])));
          }
          partial = 1.0 - cc;
        } else {
          for (int i = lane; i < n; i += 32) ds.set(i, 0.0f);
        }
      } else {
        if (a.do_tok) {
          // SmoothL1(beta): q = min(|d|, beta), loss = q (|d| - q/2) / beta; grad = clamp(d / beta, -1, 1).
          double acc = 0.0;
          for (int i = lane; i < n; i += 32) {
            const float d = s[i] - t[i], ad = fabsf(d), q = fminf(ad, a.beta);
            acc += static_cast<double>(q * (ad - 0.5f * q) * a.inv_beta);
            ds.set(i, tok_scale * fmaxf(-1.0f, fminf(1.0f, d * a.inv_beta)));
          }
          partial = warp_sum(acc);
        } else {
          for (int i = lane; i < n; i += 32) ds.set(i, 0.0f);
        }
      }
    } else {
      const int64_t off = (w - a.n_head) * a.P;
      const FIn p = a.pred + off;
      const FIn q = a.target + off;
      const FOut dp = a.dpred + off;
      const int n = static_cast<int>(a.P);
      if (a.do_pix) {
        double acc = 0.0;
        for (int i = lane; i < n; i += 32) {
          const float d = p[i] - q[i];
          dp.set(i, pix_scale * d);
          acc += static_cast<double>(d) * d;
        }
        partial = warp_sum(acc);
      } else {
        for (int i = lane; i < n; i += 32) dp.set(i, 0.0f);
      }
    }
    if (lane == 0) a.part[w] = partial;
  }
}

constexpr int kFinal = 256;

// Sums the head partials into (tok, cls) and the pixel partials, then writes losses [4].
__global__ void __launch_bounds__(kFinal)
    medic_loss_final(const double* part, int64_t n_head, int64_t n_pix, int64_t R, double tok_div, double cls_div,
                     double pix_div, double w_tok, double w_cls, double w_pix, bool do_tok, bool do_cls, bool do_pix,
                     const float* wscale, float* losses) {
  __shared__ double sm[kFinal / 32];
  const int64_t n = n_head + n_pix;
  const int64_t per = (n + kFinal - 1) / kFinal;
  const int64_t b = threadIdx.x * per, e = b + per < n ? b + per : n;
  double tok = 0, cls = 0, pix = 0;
  for (int64_t r = b; r < e; ++r) {
    if (r < n_head)
      (r % R == 0 ? cls : tok) += part[r];
    else
      pix += part[r];
  }
  tok = block_sum<kFinal>(tok, sm);
  cls = block_sum<kFinal>(cls, sm);
  pix = block_sum<kFinal>(pix, sm);
  if (threadIdx.x == 0) {
    const double L_tok = do_tok ? tok / tok_div : 0.0;
    const double L_cls = do_cls ? cls / cls_div : 0.0;
    const double L_pix = do_pix ? pix / pix_div : 0.0;
    const double sc_tok = wscale ? wscale[0] : 1.0, sc_cls = wscale ? wscale[1] : 1.0,
                 sc_pix = wscale ? wscale[2] : 1.0;
    losses[0] = static_cast<float>(w_tok * sc_tok * L_tok + w_cls * sc_cls * L_cls + w_pix * sc_pix * L_pix);
    losses[1] = static_cast<float>(L_tok);
    losses[2] = static_cast<float>(L_cls);
    losses[3] = static_cast<float>(L_pix);
  }
}

// ---------------------------------------------------------------------------------------------
// cross_entropy rows: one warp per row. part[r] = loss_r (NaN for a label outside [0, C): the kernel
// cannot throw as the CPU does, so a bad label shows as a NaN loss, its row gets no label term, and it
// is recorded as a DeviceFault that the host throws at its next synchronisation);
// hit[r] = argmax == label (first maximum, as torch.argmax).
__global__ void __launch_bounds__(kBlock)
    ce_rows(FIn z, const int32_t* __restrict__ labels, FOut dz, double* __restrict__ part, double* __restrict__ hit,
            int64_t R, int C, double eps, float inv_r, float on, float off, DeviceFault* fault) {
  const int lane = threadIdx.x & 31;
  const int64_t n_warps = static_cast<int64_t>(gridDim.x) * kWarps;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5); r < R; r += n_warps) {
    const FIn zr = z + r * C;
    const FOut dr = dz + r * C;
    const int32_t y = labels[r];
    const bool valid = y >= 0 && y < C;
    if (!valid && lane == 0) report_fault(fault, kFaultLabel, y, C, r);
    // max and first argmax
    float mx = -INFINITY;
    int arg = C;
    for (int k = lane; k < C; k += 32) {
      const float v = zr[k];
      if (v > mx || arg == C) mx = v, arg = k;  // a lane's first element always counts (as zr[0] does on the CPU)
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float m2 = __shfl_xor_sync(0xffffffffu, mx, o);
      const int a2 = __shfl_xor_sync(0xffffffffu, arg, o);
      if (a2 < C && (arg == C || m2 > mx || (m2 == mx && a2 < arg))) mx = m2, arg = a2;
    }
    double se = 0, sz = 0;
    for (int k = lane; k < C; k += 32) {
      const float v = zr[k];
      se += static_cast<double>(static_cast<float>(exp(static_cast<double>(v - mx))));
      sz += v;
    }
    se = warp_sum(se), sz = warp_sum(sz);
    const float inv_se = static_cast<float>(1.0 / se);
    for (int k = lane; k < C; k += 32) {
      const float e = static_cast<float>(exp(static_cast<double>(zr[k] - mx)));
      float d = (e * inv_se - off) * inv_r;
      if (k == y) d -= (on - off) * inv_r;
      dr.set(k, d);
    }
    if (lane == 0) {
      const double lse = mx + log(se);
      part[r] = valid ? lse - (1.0 - eps) * zr[y] - (eps / C) * sz : NAN;
      hit[r] = valid && arg == y ? 1.0 : 0.0;
    }
  }
}

// cross_entropy rows with soft targets [R, C] (mixup / cutmix): one warp per row.
// part[r] = sum_c t (lse - z) = lse * sum(t) - sum(t z); dz = (softmax * sum(t) - t) / R;
// hit[r] = argmax z == argmax t (first maxima).
__device__ __forceinline__ void first_argmax(float& mx, int& arg, int C) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, mx, o);
    const int a2 = __shfl_xor_sync(0xffffffffu, arg, o);
    if (a2 < C && (arg == C || m2 > mx || (m2 == mx && a2 < arg))) mx = m2, arg = a2;
  }
}

__global__ void __launch_bounds__(kBlock)
    ce_soft_rows(FIn z, const float* __restrict__ t, FOut dz, double* __restrict__ part, double* __restrict__ hit,
                 int64_t R, int C, float inv_r) {
  const int lane = threadIdx.x & 31;
  const int64_t n_warps = static_cast<int64_t>(gridDim.x) * kWarps;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5); r < R; r += n_warps) {
    const FIn zr = z + r * C;
    const float* tr = t + r * C;
    const FOut dr = dz + r * C;
    float mx = -INFINITY, tmx = -INFINITY;
    int arg = C, targ = C;
    for (int k = lane; k < C; k += 32) {
      const float v = zr[k], w = tr[k];
      if (v > mx || arg == C) mx = v, arg = k;
      if (w > tmx || targ == C) tmx = w, targ = k;
    }
    first_argmax(mx, arg, C);
    first_argmax(tmx, targ, C);
    double se = 0, st = 0, stz = 0;
    for (int k = lane; k < C; k += 32) {
      const float v = zr[k];
      se += static_cast<double>(static_cast<float>(exp(static_cast<double>(v - mx))));
      st += tr[k];
      stz += static_cast<double>(tr[k]) * v;
    }
    se = warp_sum(se), st = warp_sum(st), stz = warp_sum(stz);
    const float sm_scale = static_cast<float>(st / se);
    for (int k = lane; k < C; k += 32) {
      const float e = static_cast<float>(exp(static_cast<double>(zr[k] - mx)));
      dr.set(k, (e * sm_scale - tr[k]) * inv_r);
    }
    if (lane == 0) {
      part[r] = (mx + log(se)) * st - stz;
      hit[r] = arg == targ ? 1.0 : 0.0;
    }
  }
}

__global__ void __launch_bounds__(kFinal)
    ce_final(const double* part, const double* hit, int64_t R, float* loss, float* correct) {
  __shared__ double sm[kFinal / 32];
  const int64_t per = (R + kFinal - 1) / kFinal;
  const int64_t b = threadIdx.x * per, e = b + per < R ? b + per : R;
  double s = 0, h = 0;
  for (int64_t r = b; r < e; ++r) s += part[r], h += hit[r];
  s = block_sum<kFinal>(s, sm);
  h = block_sum<kFinal>(h, sm);
  if (threadIdx.x == 0) {
    loss[0] = R > 0 ? static_cast<float>(s / R) : 0.0f;
    if (correct) correct[0] = static_cast<float>(h);
  }
}

}  // namespace

void medic_loss(const OpCall& c) {
  const Tensor &S = c.x(0), &Tt = c.x(1);
  const MedicLossPlan plan = medic_loss_plan(c);  // shared with the CPU kernel (medic/op_args.h)
  const int64_t B = plan.B, R = plan.R, Dt = plan.Dt, T = plan.T, M = plan.M, P = plan.P;
  const bool has_pix = plan.has_pix;

  LossArgs a;
  a.s = fin(S);
  a.t = fin(Tt);
  a.ds = fout(c.y(1));
  a.pred = has_pix ? fin(c.x(2)) : FIn{};
  a.target = has_pix ? fin(c.x(3)) : FIn{};
  a.dpred = has_pix ? fout(c.y(2)) : FOut{};
  a.R = R;
  a.Dt = Dt;
  a.P = P;
  a.do_tok = plan.do_tok;
  a.do_cls = plan.do_cls;
  a.do_pix = plan.do_pix;
  a.beta = plan.beta;
  a.inv_beta = 1.0f / plan.beta;
  a.tok_scale = plan.tok_scale;
  a.cls_coef = plan.cls_coef;
  a.pix_scale = plan.pix_scale;
  a.n_head = plan.n_head;
  a.n_pix = plan.n_pix;
  a.wscale = plan.has_scale ? c.x(4).f32() : nullptr;
  const int64_t rows = a.n_head + a.n_pix;
  a.part = static_cast<double*>(workspace(ctx_of(c), static_cast<size_t>(rows > 0 ? rows : 1) * sizeof(double)));
  if (rows > 0) {
    medic_loss_rows<<<grid_for(c, rows, kWarps), kBlock, 0, stream_of(c)>>>(a);
    check_launch("medic_loss");
  }
  medic_loss_final<<<1, kFinal, 0, stream_of(c)>>>(a.part, a.n_head, a.n_pix, R, static_cast<double>(B) * T * Dt,
                                                   static_cast<double>(B) * plan.tau, static_cast<double>(B) * M * P,
                                                   plan.w_tok, plan.w_cls, plan.w_pix, a.do_tok, a.do_cls, a.do_pix,
                                                   a.wscale, c.y(0).f32());
  check_launch("medic_loss");
}

namespace {

__global__ void loss_weights_k(const float* lv, float* scale) {
  const int k = threadIdx.x;
  if (k < 3) scale[k] = static_cast<float>(exp(-static_cast<double>(lv[k])));
}

__global__ void loss_weights_bwd_k(LossWeightArgs w, const float* lv, const float* losses, float* dlv) {
  const int k = threadIdx.x;
  if (k < 3 && w.w[k] != 0) {
    const double e = exp(-static_cast<double>(lv[k]));
    dlv[k] += static_cast<float>(static_cast<double>(w.w[k]) * (1.0 - e * losses[1 + k]));
  }
}

}  // namespace

// Three numbers each: one warp of one block (the CPU loop, element for element).
void loss_weights(const OpCall& c) {
  loss_weights_k<<<1, 32, 0, stream_of(c)>>>(c.x(0).f32(), c.y(0).f32());
  check_launch("loss_weights");
}

void loss_weights_bwd(const OpCall& c) {
  loss_weights_bwd_k<<<1, 32, 0, stream_of(c)>>>(loss_weight_args(c), c.x(0).f32(), c.x(1).f32(), c.y(0).f32());
  check_launch("loss_weights_bwd");
}

void cross_entropy(const OpCall& c) {
  const Tensor& Z = c.x(0);
  const int64_t R = Z.shape[0], C = Z.shape[1];
  const double eps = ce_smoothing(c);
  const float inv_r = R > 0 ? static_cast<float>(1.0 / static_cast<double>(R)) : 0.0f;
  const float on = static_cast<float>(1.0 - eps + eps / C), off = static_cast<float>(eps / C);
  double* part = static_cast<double*>(workspace(ctx_of(c), static_cast<size_t>(R > 0 ? 2 * R : 1) * sizeof(double)));
  if (R > 0 && C > 0 && c.x(1).dtype == DType::F32) {
    ce_soft_rows<<<grid_for(c, R, kWarps), kBlock, 0, stream_of(c)>>>(fin(Z), c.x(1).f32(), fout(c.y(1)), part,
                                                                      part + R, R, static_cast<int>(C), inv_r);
    check_launch("cross_entropy");
  } else if (R > 0 && C > 0) {
    ce_rows<<<grid_for(c, R, kWarps), kBlock, 0, stream_of(c)>>>(fin(Z), c.x(1).i32(), fout(c.y(1)), part, part + R, R,
                                                                 static_cast<int>(C), eps, inv_r, on, off, fault_of(c));
    check_launch("cross_entropy");
  }
  ce_final<<<1, kFinal, 0, stream_of(c)>>>(part, part + R, R > 0 && C > 0 ? R : 0, c.y(0).f32(),
                                           c.has_out(2) ? c.y(2).f32() : nullptr);
  check_launch("cross_entropy");
}

}  // namespace medic::cuda
