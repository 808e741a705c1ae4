// eval linear / eval finetune / pretrain --eval end to end on a tiny run (micro student, 16 px
// synthetic images): results and reports, the random-init twin, exact resume after a stop, the
// classifier's timm export (names and shapes of timm's VisionTransformer with num_classes), bad input.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { SafetensorsFile } from '../../lib/io/safetensors.js';
import { jsonLines, runCli } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'medic-e2e-eval-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const run = join(dir, 'run');
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
  '1',
  '--steps-per-epoch',
  '3',
  '--warmup-epochs',
  '1',
  '--workers',
  '1',
  '--threads',
  '2',
  '--seed',
  '3',
];
const common = ['--workers', '1', '--threads', '2', '--json'];
const metrics = (out: string) =>
  readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, number>);

beforeAll(async () => {
  const r = await runCli(['pretrain', ...tiny, '--out', run, '--eval', 'knn,linear', '--json']);
  expect(r.code, r.stderr).toBe(0);
}, 300_000);

describe('pretrain --eval', () => {
  it('runs the linear probe on the student and its random-init twin, into summary.json and the report', () => {
    const s = JSON.parse(readFileSync(join(run, 'summary.json'), 'utf8'));
    for (const twin of ['pretrained', 'random_init']) {
      expect(s.evaluations.linear[twin].head).toBe('block 2');
      expect(s.evaluations.linear[twin].top1).toBeGreaterThan(0.25); // 4 balanced classes: chance is 0.25
    }
    for (const sub of ['linear', 'linear-scratch'])
      expect(existsSync(join(run, 'eval', sub, 'report.html'))).toBe(true);
    expect(readFileSync(join(run, 'report.html'), 'utf8')).toContain('href="eval/linear/report.html"');
    expect(() => JSON.parse(readFileSync(join(run, 'summary.json'), 'utf8')).evaluations.finetune.pretrained).toThrow();
  });
});

describe('medic-native eval linear', () => {
  it('probes several blocks with CLS + mean features, and resumes a stopped run exactly', async () => {
    const flags = ['--layers', '1,2', '--pool', 'cls+mean', '--epochs', '4', '--batch-size', '64', ...common];
    const a = join(dir, 'lin-a');
    const ra = await runCli(['eval', 'linear', run, '--out', a, ...flags]);
    expect(ra.code, ra.stderr).toBe(0);
    const sum = jsonLines(ra.stdout).find((e) => e.event === 'summary')!;
    expect(Object.keys(sum.val as object)).toEqual(['1', '2']);
    const evals = jsonLines(ra.stdout).filter((e) => e.event === 'eval');
    expect(evals.map((e) => e.epoch)).toEqual([1, 2, 3, 4]);
    const b = join(dir, 'lin-b');
    const rb1 = await runCli(['eval', 'linear', run, '--out', b, ...flags, '--stop-after', '5']);
    expect(rb1.code, rb1.stderr).toBe(0);
    const again = await runCli(['eval', 'linear', run, '--out', b, ...flags]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/holds a linear probe run already: add --resume/);
    const rb2 = await runCli(['eval', 'linear', run, '--out', b, ...flags, '--resume']);
    expect(rb2.code, rb2.stderr).toBe(0);
    expect(jsonLines(rb2.stdout).some((e) => e.event === 'info' && /features: read from/.test(String(e.message)))).toBe(
      true,
    );
    expect(metrics(b)).toEqual(metrics(a));
    expect(JSON.parse(readFileSync(join(b, 'summary.json'), 'utf8')).final).toEqual(
      JSON.parse(readFileSync(join(a, 'summary.json'), 'utf8')).final,
    );
  }, 300_000);

  it('says what is wrong with a bad flag', async () => {
    const r = await runCli(['eval', 'linear', run, '--pool', 'max', ...common]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--pool: expected cls, mean or cls\+mean, got 'max'/);
    const r2 = await runCli(['eval', 'linear', run, '--layers', '9', '--out', join(dir, 'lin-bad'), ...common]);
    expect(r2.stderr).toMatch(/--layers: block 9 does not exist \(the student has blocks 1..2\)/);
  }, 120_000);
});

