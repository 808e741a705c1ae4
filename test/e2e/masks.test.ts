// `medic-native masks`: the PNG grid (one column per image; rows: the image, then each strategy), with
// the evolved row from the seeded random teacher; bad flags named.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';

import { runCli } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'medic-masks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('medic-native masks', () => {
  it('writes the grid: 5 columns, image + block + random + evolved rows', async () => {
    const out = join(dir, 'm.png');
    const r = await runCli([
      'masks',
      '--data',
      'synthetic:40:4',
      '--img-size',
      '16',
      '--patch-size',
      '4',
      '--teacher-dim',
      '32',
      '--teacher-depth',
      '1',
      '--teacher-heads',
      '2',
      '--images',
      '5',
      '--scale',
      '2',
      '--mask-ratio',
      '0.5',
      '--threads',
      '1',
      '--out',
      out,
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/5 images x rows image \/ block \/ random \/ evolved \(hc, epoch 0\)/);
    // the random teacher sees the student's pixels (synthetic images: ImageNet's), and says so
    expect(r.stdout).toMatch(
      /teacher input: imagenet from the student's \(--normalize imagenet\), as the random teacher has no normalisation of its own: the student's pixels as they are/,
    );
    const m = await sharp(out).metadata();
    expect([m.format, m.width, m.height]).toEqual(['png', 5 * (32 + 2) + 2, 4 * (32 + 2) + 2]);
  });

  it('names a bad --mask', async () => {
    const r = await runCli(['masks', '--data', 'synthetic:40:4', '--mask', 'block,grid', '--out', join(dir, 'x.png')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--mask: expected a comma list of block, random, evolved, got 'grid'/);
  });
});
