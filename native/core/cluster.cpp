// Clustering of patches for evolved masking (contracts in medic/cluster.h): em from the attention maps,
// hc from their Gram matrices (computed in the engine).
#include "medic/cluster.h"

#include <algorithm>
#include <cmath>
#include <queue>
#include <vector>

namespace medic {

namespace {

// x [N, N] row-major with x[j * N + i] = A[i, j] / |A[:, j]|: patch j's feature as a contiguous row.
std::vector<double> column_features(const float* attn, int64_t N) {
  std::vector<double> x(static_cast<size_t>(N * N));
  for (int64_t j = 0; j < N; ++j) {
    double s = 0;
    for (int64_t i = 0; i < N; ++i) {
      const double v = attn[i * N + j];
      x[j * N + i] = v;
      s += v * v;
    }
    const double inv = s > 0 ? 1.0 / std::sqrt(s) : 0.0;
    for (int64_t i = 0; i < N; ++i) x[j * N + i] *= inv;
  }
  return x;
}

// Renumbers labels 0, 1, ... by first appearance.
void relabel(int32_t* labels, int64_t N, int64_t n_ids) {
  std::vector<int32_t> map(static_cast<size_t>(n_ids), -1);
  int32_t next = 0;
  for (int64_t j = 0; j < N; ++j) {
    int32_t& m = map[labels[j]];
    if (m < 0) m = next++;
    labels[j] = m;
  }
}

bool normalise(double* v, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += v[i] * v[i];
  if (!(s > 0)) return false;
  const double inv = 1.0 / std::sqrt(s);
  for (int64_t i = 0; i < n; ++i) v[i] *= inv;
  return true;
}

}  // namespace

void cluster_em(const float* attn, int64_t N, int64_t K, const float* init, int64_t rounds, double kappa,
                int32_t* labels) {
  const std::vector<double> x = column_features(attn, N);
  // Centres transposed, muT[i * K + k], so that both steps run over contiguous, independent lanes
  // (k in the E step, i in the M step) with every sum in a fixed order.
  std::vector<double> muT(static_cast<size_t>(N * K)), z(static_cast<size_t>(N * K)), m(static_cast<size_t>(K * N)),
      norm(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) {
    std::vector<double> v(init + k * N, init + (k + 1) * N);
    normalise(v.data(), N);
    for (int64_t i = 0; i < N; ++i) muT[i * K + k] = v[i];
  }
  auto e_step = [&]() {
    for (int64_t j = 0; j < N; ++j) {
      double* zj = &z[j * K];
      std::fill(zj, zj + K, 0.0);
      for (int64_t i = 0; i < N; ++i) {
        const double xi = x[j * N + i];
        const double* mi = &muT[i * K];
        for (int64_t k = 0; k < K; ++k) zj[k] += xi * mi[k];
      }
      double mx = -INFINITY;
      for (int64_t k = 0; k < K; ++k) mx = std::max(mx, zj[k] *= kappa);
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += (zj[k] = std::exp(zj[k] - mx));
      for (int64_t k = 0; k < K; ++k) zj[k] /= s;
    }
  };
  for (int64_t r = 0; r < rounds; ++r) {
    e_step();
    // m_k = sum_j z_jk x_j, then mu_k = m_k / |m_k| (kept when m_k = 0).
    std::fill(m.begin(), m.end(), 0.0);
    for (int64_t j = 0; j < N; ++j)
      for (int64_t k = 0; k < K; ++k) {
        const double w = z[j * K + k];
        double* mk = &m[k * N];
        const double* xj = &x[j * N];
        for (int64_t i = 0; i < N; ++i) mk[i] += w * xj[i];
      }
    for (int64_t k = 0; k < K; ++k) {
      double ss = 0;
      for (int64_t i = 0; i < N; ++i) ss += m[k * N + i] * m[k * N + i];
      norm[k] = ss > 0 ? 1.0 / std::sqrt(ss) : 0.0;
    }
    for (int64_t i = 0; i < N; ++i)
      for (int64_t k = 0; k < K; ++k)
        if (norm[k] > 0) muT[i * K + k] = m[k * N + i] * norm[k];
  }
  e_step();
  for (int64_t j = 0; j < N; ++j) {
    const double* zj = &z[j * K];
    labels[j] = static_cast<int32_t>(std::max_element(zj, zj + K) - zj);  // first maximum: the lowest k
  }
  relabel(labels, N, K);
}

void cluster_hc(const float* gram, int64_t N, int64_t K, int64_t grid_w, double lambda, int32_t* labels) {
  // S[a][b] = c_a . c_b for the cluster sums c; starts as the Gram matrix of the normalised features,
  // x_a . x_b = G[a][b] / (|A[:, a]| |A[:, b]|) with |A[:, a]| = sqrt(G[a][a]): D^-1 G D^-1, O(N^2)
  // (a zero column, G[a][a] = 0, gives a zero row, as column_features' zero feature does).
  std::vector<double> S(static_cast<size_t>(N * N)), inv(static_cast<size_t>(N));
  for (int64_t a = 0; a < N; ++a) {
    const double d = gram[a * N + a];
    inv[a] = d > 0 ? 1.0 / std::sqrt(d) : 0.0;
  }
  // The upper triangle, mirrored: a product's summation order may round G[a][b] and G[b][a] apart,
  // and the merges below read both halves.
  for (int64_t a = 0; a < N; ++a)
    for (int64_t b = a; b < N; ++b)
      S[a * N + b] = S[b * N + a] = static_cast<double>(gram[a * N + b]) * inv[a] * inv[b];
  std::vector<double> pr(static_cast<size_t>(N)), pc(static_cast<size_t>(N));  // position sums
  std::vector<int64_t> count(static_cast<size_t>(N), 1), stamp(static_cast<size_t>(N), 0);
  std::vector<char> active(static_cast<size_t>(N), 1);
  for (int64_t j = 0; j < N; ++j) {
    labels[j] = static_cast<int32_t>(j);
    pr[j] = static_cast<double>(j / grid_w) / static_cast<double>(grid_w);
    pc[j] = static_cast<double>(j % grid_w) / static_cast<double>(grid_w);
  }
  auto affinity = [&](int64_t a, int64_t b) {
    const double den = std::sqrt(S[a * N + a] * S[b * N + b]);
    const double cos = den > 0 ? S[a * N + b] / den : 0.0;
    if (lambda == 0) return cos;
    const double dr = pr[a] / count[a] - pr[b] / count[b], dc = pc[a] / count[a] - pc[b] / count[b];
    return cos - lambda * std::sqrt(dr * dr + dc * dc);
  };
  struct Pair {
    double aff;
    int64_t a, b, sa, sb;
    // Max-heap on aff; on equal affinity the lowest (a, b) comes first.
    bool operator<(const Pair& o) const {
      if (aff != o.aff) return aff < o.aff;
      return a != o.a ? a > o.a : b > o.b;
    }
  };
  std::vector<Pair> store;
  store.reserve(static_cast<size_t>(N * (N - 1) / 2 + N * N));
  for (int64_t a = 0; a < N; ++a)
    for (int64_t b = a + 1; b < N; ++b) store.push_back({affinity(a, b), a, b, 0, 0});
  std::priority_queue<Pair> heap(std::less<Pair>(), std::move(store));
  for (int64_t clusters = N; clusters > K && !heap.empty();) {
    const Pair p = heap.top();
    heap.pop();
    if (!active[p.a] || !active[p.b] || p.sa != stamp[p.a] || p.sb != stamp[p.b]) continue;  // stale
    const int64_t a = p.a, b = p.b;                                                          // a < b: b joins a
    for (int64_t y = 0; y < N; ++y)
      if (active[y] && y != a && y != b) S[a * N + y] = S[y * N + a] = S[a * N + y] + S[b * N + y];
    S[a * N + a] += 2 * S[a * N + b] + S[b * N + b];
    pr[a] += pr[b];
    pc[a] += pc[b];
    count[a] += count[b];
    active[b] = 0;
    ++stamp[a];
    for (int64_t j = 0; j < N; ++j)
      if (labels[j] == b) labels[j] = static_cast<int32_t>(a);
    --clusters;
    for (int64_t y = 0; y < N; ++y)
      if (active[y] && y != a)
        heap.push(y < a ? Pair{affinity(y, a), y, a, stamp[y], stamp[a]}
                        : Pair{affinity(a, y), a, y, stamp[a], stamp[y]});
  }
  relabel(labels, N, N);
}

}  // namespace medic