describe('medic-native eval finetune', () => {
  it('fine-tunes, resumes exactly, and exports a classifier with timm names and the head', async () => {
    const flags = ['--epochs', '2', '--batch-size', '32', '--warmup-epochs', '1', ...common];
    const a = join(dir, 'ft-a');
    const ra = await runCli(['eval', 'finetune', run, '--out', a, ...flags]);
    expect(ra.code, ra.stderr).toBe(0);
    const b = join(dir, 'ft-b');
    expect((await runCli(['eval', 'finetune', run, '--out', b, ...flags, '--stop-after', '4'])).code).toBe(0);
    const rb = await runCli(['eval', 'finetune', run, '--out', b, ...flags, '--resume']);
    expect(rb.code, rb.stderr).toBe(0);
    expect(metrics(b).map((m) => [m.step, m.loss, m.lam])).toEqual(metrics(a).map((m) => [m.step, m.loss, m.lam]));
    expect(metrics(a).length).toBe(12); // 216 train images / 32 = 6 steps x 2 epochs

    // timm's VisionTransformer(global_pool='avg', num_classes=4, init_values=0.1) state_dict, by its
    // documented names: norm is an Identity there (no keys), fc_norm and head are present.
    const f = new SafetensorsFile(join(a, 'classifier-timm.safetensors'));
    try {
      const D = 32;
      const expected: Record<string, number[]> = {
        cls_token: [1, 1, D],
        pos_embed: [1, 17, D],
        'patch_embed.proj.weight': [D, 3, 4, 4],
        'patch_embed.proj.bias': [D],
        'fc_norm.weight': [D],
        'fc_norm.bias': [D],
        'head.weight': [4, D],
        'head.bias': [4],
      };
      for (let i = 0; i < 2; i++) {
        const b = `blocks.${i}`;
        Object.assign(expected, {
          [`${b}.norm1.weight`]: [D],
          [`${b}.norm1.bias`]: [D],
          [`${b}.attn.qkv.weight`]: [3 * D, D],
          [`${b}.attn.qkv.bias`]: [3 * D],
          [`${b}.attn.proj.weight`]: [D, D],
          [`${b}.attn.proj.bias`]: [D],
          [`${b}.ls1.gamma`]: [D],
          [`${b}.norm2.weight`]: [D],
          [`${b}.norm2.bias`]: [D],
          [`${b}.mlp.fc1.weight`]: [4 * D, D],
          [`${b}.mlp.fc1.bias`]: [4 * D],
          [`${b}.mlp.fc2.weight`]: [D, 4 * D],
          [`${b}.mlp.fc2.bias`]: [D],
          [`${b}.ls2.gamma`]: [D],
        });
      }
      expect(f.names().sort()).toEqual(Object.keys(expected).sort());
      for (const [k, shape] of Object.entries(expected)) expect(f.info(k).shape, k).toEqual(shape);
      const timm = JSON.parse(f.metadata.timm);
      expect(timm.kwargs).toMatchObject({
        num_classes: 4,
        global_pool: 'avg',
        embed_dim: D,
        depth: 2,
        init_values: 0.1,
        class_token: true,
      });
    } finally {
      f.close();
    }
    const s = JSON.parse(readFileSync(join(a, 'summary.json'), 'utf8'));
    expect(s.protocol).toBe('finetune');
    expect(s.final.head.top1).toBeGreaterThanOrEqual(0);
    expect(s.final.head.top5).toBeUndefined(); // 4 classes: no top-5
  }, 300_000);

  it('the random-init twin starts from the pretraining init, not the checkpoint', async () => {
    const r = await runCli([
      'eval',
      'finetune',
      run,
      '--from-scratch',
      '--epochs',
      '1',
      '--batch-size',
      '64',
      '--pool',
      'cls',
      ...common,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const s = jsonLines(r.stdout).find((e) => e.event === 'summary')!;
    expect(String(s.out)).toBe(join(run, 'eval', 'finetune-scratch'));
    expect(jsonLines(r.stdout).some((e) => e.event === 'info' && /random-init twin/.test(String(e.message)))).toBe(
      true,
    );
  }, 300_000);
});
