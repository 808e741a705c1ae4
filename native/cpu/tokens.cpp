// Token-row ops: slicing/concatenation (copy_rows), index gather/scatter (MAE's visible-token gather
// and its backward), the mask token (mask_fill and its backward) and image <-> patch rows (patchify,
// unpatchify). Contracts in ops.h.
//
// Shape letters: B batch, T tokens, K indexed rows per batch, C row width; img [B, Ch, Hi, Wi] with
// patch side p, grid Gh x Gw = (Hi/p) x (Wi/p), N = Gh Gw patches of P = p p Ch values.
//
// Every op here moves whole rows of C contiguous floats; the work is split over ctx.pool by rows.
// Index inputs come from the host (the mask sampler), so gather/scatter validate them before writing
// anything: an index out of range, or a duplicate in a scatter, throws a medic::Error naming the op,
// the batch, the position and the index.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "medic/op_args.h"
#include "medic/ops.h"
#include "medic/threads.h"

#include "bf16_io.h"

namespace medic::cpu {

namespace {

int64_t row_grain(int64_t C) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, C)); }

// dst = src (+ dst when acc), n values of storage ST (f32, or bf16 widened and rounded in registers:
// bf16_io.h; a plain copy moves the bf16 bits, which widening and rounding would leave unchanged).
template <class ST>
inline void put_row(ST* dst, const ST* src, int64_t n, bool acc) {
  if (acc)
    for (int64_t j = 0; j < n; ++j) st(dst, j, ld(dst, j) + ld(src, j));
  else
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(ST));
}

// idx [B, K] must lie in [0, T); when `distinct`, no index may repeat within a batch row.
void check_indices(const char* op, const int32_t* idx, int64_t B, int64_t K, int64_t T, bool distinct) {
  std::vector<uint8_t> seen(distinct ? static_cast<size_t>(T) : 0);
  for (int64_t b = 0; b < B; ++b) {
    if (distinct) std::fill(seen.begin(), seen.end(), 0);
    for (int64_t k = 0; k < K; ++k) {
      int32_t i = idx[b * K + k];
      if (i < 0 || i >= T)
        throw Error(std::string(op) + ": index out of range at batch " + std::to_string(b) + ", position " +
                    std::to_string(k) + ": " + std::to_string(i) + " (rows 0.." + std::to_string(T - 1) + ")");
      if (distinct) {
        if (seen[i])
          throw Error(std::string(op) + ": duplicate index at batch " + std::to_string(b) + ", position " +
                      std::to_string(k) + ": " + std::to_string(i) + " (indices must be distinct per batch)");
        seen[i] = 1;
      }
    }
  }
}

}  // namespace

// copy_rows: y[b, dst + i] = x[b', src + i] (+ y) for i < count; b' = b, or 0 when Bx == 1 (broadcast);
// By == 1 with Bx > 1 sums over the batch into y[0] (acc).
template <class ST>
static void copy_rows_t(const OpCall& c) {
  const Tensor &X = c.x(0), &Y = c.y(0);
  const int64_t Bx = X.shape[0], Tx = X.shape[1], By = Y.shape[0], Ty = Y.shape[1], C = X.shape[2];
  const CopyRowsArgs a = copy_rows_args(c);
  const int64_t src = a.src, dst = a.dst, n = a.count;
  const bool acc = a.acc;
  const ST* x = static_cast<const ST*>(X.data);
  ST* y = static_cast<ST*>(Y.data);
  if (By == 1 && Bx > 1) {
    // Sum over the batch: each output row is owned by one task and summed in batch order, in an f32
    // row (a bf16 y is rounded once, at the end, not after every term).
    c.ctx->pool->parallel_for(n, std::max<int64_t>(1, row_grain(C) / Bx), [&](int64_t i0, int64_t i1) {
      std::vector<float> sum(static_cast<size_t>(C));
      for (int64_t i = i0; i < i1; ++i) {
        ST* yr = y + (dst + i) * C;
        for (int64_t j = 0; j < C; ++j) sum[j] = ld(yr, j);
        for (int64_t b = 0; b < Bx; ++b) {
          const ST* xr = x + (b * Tx + src + i) * C;
          for (int64_t j = 0; j < C; ++j) sum[j] += ld(xr, j);
        }
        for (int64_t j = 0; j < C; ++j) st(yr, j, sum[j]);
      }
    });
    return;
  }
  c.ctx->pool->parallel_for(By * n, row_grain(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t b = r / n, i = r % n;
      int64_t bx = Bx == 1 ? 0 : b;
      put_row(y + (b * Ty + dst + i) * C, x + (bx * Tx + src + i) * C, C, acc);
    }
  });
}

// gather_rows: y[b, k] = x[b, idx[b, k]] (+ y).
template <class ST>
static void gather_rows_t(const OpCall& c) {
  const Tensor &X = c.x(0), &I = c.x(1);
  const int64_t B = X.shape[0], T = X.shape[1], C = X.shape[2], K = I.shape[1];
  const int32_t* idx = I.i32();
  check_indices("gather_rows", idx, B, K, T, false);
  const bool acc = accumulates(c);
  const ST* x = static_cast<const ST*>(X.data);
  ST* y = static_cast<ST*>(c.y(0).data);
  c.ctx->pool->parallel_for(B * K, row_grain(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) put_row(y + r * C, x + ((r / K) * T + idx[r]) * C, C, acc);
  });
}

