// The 10,000 MNIST digits shipped with medic-native (`--data mnist`): assets/mnist, gzipped IDX, 28x28
// gray, about 1,000 per class, ordered by digit (assets/mnist/README.md says where they come from).
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DataError } from './errors.js';
import { readIdx } from './idx.js';
import { PixelSource } from './pixels.js';

export const MNIST_SIZE = 28;

/** The package's assets/mnist: two folders up from lib/data (run from source) and dist/data (built). */
export const BUNDLED_MNIST_DIR = fileURLToPath(new URL('../../assets/mnist/', import.meta.url));

let cached: PixelSource | undefined;

export function loadBundledMnist(): PixelSource {
  if (cached) return cached;
  const imagesPath = join(BUNDLED_MNIST_DIR, 'train-images-idx3-ubyte.gz');
  const images = readIdx(imagesPath);
  const labels = readIdx(join(BUNDLED_MNIST_DIR, 'train-labels-idx1-ubyte.gz'));
  const d = images.dims;
  if (d.length !== 3 || d[1] !== MNIST_SIZE || d[2] !== MNIST_SIZE || labels.dims[0] !== d[0]) {
    throw new DataError(
      `bundled digits '${imagesPath}' have dims [${d.join(', ')}] and ${labels.dims[0]} labels: expected [n, 28, 28] and n labels (a damaged install? reinstall medic-native)`,
      imagesPath,
    );
  }
  cached = PixelSource.create(images.data, labels.data, MNIST_SIZE, MNIST_SIZE, 1, 'mnist');
  return cached;
}
