// kNN evaluation speed: 60,000 bank and 10,000 query images of 28 px with the mini student (the MNIST
// train/test sizes), the time of each phase, for the path before issue 11 (features in batches of
// 128, similarities and top-k in a scalar JS loop) and the current one (larger feature batches, one
// engine GEMM per query block, partial top-k), side by side in one process on the same threads.
//
//   npx tsx bench/knn.ts                    # 60k x 10k, 2 threads, both paths
//   npx tsx bench/knn.ts --train 60000 --test 10000 --threads 2 --only new --json out.json
//
// The IDX files are made in a temp folder by repeating the bundled 10,000 digits (speed does not
// depend on the content); the student is at its seeded random init (the weights do not change the
// cost). Both paths must agree on the accuracies (checked: the same votes up to ties in f32).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { openData } from '../lib/data/index.js';
import { loadBundledMnist } from '../lib/data/mnist.js';
import { Engine } from '../lib/engine/index.js';
import { FeatureExtractor, embed } from '../lib/eval/features.js';
import { KNN_BATCH, knnClassify, l2normalize } from '../lib/eval/knn.js';
import { resolveConfig } from '../lib/train/config.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : def;
}

function writeIdx(dir: string, prefix: string, count: number): void {
  const src = loadBundledMnist();
  const h = src.handle() as unknown as { pixels: Uint8Array };
  const px = 28 * 28;
  const img = Buffer.alloc(16 + count * px);
  img.writeUInt32BE(0x803, 0);
  img.writeUInt32BE(count, 4);
  img.writeUInt32BE(28, 8);
  img.writeUInt32BE(28, 12);
  const lab = Buffer.alloc(8 + count);
  lab.writeUInt32BE(0x801, 0);
  lab.writeUInt32BE(count, 4);
  for (let i = 0; i < count; i++) {
    const j = (i * 7919) % src.count;
    img.set(h.pixels.subarray(j * px, (j + 1) * px), 16 + i * px);
    lab[8 + i] = src.labelOf(j);
  }
  writeFileSync(join(dir, `${prefix}-images-idx3-ubyte`), img);
  writeFileSync(join(dir, `${prefix}-labels-idx1-ubyte`), lab);
}

/** The classifier before issue 11: per query, a scalar dot product with every bank row, insertion top-k. */
function knnScalar(
  train: Float32Array,
  trainLabels: Int32Array,
  test: Float32Array,
  testLabels: Int32Array,
  dim: number,
  numClasses: number,
  ks: number[],
): Record<number, number> {
  const nTrain = trainLabels.length;
  const a = l2normalize(train, dim);
  const b = l2normalize(test, dim);
  const kMax = Math.min(Math.max(...ks), nTrain);
  const correct: Record<number, number> = Object.fromEntries(ks.map((k) => [k, 0]));
  const sims = new Float32Array(nTrain);
  const topIdx = new Int32Array(kMax);
  const topSim = new Float32Array(kMax);
  const votes = new Float64Array(numClasses);
  for (let q = 0; q < testLabels.length; q++) {
    for (let i = 0; i < nTrain; i++) {
      let s = 0;
      for (let j = 0; j < dim; j++) s += a[i * dim + j] * b[q * dim + j];
      sims[i] = s;
    }
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
      for (let r = 0; r < Math.min(k, n); r++) votes[trainLabels[topIdx[r]]] += Math.exp(topSim[r] / 0.07);
      let best = 0;
      for (let c = 1; c < numClasses; c++) if (votes[c] > votes[best]) best = c;
      if (best === testLabels[q]) correct[k]++;
    }
  }
  return Object.fromEntries(ks.map((k) => [k, correct[k] / testLabels.length]));
}

const nTrain = Number(arg('train', '60000'));
const nTest = Number(arg('test', '10000'));
const threads = Number(arg('threads', '2'));
const only = arg('only', 'both');
const dir = mkdtempSync(join(tmpdir(), 'medic-knn-bench-'));
try {
  writeIdx(dir, 'train', nTrain);
  writeIdx(dir, 't10k', nTest);
  const c = resolveConfig({}, { data: `idx:${dir}`, threads: String(threads) } as never);
  const data = await openData(c.data);
  const engine = Engine.create({ device: 'cpu', threads });
  const results: Record<string, unknown> = {
    n_train: nTrain,
    n_test: nTest,
    threads,
    model: c.model,
    img: c.imgSize,
    patch: c.patchSize,
    workers: c.workers,
  };
  const run = async (
    name: string,
    batch: number,
    classify: (
      bank: Float32Array,
      bl: Int32Array,
      q: Float32Array,
      ql: Int32Array,
      dim: number,
    ) => Record<number, number>,
  ) => {
    const fx = new FeatureExtractor(engine, c, batch);
    try {
      await fx.initRandom(c.seed);
      const t0 = performance.now();
      const bank = await embed(fx, data.train, c);
      const t1 = performance.now();
      const q = await embed(fx, data.val!, c);
      const t2 = performance.now();
      const acc = classify(bank.features, bank.labels, q.features, q.labels, fx.dim);
      const t3 = performance.now();
      const s = {
        bank: (t1 - t0) / 1000,
        queries: (t2 - t1) / 1000,
        classify: (t3 - t2) / 1000,
        total: (t3 - t0) / 1000,
      };
      results[name] = {
        feature_batch: batch,
        seconds: s,
        share: Object.fromEntries(
          Object.entries(s)
            .filter(([k]) => k !== 'total')
            .map(([k, v]) => [k, v / s.total]),
        ),
        accuracy: acc,
      };
      console.log(name, JSON.stringify(results[name]));
    } finally {
      fx.dispose();
    }
  };
  if (only !== 'new') await run('before', 128, (b, bl, q, ql, d) => knnScalar(b, bl, q, ql, d, 10, [10, 20]));
  if (only !== 'before')
    await run(
      'after',
      KNN_BATCH,
      (b, bl, q, ql, d) => knnClassify(b, bl, q, ql, d, 10, [10, 20], 0.07, { engine }).accuracy,
    );
  const bt = (results.before as { seconds: { total: number } } | undefined)?.seconds.total;
  const at = (results.after as { seconds: { total: number } } | undefined)?.seconds.total;
  if (bt && at) results.speedup = bt / at;
  console.log(JSON.stringify(results));
  const out = arg('json', '');
  if (out) writeFileSync(out, JSON.stringify(results, null, 2) + '\n');
  engine.dispose();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