// scatter_rows: x[b, idx[b, k]] = y[b, k] (+= when acc); other rows of x are left as they are.
// Indices are distinct per batch (checked), so rows never collide between tasks.
template <class ST>
static void scatter_rows_t(const OpCall& c) {
  const Tensor &Yt = c.x(0), &I = c.x(1), &X = c.y(0);
  const int64_t B = Yt.shape[0], K = Yt.shape[1], C = Yt.shape[2], T = X.shape[1];
  const int32_t* idx = I.i32();
  check_indices("scatter_rows", idx, B, K, T, true);
  const bool acc = accumulates(c);
  const ST* y = static_cast<const ST*>(Yt.data);
  ST* x = static_cast<ST*>(X.data);
  c.ctx->pool->parallel_for(B * K, row_grain(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) put_row(x + ((r / K) * T + idx[r]) * C, y + r * C, C, acc);
  });
}

// The row ops on f32 or bf16 rows (x and y of one storage), or widened when mixed.
#define MEDIC_ROWS(op)                                \
  void op(const OpCall& c) {                          \
    switch (storage_of({&c.x(0), &c.y(0)})) {         \
      case Storage::f32: return op##_t<float>(c);     \
      case Storage::bf16: return op##_t<uint16_t>(c); \
      case Storage::mixed: return run_widened(c, op); \
    }                                                 \
  }
MEDIC_ROWS(copy_rows)
MEDIC_ROWS(gather_rows)
MEDIC_ROWS(scatter_rows)
#undef MEDIC_ROWS

// mask_fill: x[b, t] = token where mask[b, t] != 0.
void mask_fill(const OpCall& c) {
  const Tensor& X = c.y(0);
  const int64_t R = X.shape.leading(1), C = X.shape[2];
  const uint8_t* mask = c.x(0).u8();
  const float* token = c.x(1).f32();
  float* x = X.f32();
  c.ctx->pool->parallel_for(R, row_grain(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      if (mask[r]) std::memcpy(x + r * C, token, static_cast<size_t>(C) * 4);
  });
}

// mask_fill_bwd: dtoken += sum of the masked rows of dx; dx_out = dx with those rows zeroed (dx_out may
// alias dx). Columns are split between tasks, so each dtoken[j] is summed in row order by one task and
// every element is read before it is overwritten by the same task.
void mask_fill_bwd(const OpCall& c) {
  const Tensor& DX = c.x(1);
  const int64_t R = DX.shape.leading(1), C = DX.shape[2];
  const uint8_t* mask = c.x(0).u8();
  const float* dx = DX.f32();
  float* out = c.y(0).f32();
  float* dtok = c.y(1).f32();
  c.ctx->pool->parallel_for(C, 64, [&](int64_t c0, int64_t c1) {
    constexpr int64_t kStrip = 64;  // running sums stay in L1; one forward stream per strip
    float s[kStrip];
    for (int64_t j0 = c0; j0 < c1; j0 += kStrip) {
      const int64_t w = std::min<int64_t>(kStrip, c1 - j0);
      for (int64_t j = 0; j < w; ++j) s[j] = 0.0f;
      for (int64_t r = 0; r < R; ++r) {
        const float* dr = dx + r * C + j0;
        float* orow = out + r * C + j0;
        if (mask[r]) {
          for (int64_t j = 0; j < w; ++j) s[j] += dr[j];
          std::memset(orow, 0, static_cast<size_t>(w) * 4);
        } else if (orow != dr) {
          std::memcpy(orow, dr, static_cast<size_t>(w) * 4);
        }
      }
      for (int64_t j = 0; j < w; ++j) dtok[j0 + j] += s[j];
    }
  });
}

// ---------------------------------------------------------------------------------------------
// patchify / unpatchify. Patch n = gy Gw + gx covers img[:, :, gy p .. gy p + p, gx p .. gx p + p].
// order 0: P index (py p + px) Ch + ch  (MAE: einsum 'nchpwq->nhwpqc').
// order 1: P index ch p p + py p + px   (a conv weight [D, Ch, p, p] flattened).

namespace {

// PatchGeom (medic/op_args.h): patch, order, B, Ch, Hi, Wi, Gw, N, P.

// One patch (b, n): to_patch copies img -> row, otherwise row -> img.
template <bool to_patch>
void patch_move(const PatchGeom& g, float* img, float* x, int64_t b, int64_t n) {
  const int64_t gy = n / g.Gw, gx = n % g.Gw, p = g.patch;
  float* row = x + (b * g.N + n) * g.P;
  for (int64_t ch = 0; ch < g.Ch; ++ch) {
    for (int64_t py = 0; py < p; ++py) {
      float* line = img + ((b * g.Ch + ch) * g.Hi + gy * p + py) * g.Wi + gx * p;
      if (g.order == 1) {
        float* r = row + (ch * p + py) * p;
        if (to_patch)
          std::memcpy(r, line, static_cast<size_t>(p) * 4);
        else
          std::memcpy(line, r, static_cast<size_t>(p) * 4);
      } else {
        float* r = row + py * p * g.Ch + ch;
        for (int64_t px = 0; px < p; ++px) {
          if (to_patch)
            r[px * g.Ch] = line[px];
          else
            line[px] = r[px * g.Ch];
        }
      }
    }
  }
}

}  // namespace

void patchify(const OpCall& c) {
  const PatchGeom g = patch_geom(c);
  float* img = c.x(0).f32();
  float* x = c.y(0).f32();
  c.ctx->pool->parallel_for(g.B * g.N, row_grain(g.P), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) patch_move<true>(g, img, x, r / g.N, r % g.N);
  });
}

void unpatchify(const OpCall& c) {
  const PatchGeom g = patch_geom(c);
  float* img = c.y(0).f32();
  float* x = c.x(0).f32();
  c.ctx->pool->parallel_for(g.B * g.N, row_grain(g.P), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) patch_move<false>(g, img, x, r / g.N, r % g.N);
  });
}

}  // namespace medic::cpu
