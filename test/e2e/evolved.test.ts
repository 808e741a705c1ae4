// --mask evolved end to end on a tiny configuration: trains (the teacher program one batch ahead, its
// clustering during the previous step; teacher_ms, mask_ms and mask_wait_ms in the metrics), and
// resumes exactly with another number of loader workers: masks depend on (seed, step) and the teacher's
// map only, and the lookahead takes the batches in the run's order (a lookahead that fetched from the
// run's position instead of the feed's own fails the resume comparison).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { jsonLines, runCli } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'medic-evolved-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// 24 x 24 images in patches of 4: 36 patches; --evolve-epochs 1 puts the second epoch at 10-11 parts.
const tiny = [
  '--data',
  'synthetic:160:4',
  '--img-size',
  '24',
  '--patch-size',
  '4',
  '--model',
  'micro',
  '--teacher-dim',
  '32',
  '--teacher-depth',
  '2',
  '--teacher-heads',
  '2',
  '--teacher-layer',
  '1',
  '--decoder-dim',
  '16',
  '--decoder-depth',
  '1',
  '--decoder-heads',
  '2',
  '--mask',
  'evolved',
  '--mask-ratio',
  '0.5',
  '--mask-cluster',
  'em',
  '--evolve-epochs',
  '1',
  '--batch-size',
  '16',
  '--epochs',
  '2',
  '--steps-per-epoch',
  '2',
  '--warmup-epochs',
  '1',
  '--threads',
  '2',
  '--knn-limit',
  '64',
  '--seed',
  '5',
];

const steps = (stdout: string) => jsonLines(stdout).filter((e) => e.event === 'step');
const losses = (stdout: string) => steps(stdout).map((e) => [e.step, e.loss, e.l_tok, e.l_cls, e.l_pix, e.grad_norm]);

describe('medic-native pretrain --mask evolved', () => {
  it(
    'trains, and a resumed run with other loader workers continues with the same losses',
    { timeout: 240_000 },
    async () => {
      const a = await runCli(['pretrain', ...tiny, '--workers', '1', '--out', join(dir, 'a'), '--json']);
      expect(a.stderr).toBe('');
      expect(a.code).toBe(0);
      const sa = steps(a.stdout);
      expect(sa.map((s) => s.step)).toEqual([1, 2, 3, 4]);
      for (const s of sa)
        for (const k of ['loss', 'teacher_ms', 'mask_ms', 'mask_wait_ms'])
          expect(Number.isFinite(s[k] as number), k).toBe(true);
      const out = join(dir, 'b');
      const b1 = await runCli(['pretrain', ...tiny, '--workers', '2', '--out', out, '--json', '--stop-after', '3']);
      expect(b1.code).toBe(0);
      const b2 = await runCli(['pretrain', '--resume', out, '--workers', '0', '--json']);
      expect(b2.code).toBe(0);
      expect([...losses(b1.stdout), ...losses(b2.stdout)]).toEqual(losses(a.stdout));
    },
  );

  it('hc (its Gram matrices from the teacher program) trains, deterministically', { timeout: 240_000 }, async () => {
    const hc = [...tiny.slice(0, tiny.indexOf('em')), 'hc', ...tiny.slice(tiny.indexOf('em') + 1)];
    const args = ['pretrain', ...hc, '--epochs', '1', '--eval', 'knn', '--json'];
    const a = await runCli([...args, '--out', join(dir, 'hc-a')]);
    expect(a.stderr).toBe('');
    expect(a.code).toBe(0);
    const sa = steps(a.stdout);
    expect(sa.map((s) => s.step)).toEqual([1, 2]);
    for (const s of sa)
      for (const k of ['loss', 'teacher_ms', 'mask_ms', 'mask_wait_ms'])
        expect(Number.isFinite(s[k] as number), k).toBe(true);
    const b = await runCli([...args, '--workers', '0', '--out', join(dir, 'hc-b')]);
    expect(losses(b.stdout)).toEqual(losses(a.stdout));
  });

  it('--teacher-layer beyond the teacher is refused with the flag named', async () => {
    const r = await runCli(['pretrain', ...tiny, '--teacher-layer', '3', '--out', join(dir, 'c')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(
      /--teacher-layer: expected a block of the 2-block teacher \(1\.\.2, 0 = the last\), got 3/,
    );
  });
});
