// kNN evaluation of a student: embed the train split (the bank) and the val split with the eval
// forward (CLS after the final LN, no masking), then vote (lib/eval/knn.ts, DINO protocol).
import { DataLoader, type ImageDataset } from '../data/index.js';
import { knnClassify, type KnnResult } from '../eval/knn.js';
import type { PretrainConfig } from './config.js';
import { normalizationOf } from './config.js';
import type { FeatureExtractor } from './model.js';

export interface Embedded {
  features: Float32Array;
  labels: Int32Array;
}

/** Features of a dataset, in dataset order. */
export interface DataReporting {
  onWarning?: (message: string) => void;
  reported?: Set<string>;
}

export async function embed(fx: FeatureExtractor, dataset: ImageDataset, c: PretrainConfig, report: DataReporting = {}): Promise<Embedded> {
  const loader = new DataLoader(dataset, {
    batchSize: fx.batch,
    imageSize: c.imgSize,
    train: false,
    workers: c.workers,
    padLast: true,
    onWarning: report.onWarning,
    reported: report.reported,
    transform: { normalize: normalizationOf(c), cropPct: c.imgSize <= 32 ? 1 : 0.875 },
  });
  const total = dataset.length;
  const D = fx.dim;
  const features = new Float32Array(total * D);
  const labels = new Int32Array(total);
  let n = 0;
  try {
    for await (const b of loader) {
      const f = await fx.run(b.images);
      const take = b.size;
      features.set(f.subarray(0, take * D), n * D);
      labels.set(b.labels.subarray(0, take), n);
      n += take;
    }
  } finally {
    await loader.close();
  }
  if (n !== total) throw new Error(`kNN: embedded ${n} of ${total} images`);
  return { features, labels };
}

export async function knnEvaluate(
  fx: FeatureExtractor,
  train: ImageDataset,
  val: ImageDataset,
  c: PretrainConfig,
  numClasses: number,
  report: DataReporting = {},
): Promise<KnnResult> {
  // --knn-limit caps the bank; the queries are capped at a fifth of it. Both are stride samples, so
  // class-sorted datasets keep their class balance.
  const bank = await embed(fx, train.subsample(c.knnLimit), c, report);
  const query = await embed(fx, val.subsample(c.knnLimit ? Math.max(1, Math.floor(c.knnLimit / 5)) : 0), c, report);
  return knnClassify(bank.features, bank.labels, query.features, query.labels, fx.dim, numClasses, c.knnK);
}
