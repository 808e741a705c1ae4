// kNN evaluation, DINO protocol: features are L2-normalised; every test feature votes among its
// top-k most cosine-similar train features, each vote weighted exp(sim / T) with T = 0.07.
// Reports accuracy for several k at once (10 and 20 by default; 20 is the headline).
//
// Speed: the similarities of a block of queries against the whole bank are one GEMM on the engine
// (sims [Q, N] = queries [Q, D] x bank^T; the bank is uploaded once), and each query keeps only a
// partial top-k while it scans its row (a sorted list of k, most entries rejected by one compare
// with its smallest). The query block is sized so that a block of similarities stays near 64 MB.
import type { ImageDataset } from '../data/index.js';
import { Engine } from '../engine/index.js';
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

/** Images per forward when a kNN evaluation extracts features (forward only, so larger than a training batch). */
export const KNN_BATCH = 512;

/** Elements of a similarity block kept at once (64 MB of f32). */
const BLOCK_ELEMS = 1 << 24;

/**
 * Top-kMax of one row of similarities into topSim / topIdx (descending; ties keep the lower index).
 * Returns how many were kept (min(kMax, n)).
 */
export function partialTopK(sims: Float32Array, n: number, kMax: number, topSim: Float32Array, topIdx: Int32Array): number {
  let m = 0;
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
    topIdx[p] = i;
  }
  return m;
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
  opts: { engine?: Engine; blockElems?: number } = {},
): KnnResult {
  const nTrain = trainLabels.length;
  const nTest = testLabels.length;
  if (train.length !== nTrain * dim || test.length !== nTest * dim) throw new Error('knn: feature and label counts differ');
  const accuracy: Record<number, number> = {};
  if (!nTest || !nTrain) {
    for (const k of ks) accuracy[k] = 0;
    return { accuracy, nTrain, nTest };
  }
  const engine = opts.engine ?? Engine.create({ device: 'cpu' });
  const kMax = Math.min(Math.max(...ks), nTrain);
  const correct: Record<number, number> = {};
  for (const k of ks) correct[k] = 0;
  const Q = Math.max(1, Math.min(nTest, Math.floor((opts.blockElems ?? BLOCK_ELEMS) / nTrain)));
  const topIdx = new Int32Array(kMax);
  const topSim = new Float32Array(kMax);
  const votes = new Float64Array(numClasses);
  const bank = engine.tensor([nTrain, dim], 'f32', l2normalize(train, dim));
  const queries = engine.tensor([Q, dim], 'f32');
  const sims = engine.tensor([Q, nTrain], 'f32');
  const b = l2normalize(test, dim);
  try {
    for (let q0 = 0; q0 < nTest; q0 += Q) {
      const n = Math.min(Q, nTest - q0);
      const block = new Float32Array(Q * dim);
      block.set(b.subarray(q0 * dim, (q0 + n) * dim));
      queries.write(block);
      engine.op('gemm', [queries, bank], [sims], { trans_b: 1 });
      const s = sims.read() as Float32Array;
      for (let r = 0; r < n; r++) {
        const m = partialTopK(s.subarray(r * nTrain, (r + 1) * nTrain), nTrain, kMax, topSim, topIdx);
        for (const k of ks) {
          votes.fill(0);
          const kk = Math.min(k, m);
          for (let j = 0; j < kk; j++) votes[trainLabels[topIdx[j]]] += Math.exp(topSim[j] / temperature);
          let best = 0;
          for (let c = 1; c < numClasses; c++) if (votes[c] > votes[best]) best = c;
          if (best === testLabels[q0 + r]) correct[k]++;
        }
      }
    }
  } finally {
    bank.dispose();
    queries.dispose();
    sims.dispose();
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
): Promise<KnnResult> {
  const t0 = performance.now();
  const bank = await embed(fx, train.subsample(c.knnLimit), c, report);
  const t1 = performance.now();
  const query = await embed(fx, val.subsample(c.knnLimit ? Math.max(1, Math.floor(c.knnLimit / 5)) : 0), c, report);
  const t2 = performance.now();
  const r = knnClassify(bank.features, bank.labels, query.features, query.labels, fx.dim, numClasses, c.knnK, 0.07, { engine: fx.state.engine });
  const t3 = performance.now();
  return { ...r, seconds: { bank: (t1 - t0) / 1000, queries: (t2 - t1) / 1000, classify: (t3 - t2) / 1000 } };
}
