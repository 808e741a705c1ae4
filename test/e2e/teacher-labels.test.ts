// A teacher with knowledge, end to end: a small ViT is trained with labels by the evaluation suite's
// fine-tune (from its random init), exported with timm names, and used as the --teacher of a new run.
// Its student must beat both its own random-init twin and the student of the seeded random teacher on
// kNN by a clear margin: distillation transfers what the teacher knows, which a random teacher lacks.
// The classifier is pooled by the mean of its patch tokens (the fine-tune default), so the run must
// also read that pooling from the file for the CLS target (--teacher-pool auto).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { runCli } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'medic-e2e-teacher-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// 1,200 procedural images in 6 classes (hue + shape), 120 of them the val split kNN is scored on.
const data = ['--data', 'synthetic:1200:6', '--img-size', '16', '--patch-size', '4', '--model', 'micro'];
const common = ['--workers', '1', '--threads', '2', '--seed', '3'];
const student = [
  ...data,
  ...['--decoder-dim', '16', '--decoder-depth', '1', '--decoder-heads', '2'],
  ...['--batch-size', '32', '--epochs', '25', '--warmup-epochs', '1'],
  ...common,
];

const knnOf = (run: string) => {
  const s = JSON.parse(readFileSync(join(run, 'summary.json'), 'utf8')) as {
    knn: Record<string, number>;
    knn_random_init: Record<string, number>;
  };
  return { pretrained: s.knn['20'], twin: s.knn_random_init['20'] };
};

describe('a label-trained ViT as the teacher', () => {
  it('its student beats the random-init twin and the random teacher’s student on kNN', async () => {
    const carrier = join(dir, 'architecture');
    let r = await runCli([
      'pretrain',
      ...data,
      ...common,
      '--teacher',
      'random',
      '--stop-after',
      '1',
      '--out',
      carrier,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const ft = join(dir, 'finetune');
    const recipe = ['--epochs', '12', '--lr', '2e-3', '--layer-decay', '1', '--mixup', '0', '--cutmix', '0'];
    r = await runCli([
      'eval',
      'finetune',
      carrier,
      '--from-scratch',
      ...recipe,
      '--warmup-epochs',
      '1',
      ...common,
      '--batch-size',
      '32',
      '--out',
      ft,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const classifier = join(ft, 'classifier-timm.safetensors');

    const taught = join(dir, 'taught');
    r = await runCli(['pretrain', ...student, '--teacher', classifier, '--out', taught]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /teacher: CLS target: the mean of its patch tokens \(its 'timm' metadata says global_pool 'avg'\)/,
    );
    const random = join(dir, 'random');
    r = await runCli([
      'pretrain',
      ...student,
      '--teacher',
      'random',
      '--teacher-dim',
      '32',
      '--teacher-depth',
      '1',
      '--teacher-heads',
      '2',
      '--out',
      random,
    ]);
    expect(r.code, r.stderr).toBe(0);

    const a = knnOf(taught);
    const b = knnOf(random);
    expect(a.twin).toBe(b.twin); // the same student architecture and seed: one random-init baseline
    expect(a.pretrained - a.twin).toBeGreaterThan(0.08);
    expect(a.pretrained - b.pretrained).toBeGreaterThan(0.05);
  }, 600_000);
});
