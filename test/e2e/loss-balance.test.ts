// --loss-balance end to end on a tiny configuration: the scales each step used are the ones the
// balancing rule gives (recomputed here from the logged losses), they survive an interrupted run
// exactly, and uncertainty weighting learns its scales.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { jsonLines, runCli } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'medic-balance-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tiny = [
  '--data',
  'synthetic:240:4',
  '--img-size',
  '16',
  '--patch-size',
  '4',
  '--model',
  'micro',
  '--teacher-dim',
  '32',
  '--teacher-depth',
  '1',
  '--teacher-heads',
  '2',
  '--decoder-dim',
  '16',
  '--decoder-depth',
  '1',
  '--decoder-heads',
  '2',
  '--batch-size',
  '16',
  '--epochs',
  '2',
  '--steps-per-epoch',
  '4',
  '--warmup-epochs',
  '1',
  '--workers',
  '1',
  '--threads',
  '2',
  '--knn-limit',
  '64',
  '--seed',
  '5',
  '--json',
];

type Step = { step: number; loss: number; l_tok: number; l_cls: number; l_pix: number; loss_scale?: number[] };
const steps = (stdout: string) => jsonLines(stdout).filter((e) => e.event === 'step') as unknown as Step[];

describe('--loss-balance', () => {
  it('ema: each step divides each term by the bias-corrected running mean of the steps before', async () => {
    const m = 0.9;
    const r = await runCli([
      'pretrain',
      ...tiny,
      '--loss-balance',
      'ema',
      '--balance-momentum',
      String(m),
      '--out',
      join(dir, 'ema'),
    ]);
    expect(r.code, r.stderr).toBe(0);
    const s = steps(r.stdout);
    expect(s).toHaveLength(8);
    expect(s[0].loss_scale).toEqual([1, 1, 1]);
    const ema = [0, 0, 0];
    for (let i = 0; i < s.length; i++) {
      if (i > 0) {
        const corr = 1 - m ** i;
        for (let k = 0; k < 3; k++) expect(s[i].loss_scale![k]).toBeCloseTo(1 / (ema[k] / corr), 4);
      }
      const terms = [s[i].l_tok, s[i].l_cls, s[i].l_pix];
      for (let k = 0; k < 3; k++) ema[k] = m * ema[k] + (1 - m) * terms[k];
      // the logged total is the balanced objective
      const [a, b, c] = s[i].loss_scale!;
      expect(s[i].loss).toBeCloseTo(a * s[i].l_tok + 0.4 * b * s[i].l_cls + c * s[i].l_pix, 3);
    }
  });

  it('ema: an interrupted run resumes with the same scales and losses', async () => {
    const args = [...tiny, '--loss-balance', 'ema'];
    const a = await runCli(['pretrain', ...args, '--out', join(dir, 'ema-a')]);
    const out = join(dir, 'ema-b');
    const b1 = await runCli(['pretrain', ...args, '--out', out, '--stop-after', '3']);
    const b2 = await runCli(['pretrain', '--resume', out, '--json']);
    expect([a.code, b1.code, b2.code]).toEqual([0, 0, 0]);
    const key = (x: Step) => [x.step, x.loss, x.loss_scale];
    expect([...steps(b1.stdout), ...steps(b2.stdout)].map(key)).toEqual(steps(a.stdout).map(key));
  });

  it('uncertainty: the scales start at 1 and AdamW moves each log-variance against its gradient', async () => {
    const r = await runCli(['pretrain', ...tiny, '--loss-balance', 'uncertainty', '--out', join(dir, 'unc')]);
    expect(r.code, r.stderr).toBe(0);
    const s = steps(r.stdout) as (Step & { lr: number })[];
    expect(s[0].loss_scale).toEqual([1, 1, 1]);
    // AdamW's first update is lr * sign(gradient) (bias-corrected m / sqrt(v)); logvar has no weight
    // decay, and d/dlogvar = w (1 - exp(-logvar) L) at logvar 0 is w (1 - L). So after step 1 each
    // scale exp(-logvar) is exp(lr) where the term was below 1 and exp(-lr) where it was above.
    const first = [s[0].l_tok, s[0].l_cls, s[0].l_pix];
    for (let k = 0; k < 3; k++) expect(s[1].loss_scale![k]).toBeCloseTo(Math.exp(s[0].lr * Math.sign(1 - first[k])), 5);
    expect(s.at(-1)!.loss_scale!.every((x) => x > 0 && Number.isFinite(x))).toBe(true);
  });

  it('rejects an unknown mode naming the flag', async () => {
    const r = await runCli(['pretrain', ...tiny, '--loss-balance', 'magic', '--out', join(dir, 'bad')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--loss-balance/);
  });
});
