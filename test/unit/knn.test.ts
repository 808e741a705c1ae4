import { describe, expect, it } from 'vitest';

import { knnClassify } from '../../lib/eval/knn.js';
import { Rng } from '../../lib/util/rng.js';

// Straightforward reference: full sort of similarities, weighted votes.
function reference(
  train: Float32Array,
  ty: Int32Array,
  test: Float32Array,
  qy: Int32Array,
  dim: number,
  C: number,
  k: number,
): number {
  const norm = (x: Float32Array, r: number) => Math.hypot(...x.subarray(r * dim, (r + 1) * dim));
  let correct = 0;
  for (let q = 0; q < qy.length; q++) {
    const sims = Array.from({ length: ty.length }, (_, i) => {
      let s = 0;
      for (let j = 0; j < dim; j++) s += train[i * dim + j] * test[q * dim + j];
      return { i, s: s / (norm(train, i) * norm(test, q)) };
    }).sort((a, b) => b.s - a.s || a.i - b.i);
    const votes = new Float64Array(C);
    for (const { i, s } of sims.slice(0, k)) votes[ty[i]] += Math.exp(s / 0.07);
    let best = 0;
    for (let c = 1; c < C; c++) if (votes[c] > votes[best]) best = c;
    if (best === qy[q]) correct++;
  }
  return correct / qy.length;
}

// Train and test sets drawn around the same class centres (seeded), with uniform noise.
function split(nTrain: number, nTest: number, dim: number, C: number, noise: number, seed: number) {
  const rng = new Rng(seed);
  const centres = Array.from({ length: C }, () => Array.from({ length: dim }, () => rng.range(-1, 1)));
  return { tr: sample(nTrain, dim, C, noise, rng, centres), te: sample(nTest, dim, C, noise, rng, centres) };
}

function sample(n: number, dim: number, C: number, noise: number, rng: Rng, centres: number[][]) {
  const x = new Float32Array(n * dim);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % C;
    for (let j = 0; j < dim; j++) x[i * dim + j] = centres[y[i]][j] + noise * rng.range(-1, 1);
  }
  return { x, y };
}

describe('kNN (DINO protocol)', () => {
  it('matches a brute-force reference for k = 10 and 20', () => {
    const C = 5;
    const dim = 16;
    const { tr, te } = split(300, 60, dim, C, 1.2, 1);
    const r = knnClassify(tr.x, tr.y, te.x, te.y, dim, C);
    expect(r.accuracy[10]).toBeCloseTo(reference(tr.x, tr.y, te.x, te.y, dim, C, 10), 12);
    expect(r.accuracy[20]).toBeCloseTo(reference(tr.x, tr.y, te.x, te.y, dim, C, 20), 12);
    expect(r.accuracy[20]).toBeGreaterThan(0.3); // separable enough to beat chance (0.2) clearly
    expect(r.accuracy[20]).toBeLessThan(1); // noisy enough that the test can tell methods apart
  });

  it('is perfect on well separated clusters and at chance on noise', () => {
    const { tr, te } = split(200, 40, 8, 4, 0.05, 3);
    expect(knnClassify(tr.x, tr.y, te.x, te.y, 8, 4).accuracy[20]).toBe(1);
    const rng = new Rng(9);
    const noise = (n: number) => Float32Array.from({ length: n * 8 }, () => rng.range(-1, 1));
    const y = (n: number) => Int32Array.from({ length: n }, (_, i) => i % 4);
    const acc = knnClassify(noise(400), y(400), noise(400), y(400), 8, 4).accuracy[20];
    expect(acc).toBeGreaterThan(0.1);
    expect(acc).toBeLessThan(0.4);
  });
});
