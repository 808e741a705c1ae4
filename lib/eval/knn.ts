// kNN evaluation, DINO protocol: features are L2-normalised; every test feature votes among its
// top-k most cosine-similar train features, each vote weighted exp(sim / T) with T = 0.07.
// Reports accuracy for several k at once (10 and 20 by default; 20 is the headline).
// knnEvaluate embeds the train split (the bank) and the val split with the evaluation forward
// (lib/eval/features.ts) and votes.
import type { ImageDataset } from '../data/index.js';
import type { World } from '../engine/index.js';
import type { PretrainConfig } from '../train/config.js';
import { embed, type DataReporting, type FeatureExtractor } from './features.js';

export interface KnnResult {
  /** k -> top-1 accuracy in [0, 1]. */
  accuracy: Record<number, number>;
  nTrain: number;
  nTest: number;
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

export function knnClassify(
  train: Float32Array,
  trainLabels: Int32Array,
  test: Float32Array,
  testLabels: Int32Array,
  dim: number,
  numClasses: number,
  ks: number[] = [10, 20],
  temperature = 0.07,
): KnnResult {
  const nTrain = trainLabels.length;
  const nTest = testLabels.length;
  if (train.length !== nTrain * dim || test.length !== nTest * dim) throw new Error('knn: feature and label counts differ');
  const a = l2normalize(train, dim);
  const b = l2normalize(test, dim);
  const kMax = Math.min(Math.max(...ks), nTrain);
  const correct: Record<number, number> = {};
  for (const k of ks) correct[k] = 0;
  const sims = new Float32Array(nTrain);
  const topIdx = new Int32Array(kMax);
  const topSim = new Float32Array(kMax);
  const votes = new Float64Array(numClasses);
  for (let q = 0; q < nTest; q++) {
    const qo = q * dim;
    for (let i = 0; i < nTrain; i++) {
      let s = 0;
      const io = i * dim;
      for (let j = 0; j < dim; j++) s += a[io + j] * b[qo + j];
      sims[i] = s;
    }
    // Top-kMax by insertion into a sorted (descending) list; ties keep the lower train index.
    let n = 0;
    for (let i = 0; i < nTrain; i++) {
      const s = sims[i];
      if (n === kMax && s <= topSim[n - 1]) continue;
      let p = n < kMax ? n++ : n - 1;
      while (p > 0 && topSim[p - 1] < s) {
        topSim[p] = topSim[p - 1];
        topIdx[p] = topIdx[p - 1];
        p--;
      }
      topSim[p] = s;
      topIdx[p] = i;
    }
    for (const k of ks) {
      votes.fill(0);
      const kk = Math.min(k, n);
      for (let r = 0; r < kk; r++) votes[trainLabels[topIdx[r]]] += Math.exp(topSim[r] / temperature);
      let best = 0;
      for (let c = 1; c < numClasses; c++) if (votes[c] > votes[best]) best = c;
      if (best === testLabels[q]) correct[k]++;
    }
  }
  const accuracy: Record<number, number> = {};
  for (const k of ks) accuracy[k] = nTest ? correct[k] / nTest : 0;
  return { accuracy, nTrain, nTest };
}

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
  const bank = await embed(fx, train.subsample(c.knnLimit), c, report, world);
  const query = await embed(fx, val.subsample(c.knnLimit ? Math.max(1, Math.floor(c.knnLimit / 5)) : 0), c, report, world);
  return knnClassify(bank.features, bank.labels, query.features, query.labels, fx.dim, numClasses, c.knnK);
}
