// Evolved masking (EPM-style, as MEDiC ablates it; docs/METHOD.md, Masking): each image's patches are
// clustered into parts by the attention they receive in the teacher's target block, and the noise
// that decides what is masked moves from a spatial pattern to whole parts as training goes on.
//
// Per image b of step s (stream (seed, mask, s, b), drawn in this order, so masks are a pure function
// of the seed, the step and the teacher's map: any worker, any resume gives the same masks):
//   K ~ floor(U[c, c + 2)), c = 40 - 30 * min(epoch, E) / E falling linearly over E = --evolve-epochs,
//       at most N;
//   a 2x2 table of uniforms tiled over the grid (spatial noise), one uniform per part (part noise);
//   em only: its initial centres [K, N], N(0, 2 / K) each (normalised natively).
// Clustering (native, medic/cluster.h): 'em' soft spherical k-means, 15 rounds, kernel 40, on the
// attention maps; 'hc' greedy agglomerative on the centroid cosine minus lambda times the centroids'
// grid distance, on the maps' Gram matrices attn^T attn. The Gram (an N x N x N product per image) is
// the teacher program's batched gemm (buildTeacherStep with clusterInput 'gram', on the engine's device),
// so the host's part is O(N^2 log N) per image: the column normalisation applied to the Gram in O(N^2),
// then the merges. clusterInputOf says which map a method reads. evolvedMasksAsync clusters on a native
// worker thread, so the training loop makes the next batch's masks during this batch's step (lookahead.ts).
// noise = (1 - a) spatial + a part with a = min(1, ((epoch + 1) / E)^gamma); the M = floor(N * ratio)
// patches of highest noise are masked (ties: the lower patch index first), so late in training whole
// parts are masked together, the last one cut to hit M exactly.
import { loadBinding } from '../engine/loader.js';
import { Rng, Stream } from '../util/rng.js';
import type { PretrainConfig } from './config.js';
import { maskedCount } from './masking.js';

export type ClusterMethod = 'em' | 'hc';

export interface EvolvedConfig {
  cluster: ClusterMethod;
  ratio: number;
  gridH: number;
  gridW: number;
  /** Epochs over which the part count falls from 40 to 10 and the noise turns semantic. */
  evolveEpochs: number;
  /** Exponent of the mixing schedule alpha = ((epoch + 1) / E)^gamma. */
  gamma: number;
  /** hc's relative-position weight (0 = the released code's pure attention similarity). */
  lambda: number;
  /** Host threads for the clustering (images in parallel). */
  threads?: number;
}

/** The evolved-masking settings of a run's config; `threads` host threads for the clustering. */
export function evolvedConfigOf(c: PretrainConfig, threads: number): EvolvedConfig {
  const grid = c.imgSize / c.patchSize;
  return {
    cluster: c.maskCluster,
    ratio: c.maskRatio,
    gridH: grid,
    gridW: grid,
    evolveEpochs: c.evolveEpochs || c.epochs,
    gamma: c.evolveGamma,
    lambda: c.maskLambda,
    threads,
  };
}

/** What the clustering reads: the attention maps attn [B, N, N] (em) or their Gram matrices attn^T attn (hc). */
export type ClusterInput = { attn: Float32Array } | { gram: Float32Array };

/** The teacher program's output each clustering method reads (buildTeacherStep's clusterInput). */
export function clusterInputOf(method: ClusterMethod): 'attn' | 'gram' {
  return method === 'hc' ? 'gram' : 'attn';
}

export const EM_ROUNDS = 15;
export const EM_KAPPA = 40;

/** The centre of the part-count range at `epoch` (40 at the start, 10 from E on). */
export function partCentre(epoch: number, E: number): number {
  return 40 - (30 * Math.min(epoch, E)) / E;
}

/** The weight of part noise against spatial noise at `epoch`. */
export function mixAlpha(epoch: number, E: number, gamma: number): number {
  return Math.min(1, ((epoch + 1) / E) ** gamma);
}

export interface EvolvedBatch {
  /** [B, N], 1 = masked. */
  mask: Uint8Array;
  /** [B, N] part of each patch. */
  parts: Int32Array;
  /** [B] parts asked for. */
  K: Int32Array;
}

/** What a step's masks draw before the clustering (all of it keyed by (seed, step, sample)). */
interface EvolvedDraws {
  maps: Float32Array;
  K: Int32Array;
  /** Per image: the 2x2 spatial noise table and one uniform per part. */
  tables: Float64Array[];
  partNoise: Float64Array[];
  /** em's initial centres [B, max(K), N]; null for hc. */
  init: Float32Array | null;
  opts: { rounds: number; kappa: number; lambda: number; threads: number };
}

/** What a step's masks are a function of. row0: the first row's index in the global batch. */
type MaskArgs = [
  c: EvolvedConfig,
  input: ClusterInput,
  B: number,
  seed: number,
  step: number,
  epoch: number,
  row0?: number,
];

