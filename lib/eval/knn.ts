// kNN evaluation, DINO protocol: features are L2-normalised; every test feature votes among its
// top-k most cosine-similar train features, each vote weighted exp(sim / T) with T = 0.07.
// Reports accuracy for several k at once (10 and 20 by default; 20 is the headline).
//
// Speed: the similarities are computed on the engine as one GEMM per tile of Q queries x Nb bank
// items (sims [Q, Nb] = queries [Q, D] x bank block^T; the bank is uploaded once), read back into one
// reused host buffer, and each query keeps only a running top-k (a sorted list of k: most entries are
// rejected by one compare with its smallest). Tiles are 8 MB, so the three passes over them (GEMM
// write, copy, scan) stay in cache.
import type { ImageDataset } from '../data/index.js';
import { Engine, type World } from '../engine/index.js';
import type { PretrainConfig } from '../train/config.js';
import { embed, type DataReporting, type FeatureExtractor } from './features.js';

export interface KnnResult {
  /** k -> top-1 accuracy in [0, 1]. */
  accuracy: Record<number, number>;
  nTrain: number;
  nTest: number;
  /** Seconds per phase: feature extraction (bank, queries) and classification. */
  seconds?: { bank: number; queries: number; classify: number };
}

export function l2normalize(x: Float32Array, dim: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / dim; r++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += x[r * dim + j] ** 2;
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let j = 0; j < dim; j++) out[r * dim + j] = x[r * dim + j] * inv;
  }
  return out;
}

/** Images per forward when a kNN evaluation extracts features at small image sizes (forward only). */
export const KNN_BATCH = 512;

/**
 * The feature batch of a kNN evaluation: 512 images up to 64 px, 128 above (a ViT-B at 224 px needs
 * ~1 GB per 128), and no more than the images there are (a padded batch costs a full forward).
 */
export function knnBatch(imgSize: number, images = Infinity): number {
  return Math.max(1, Math.min(imgSize <= 64 ? KNN_BATCH : 128, images));
}

/** Elements of one tile of similarities (8 MB of f32: cache-sized on a CPU, and read back per tile). */
const TILE_ELEMS = 1 << 21;

/**
 * Merges one row of similarities (bank items base..base+n-1) into a running top-kMax (topSim / topIdx,
 * descending, m entries so far; ties keep the lower bank index, as one pass in bank order would).
 * Returns the new count.
 */
export function mergeTopK(
  sims: Float32Array,
  n: number,
  base: number,
  kMax: number,
  topSim: Float32Array,
  topIdx: Int32Array,
  m: number,
): number {
  for (let i = 0; i < n; i++) {
    const s = sims[i];
    if (m === kMax && s <= topSim[m - 1]) continue;
    let p = m < kMax ? m++ : m - 1;
    while (p > 0 && topSim[p - 1] < s) {
      topSim[p] = topSim[p - 1];
      topIdx[p] = topIdx[p - 1];
      p--;
    }
    topSim[p] = s;
    topIdx[p] = base + i;
  }
  return m;
}

/** The top-kMax of one full row (a single merge from an empty list). */
export function partialTopK(
  sims: Float32Array,
  n: number,
  kMax: number,
  topSim: Float32Array,
  topIdx: Int32Array,
): number {
  return mergeTopK(sims, n, 0, kMax, topSim, topIdx, 0);
}

