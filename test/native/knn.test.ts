// kNN's tiled similarity path: any tiling (query blocks x bank blocks, partial last tiles) gives the
// votes of one pass over the whole bank, ties included (they keep the lower bank index).
import { describe, expect, it } from 'vitest';

import { knnClassify, mergeTopK, partialTopK } from '../../lib/eval/knn.js';
import { cpuEngine, randomF32 } from '../helpers/parity.js';

describe('kNN tiles', () => {
  it('gives the same accuracies for tiles of 1, 256 x 5 and all of the bank', () => {
    const D = 12;
    const nTrain = 523;
    const nTest = 301;
    const train = randomF32(nTrain * D, 1);
    const test = randomF32(nTest * D, 2);
    // clustered labels so that accuracy is far from chance and every vote matters
    const label = (x: Float32Array, i: number) => (x[i * D] > 0 ? 1 : 0) + (x[i * D + 1] > 0 ? 2 : 0);
    const yTr = Int32Array.from({ length: nTrain }, (_, i) => label(train, i));
    const yTe = Int32Array.from({ length: nTest }, (_, i) => label(test, i));
    const engine = cpuEngine();
    const run = (tileElems: number) => knnClassify(train, yTr, test, yTe, D, 4, [1, 10, 20], 0.07, { engine, tileElems }).accuracy;
    const whole = run(1 << 24);
    expect(whole[10]).toBeGreaterThan(0.5);
    expect(run(1)).toEqual(whole);
    expect(run(256 * 5)).toEqual(whole); // 256 queries x 5 bank items per tile: 105 bank tiles, a partial last one
  });

  it('merging blocks in bank order keeps the single-pass top-k, ties at the lower index', () => {
    const sims = Float32Array.from([0.5, 0.9, 0.5, 0.9, 0.1, 0.9, 0.7]);
    const ts = new Float32Array(3);
    const ti = new Int32Array(3);
    expect(partialTopK(sims, 7, 3, ts, ti)).toBe(3);
    expect(Array.from(ti)).toEqual([1, 3, 5]);
    const ts2 = new Float32Array(3);
    const ti2 = new Int32Array(3);
    const m = mergeTopK(sims.subarray(0, 4), 4, 0, 3, ts2, ti2, 0);
    expect(mergeTopK(sims.subarray(4), 3, 4, 3, ts2, ti2, m)).toBe(3);
    expect(Array.from(ti2)).toEqual([1, 3, 5]);
    expect(Array.from(ts2)).toEqual(Array.from(ts));
  });
});