/**
 * Masks of one step from the teacher's maps (`input`: attn [B, N, N] for em, its Gram matrices for hc,
 * clusterInputOf). Row b draws as sample row0 + b (data parallel: its index in the global batch), so
 * the split over processes does not change a mask.
 */
export function evolvedMasks(...args: MaskArgs): EvolvedBatch {
  const [c, , B, , , epoch] = args;
  const d = drawEvolved(...args);
  const parts = loadBinding().binding.clusterParts(
    c.cluster,
    d.maps,
    B,
    c.gridH * c.gridW,
    c.gridW,
    d.K,
    d.opts,
    d.init,
  );
  return maskFromParts(c, d, parts, epoch);
}

/**
 * evolvedMasks with the clustering on a native worker thread: the same masks, bit for bit, while the
 * caller goes on (the training loop runs the current step meanwhile). `input` must stay unchanged
 * until the promise settles.
 */
export async function evolvedMasksAsync(...args: MaskArgs): Promise<EvolvedBatch> {
  const [c, , B, , , epoch] = args;
  const d = drawEvolved(...args);
  const { binding } = loadBinding();
  const parts = await binding.clusterPartsAsync(c.cluster, d.maps, B, c.gridH * c.gridW, c.gridW, d.K, d.opts, d.init);
  return maskFromParts(c, d, parts, epoch);
}

/** Checks the maps and the mask count, then draws K, the noise and em's initial centres. */
function drawEvolved(...[c, input, B, seed, step, epoch, row0 = 0]: MaskArgs): EvolvedDraws {
  const N = c.gridH * c.gridW;
  const want = clusterInputOf(c.cluster);
  const maps = 'gram' in input ? input.gram : input.attn;
  if (!(want in input))
    throw new Error(
      `evolved masking: --mask-cluster ${c.cluster} clusters the ${want === 'gram' ? "attention maps' Gram matrices (gram)" : 'attention maps (attn)'}, was given ${want === 'gram' ? 'attn' : 'gram'}`,
    );
  if (maps.length !== B * N * N)
    throw new Error(`evolved masking: the ${want} maps hold ${maps.length} values, expected B * N * N = ${B * N * N}`);
  const M = maskedCount(N, c.ratio);
  if (M < 1 || M >= N)
    throw new Error(
      `--mask-ratio ${c.ratio} masks ${M} of ${N} patches: at least one patch must be masked and one visible`,
    );
  const centre = partCentre(epoch, c.evolveEpochs);
  const K = new Int32Array(B);
  const tables: Float64Array[] = [];
  const partNoise: Float64Array[] = [];
  const rngs: Rng[] = [];
  for (let b = 0; b < B; b++) {
    const rng = new Rng(seed, Stream.mask, step, row0 + b); // keyed by the global sample index (data parallel)
    K[b] = Math.min(N, Math.floor(rng.range(centre, centre + 2)));
    tables.push(Float64Array.from({ length: 4 }, () => rng.uniform()));
    partNoise.push(Float64Array.from({ length: K[b] }, () => rng.uniform()));
    rngs.push(rng);
  }
  let init: Float32Array | null = null;
  if (c.cluster === 'em') {
    const kmax = Math.max(...K);
    init = new Float32Array(B * kmax * N);
    for (let b = 0; b < B; b++) {
      const std = Math.sqrt(2 / K[b]);
      for (let i = 0; i < K[b] * N; i++) init[b * kmax * N + i] = std * rngs[b].normal();
    }
  }
  const opts = { rounds: EM_ROUNDS, kappa: EM_KAPPA, lambda: c.lambda, threads: c.threads ?? 1 };
  return { maps, K, tables, partNoise, init, opts };
}

/** The mixed noise of each patch, and its M highest masked (ties: the lower patch index first). */
function maskFromParts(c: EvolvedConfig, d: EvolvedDraws, parts: Int32Array, epoch: number): EvolvedBatch {
  const { gridW: W } = c;
  const N = c.gridH * W;
  const B = d.K.length;
  const M = maskedCount(N, c.ratio);
  const a = mixAlpha(epoch, c.evolveEpochs, c.gamma);
  const mask = new Uint8Array(B * N);
  const noise = new Float64Array(N);
  const order = new Int32Array(N);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < N; i++) {
      const spatial = d.tables[b][(Math.floor(i / W) % 2) * 2 + ((i % W) % 2)];
      noise[i] = (1 - a) * spatial + a * d.partNoise[b][parts[b * N + i]];
      order[i] = i;
    }
    order.sort((x, y) => noise[y] - noise[x] || x - y);
    for (let k = 0; k < M; k++) mask[b * N + order[k]] = 1;
  }
  return { mask, parts, K: d.K };
}