export function knnClassify(
  train: Float32Array,
  trainLabels: Int32Array,
  test: Float32Array,
  testLabels: Int32Array,
  dim: number,
  numClasses: number,
  ks: number[] = [10, 20],
  temperature = 0.07,
  opts: { engine?: Engine; tileElems?: number } = {},
): KnnResult {
  const nTrain = trainLabels.length;
  const nTest = testLabels.length;
  if (train.length !== nTrain * dim || test.length !== nTest * dim)
    throw new Error('knn: feature and label counts differ');
  const accuracy: Record<number, number> = {};
  if (!nTest || !nTrain) {
    for (const k of ks) accuracy[k] = 0;
    return { accuracy, nTrain, nTest };
  }
  const engine = opts.engine ?? Engine.create({ device: 'cpu' });
  const kMax = Math.min(Math.max(...ks), nTrain);
  const correct: Record<number, number> = {};
  for (const k of ks) correct[k] = 0;
  // Tiles of Q queries x Nb bank items: one GEMM each, read back into one reused host buffer, and
  // merged into each query's running top-k. The bank is uploaded once, as tensors of Nb rows.
  const tile = opts.tileElems ?? TILE_ELEMS;
  const Q = Math.max(1, Math.min(nTest, 256));
  const Nb = Math.max(1, Math.min(nTrain, Math.floor(tile / Q)));
  const a = l2normalize(train, dim);
  const bank = [];
  for (let s = 0; s < nTrain; s += Nb) {
    const n = Math.min(Nb, nTrain - s);
    bank.push({ base: s, n, t: engine.tensor([n, dim], 'f32', a.subarray(s * dim, (s + n) * dim)) });
  }
  const queries = engine.tensor([Q, dim], 'f32');
  const simsFull = engine.tensor([Q, Nb], 'f32');
  const last = bank[bank.length - 1].n;
  const simsLast = last === Nb ? simsFull : engine.tensor([Q, last], 'f32');
  const hostFull = new Float32Array(Q * Nb);
  const hostLast = last === Nb ? hostFull : new Float32Array(Q * last);
  const topSim = new Float32Array(Q * kMax);
  const topIdx = new Int32Array(Q * kMax);
  const count = new Int32Array(Q);
  const votes = new Float64Array(numClasses);
  const b = l2normalize(test, dim);
  const block = new Float32Array(Q * dim);
  try {
    for (let q0 = 0; q0 < nTest; q0 += Q) {
      const nq = Math.min(Q, nTest - q0);
      block.fill(0);
      block.set(b.subarray(q0 * dim, (q0 + nq) * dim));
      queries.write(block);
      count.fill(0);
      for (const bk of bank) {
        const full = bk.n === Nb;
        const sims = full ? simsFull : simsLast;
        const host = full ? hostFull : hostLast;
        engine.op('gemm', [queries, bk.t], [sims], { trans_b: 1 });
        sims.read(host);
        for (let r = 0; r < nq; r++)
          count[r] = mergeTopK(
            host.subarray(r * bk.n, (r + 1) * bk.n),
            bk.n,
            bk.base,
            kMax,
            topSim.subarray(r * kMax, (r + 1) * kMax),
            topIdx.subarray(r * kMax, (r + 1) * kMax),
            count[r],
          );
      }
      for (let r = 0; r < nq; r++) {
        const ts = topSim.subarray(r * kMax, (r + 1) * kMax);
        const ti = topIdx.subarray(r * kMax, (r + 1) * kMax);
        for (const k of ks) {
          votes.fill(0);
          const kk = Math.min(k, count[r]);
          for (let j = 0; j < kk; j++) votes[trainLabels[ti[j]]] += Math.exp(ts[j] / temperature);
          let best = 0;
          for (let c = 1; c < numClasses; c++) if (votes[c] > votes[best]) best = c;
          if (best === testLabels[q0 + r]) correct[k]++;
        }
      }
    }
  } finally {
    for (const bk of bank) bk.t.dispose();
    queries.dispose();
    simsFull.dispose();
    if (simsLast !== simsFull) simsLast.dispose();
    if (!opts.engine) engine.dispose();
  }
  for (const k of ks) accuracy[k] = correct[k] / nTest;
  return { accuracy, nTrain, nTest };
}

/**
 * kNN of a student: embed the train split (the bank) and the val split with the eval forward, then
 * vote. --knn-limit caps the bank; the queries are capped at a fifth of it. Both are stride samples,
 * so class-sorted datasets keep their class balance.
 */
export async function knnEvaluate(
  fx: FeatureExtractor,
  train: ImageDataset,
  val: ImageDataset,
  c: PretrainConfig,
  numClasses: number,
  report: DataReporting = {},
  world?: World,
): Promise<KnnResult> {
  // --knn-limit caps the bank; the queries are capped at a fifth of it. Both are stride samples, so
  // class-sorted datasets keep their class balance. Data parallel: the ranks share the embedding.
  const bankSet = train.subsample(c.knnLimit);
  const querySet = val.subsample(c.knnLimit ? Math.max(1, Math.floor(c.knnLimit / 5)) : 0);
  const total = bankSet.length + querySet.length;
  const progress = (offset: number): DataReporting => ({
    ...report,
    onEmbedded: report.onEmbedded && ((n) => report.onEmbedded!(offset + n, total)),
  });
  const t0 = performance.now();
  const bank = await embed(fx, bankSet, c, progress(0), world);
  const t1 = performance.now();
  const query = await embed(fx, querySet, c, progress(bankSet.length), world);
  const t2 = performance.now();
  const r = knnClassify(bank.features, bank.labels, query.features, query.labels, fx.dim, numClasses, c.knnK, 0.07, {
    engine: fx.state.engine,
  });
  const t3 = performance.now();
  return { ...r, seconds: { bank: (t1 - t0) / 1000, queries: (t2 - t1) / 1000, classify: (t3 - t2) / 1000 } };
}
