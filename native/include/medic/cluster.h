// Parts of an image for evolved masking: its patches clustered by the attention they receive from a
// frozen teacher. Not an op (nothing runs on the device): host code over the head-averaged attention
// map that the op attention_probs writes, called from the masking code of a training run.
//
// Features: patch j is described by column j of the map A [N, N] (the attention every patch pays to
// it), L2-normalised: x_j = A[:, j] / |A[:, j]| (a zero column stays zero). em reads A, hc the Gram
// matrix A^T A (below). All math here in double.
// Labels: parts are numbered 0, 1, ... in the order of their first patch (j ascending), so equal
// partitions give equal labels; a part that ends empty is simply absent (em may return fewer than K).
#pragma once

#include <cstdint>

namespace medic {

// Soft spherical k-means (the EM of EPM). mu_k = init_k / |init_k| (init [K, N], drawn by the caller);
// `rounds` times: z_jk = softmax_k(kappa x_j . mu_k), then mu_k = normalise(sum_j z_jk x_j) (kept when
// the sum is 0). Labels: argmax_k z_jk of one more E step (ties: the lowest k). O(rounds K N^2).
void cluster_em(const float* attn, int64_t N, int64_t K, const float* init, int64_t rounds, double kappa,
                int32_t* labels);

// Greedy agglomerative clustering (MEDiC's): from singletons, merge the pair (a, b) with the highest
//   cos(c_a, c_b) - lambda * |p_a - p_b|
// until K clusters remain, where c is the sum of a cluster's features (its centroid's direction) and p
// the mean grid position of its patches, (row, col) / grid_w, patch j at row j / grid_w, col j % grid_w.
// Ties: the pair with the lowest (a, b), a < b being the clusters' lowest patch indices.
// Input: gram [N, N] = A^T A, the dot products of the map's raw columns (computed in the engine, the
// teacher program's batched gemm, lib/models/medic.ts buildTeacherStep); the features' dot products
// x_a . x_b = G[a][b] / sqrt(G[a][a] G[b][b]) are taken from it in O(N^2). Then O(N^2 log N): cluster
// sums' dot products are updated in O(N) per merge, pairs live in a heap with lazy deletion, labels
// are rewritten in O(N) per merge. No N x N x N product here.
void cluster_hc(const float* gram, int64_t N, int64_t K, int64_t grid_w, double lambda, int32_t* labels);

}  // namespace medic
