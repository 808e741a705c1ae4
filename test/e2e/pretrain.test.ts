// The pretrain and eval commands end to end on a tiny configuration (seconds per run): the run
// folder, JSON lines, exact resume, SIGINT, divergence, and the bad-input errors.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';

import { writeSafetensors } from '../../lib/io/safetensors.js';
import { jsonLines, runCli, startCli } from '../helpers/cli.js';
import { writeIdx } from '../helpers/data.js';

const dir = mkdtempSync(join(tmpdir(), 'medic-e2e-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// micro student on 16x16 synthetic images in 4 classes: 16 patches, 6 masked.
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
  '3',
  '--warmup-epochs',
  '1',
  '--workers',
  '1',
  '--threads',
  '2',
  '--knn-limit',
  '100',
  '--seed',
  '3',
];

const losses = (stdout: string) =>
  jsonLines(stdout)
    .filter((e) => e.event === 'step')
    .map((e) => [e.step, e.loss, e.l_tok, e.l_cls, e.l_pix, e.grad_norm]);

describe('medic-native pretrain', () => {
  it('trains, evaluates and leaves a complete run folder', async () => {
    const out = join(dir, 'full');
    const r = await runCli(['pretrain', ...tiny, '--out', out, '--json']);
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.code).toBe(0);
    const ev = jsonLines(r.stdout);
    expect(ev[0].event).toBe('config');
    expect((ev[0].config as Record<string, unknown>).wCls).toBe(0.4);
    const steps = ev.filter((e) => e.event === 'step');
    expect(steps.map((s) => s.step)).toEqual([1, 2, 3, 4, 5, 6]);
    for (const s of steps)
      for (const k of ['loss', 'l_tok', 'l_cls', 'l_pix', 'grad_norm', 'lr', 'img_s', 'wait_ms'])
        expect(Number.isFinite(s[k] as number)).toBe(true);
    // total = 1 * tok + 0.4 * cls + 1 * pix, as logged
    for (const s of steps)
      expect(s.loss as number).toBeCloseTo((s.l_tok as number) + 0.4 * (s.l_cls as number) + (s.l_pix as number), 4);
    const evals = ev.filter((e) => e.event === 'eval');
    expect(evals.map((e) => e.which)).toEqual(['random-init', 'pretrained']);
    for (const e of evals) expect(Object.keys(e.knn as object)).toEqual(['10', '20']);
    expect(ev.some((e) => e.event === 'info' && /seeded random CLIP-architecture/.test(e.message as string))).toBe(
      true,
    );
    const summary = ev.find((e) => e.event === 'summary')!;
    expect(summary.status).toBe('done');
    // the precision the steps ran in (fp32, the default) and this invocation's steps and their time
    expect(summary.precision).toBe('fp32');
    const trained = summary.trained as { steps: number; seconds: number };
    expect(trained.steps).toBe(6);
    expect(trained.seconds).toBeGreaterThan(0);
    const file = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as Record<string, unknown>;
    expect(file).toMatchObject({ precision: 'fp32', train_steps: 6, train_seconds: trained.seconds });
    for (const f of [
      'config.json',
      'metrics.jsonl',
      'report.html',
      'summary.json',
      'student-timm.safetensors',
      'checkpoints/latest.json',
    ])
      expect(existsSync(join(out, f)), f).toBe(true);
    expect(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(6);
    expect(readFileSync(join(out, 'report.html'), 'utf8')).toMatch(/<svg/);

    const e = await runCli(['eval', 'knn', out, '--json']);
    expect(e.code).toBe(0);
    const knn = jsonLines(e.stdout)[0];
    // the same weights, data and protocol as the end-of-run evaluation
    expect(knn.knn).toEqual(evals[1].knn);
  });

  it('resumes exactly: an interrupted run continues with the losses of the uninterrupted one', async () => {
    const a = await runCli(['pretrain', ...tiny, '--out', join(dir, 'a'), '--json']);
    expect(a.code).toBe(0);
    const out = join(dir, 'b');
    const b1 = await runCli(['pretrain', ...tiny, '--out', out, '--json', '--stop-after', '4']);
    expect(b1.code).toBe(0);
    expect(jsonLines(b1.stdout).find((e) => e.event === 'summary')!.status).toBe('stopped');
    const b2 = await runCli(['pretrain', '--resume', out, '--json']);
    expect(b2.stderr).toBe('');
    expect(b2.code).toBe(0);
    expect([...losses(b1.stdout), ...losses(b2.stdout)]).toEqual(losses(a.stdout));
    // a setting that moves the step -> epoch -> data mapping is allowed on resume, with a warning
    const b3 = await runCli(['pretrain', '--resume', out, '--batch-size', '8', '--out', join(dir, 'b3'), '--json']);
    expect(b3.code).toBe(0);
    expect(
      jsonLines(b3.stdout).some(
        (e) => e.event === 'warning' && /--batch-size 8 differs from the checkpoint's 16/.test(e.message as string),
      ),
    ).toBe(true);
  });

  it('finishes the step, checkpoints and exits 130 on SIGINT', async () => {
    const out = join(dir, 'sigint');
    const run = startCli(['pretrain', ...tiny, '--epochs', '50', '--out', out, '--json']);
    await run.waitFor(/"event":"step"/);
    run.child.kill('SIGINT');
    const r = await run.done;
    expect(r.code).toBe(130);
    expect(jsonLines(r.stdout).find((e) => e.event === 'summary')!.status).toBe('interrupted');
    expect(readdirSync(join(out, 'checkpoints')).some((f) => f.endsWith('.safetensors'))).toBe(true);
  });

  it('resumes exactly at an epoch boundary, evaluations included, and a --stop-after that reaches the end finishes', async () => {
    const evalsOf = (stdout: string) =>
      jsonLines(stdout)
        .filter((e) => e.event === 'eval' && e.which === 'pretrained')
        .map((e) => [e.step, e.epoch, e.knn]);
    const a = await runCli(['pretrain', ...tiny, '--eval-every', '1', '--out', join(dir, 'ea'), '--json']);
    expect(a.code).toBe(0);
    expect(evalsOf(a.stdout).map((e) => e.slice(0, 2))).toEqual([
      [3, 1],
      [6, 2],
    ]);
    const out = join(dir, 'eb');
    const b1 = await runCli(['pretrain', ...tiny, '--eval-every', '1', '--out', out, '--json', '--stop-after', '3']);
    expect(b1.code).toBe(0);
    expect(jsonLines(b1.stdout).find((e) => e.event === 'summary')!.status).toBe('stopped');
    // the stop lands on the epoch boundary: one checkpoint there, at the start of epoch 2
    expect(readdirSync(join(out, 'checkpoints')).filter((f) => f.endsWith('.safetensors'))).toEqual([
      'step-00000003.safetensors',
    ]);
    // a --stop-after that lands on the last step finishes the run (final kNN, export)
    const b2 = await runCli(['pretrain', '--resume', out, '--json', '--stop-after', '3']);
    expect(b2.code).toBe(0);
    expect(jsonLines(b2.stdout).find((e) => e.event === 'summary')!.status).toBe('done');
    expect(existsSync(join(out, 'student-timm.safetensors'))).toBe(true);
    expect([...losses(b1.stdout), ...losses(b2.stdout)]).toEqual(losses(a.stdout));
    expect([...evalsOf(b1.stdout), ...evalsOf(b2.stdout)]).toEqual(evalsOf(a.stdout));
    expect(
      readFileSync(join(out, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).step),
    ).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('stops with a clear message when the loss diverges, keeping the last good checkpoint', async () => {
    const out = join(dir, 'nan');
    const good = await runCli(['pretrain', ...tiny, '--epochs', '1', '--out', out, '--json']);
    expect(good.code).toBe(0);
    const diverge = ['--lr', '1e9', '--warmup-epochs', '0', '--clip-grad', '0', '--epochs', '20'];
    const r = await runCli(['pretrain', '--resume', out, ...diverge, '--json']);
    expect(r.code).toBe(3);
    const warn = jsonLines(r.stdout).find((e) => e.event === 'warning' && /diverged/.test(e.message as string));
    // NaN/inf, or (before it) a finite loss far above its running median: the spike guard
    expect(warn?.message).toMatch(/the loss is (NaN|Infinity|-Infinity)|the (loss|grad norm) \S+ is \S+x the median/);
    expect(warn?.message).toMatch(/last good checkpoint is kept/);
    expect(warn?.message).toMatch(/step-00000003\.safetensors/);
    expect(JSON.parse(readFileSync(join(out, 'checkpoints', 'latest.json'), 'utf8')).step).toBe(3);
    // resuming from it drops the diverged steps' records from metrics.jsonl
    const again = await runCli(['pretrain', '--resume', out, '--epochs', '2', '--json']);
    expect(again.code).toBe(0);
    expect(
      readFileSync(join(out, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).step),
    ).toEqual([1, 2, 3, 4, 5, 6]);
    // diverging before any checkpoint says so instead of pointing at one
    const fresh = await runCli(['pretrain', ...tiny, ...diverge, '--out', join(dir, 'nan-fresh'), '--json']);
    expect(fresh.code).toBe(3);
    expect(
      jsonLines(fresh.stdout).find((e) => e.event === 'warning' && /diverged/.test(e.message as string))?.message,
    ).toMatch(/No checkpoint was written before it/);
  });

  it('rejects bad input with errors that name what was wrong', async () => {
    const bad = async (args: string[], re: RegExp) => {
      const r = await runCli(args);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr + r.stdout).toMatch(re);
    };
    await bad(['pretrain', '--mask', 'grid'], /--mask <kind>' argument 'grid' is invalid/);
    await bad(['pretrain', '--mask-ratio', '1.5'], /--mask-ratio: expected a number in \(0, 1\), got 1.5/);
    await bad(['pretrain', '--encoding', 'sideways'], /--encoding <kind>' argument 'sideways' is invalid/);
    await bad(['pretrain', '--epochs', 'many'], /--epochs: expected a number, got "many"/);
    // (its own --out: the repository's runs/latest may hold a run of its own)
    await bad(['pretrain', '--data', join(dir, 'no-such-folder'), '--out', join(dir, 'no-data')], /no-such-folder/);
    await bad(['pretrain', '--resume', join(dir, 'nothing-here')], /nothing-here: no such file or folder/);
    const corrupt = join(dir, 'corrupt.safetensors');
    writeFileSync(corrupt, 'not a checkpoint at all');
    await bad(['pretrain', '--resume', corrupt], /corrupt.safetensors: not a valid safetensors file/);
    // a checkpoint whose shapes do not fit: resume the micro run as a mini student
    await bad(
      ['pretrain', '--resume', join(dir, 'full'), '--model', 'mini'],
      /does not fit this model .*encoder\.patch_embed\.proj\.weight: checkpoint has \[32,3,4,4\], the model needs \[96,3,4,4\]/,
    );
    // a teacher file with missing keys
    const teacher = join(dir, 'teacher.safetensors');
    writeSafetensors(teacher, {
      'visual.conv1.weight': { dtype: 'F32', shape: [32, 3, 4, 4], data: new Float32Array(32 * 48) },
      'visual.class_embedding': { dtype: 'F32', shape: [32], data: new Float32Array(32) },
      'visual.positional_embedding': { dtype: 'F32', shape: [17, 32], data: new Float32Array(17 * 32) },
    });
    await bad(['pretrain', ...tiny, '--teacher', teacher, '--out', join(dir, 't')], /teacher.safetensors.*missing/);
    await bad(['eval', 'knn', join(dir, 'nothing-here')], /nothing-here: no such file or folder/);
  });
});

describe('medic-native pretrain on user data', () => {
  it('trains on an image folder with train/ and val/, skipping a corrupt file once with its path', async () => {
    const root = join(dir, 'folder');
    const classes: Record<string, [number, number, number]> = { circles: [220, 40, 40], stripes: [40, 40, 220] };
    const writes: Promise<unknown>[] = [];
    for (const [split, n] of [
      ['train', 20],
      ['val', 5],
    ] as const)
      for (const [cls, rgb] of Object.entries(classes)) {
        mkdirSync(join(root, split, cls), { recursive: true });
        for (let i = 0; i < n; i++) {
          const w = 24 + (i % 5) * 4;
          const px = Buffer.alloc(w * w * 3);
          for (let p = 0; p < w * w; p++)
            for (let ch = 0; ch < 3; ch++) px[3 * p + ch] = (rgb[ch] * ((p * (i + 3)) % 97)) / 97;
          const img = sharp(px, { raw: { width: w, height: w, channels: 3 } });
          writes.push((i % 2 ? img.png() : img.jpeg()).toFile(join(root, split, cls, `${i}.${i % 2 ? 'png' : 'jpg'}`)));
        }
      }
    await Promise.all(writes);
    writeFileSync(join(root, 'train', 'circles', 'broken.jpg'), Buffer.from('definitely not a jpeg'));
    const args = tiny.map((a) => (a === 'synthetic:240:4' ? root : a));
    const r = await runCli(['pretrain', ...args, '--batch-size', '8', '--out', join(dir, 'folder-run'), '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const ev = jsonLines(r.stdout);
    const warnings = ev.filter((e) => e.event === 'warning' && String(e.message).includes('broken.jpg'));
    expect(warnings).toHaveLength(1);
    expect(ev.filter((e) => e.event === 'step')).toHaveLength(6);
    expect(ev.find((e) => e.event === 'info' && /train 41 images/.test(String(e.message)))).toBeDefined();
    expect(ev.find((e) => e.event === 'eval' && e.which === 'pretrained')!.n_val).toBe(10);
  });

  it('trains on IDX files (gzipped)', async () => {
    const root = join(dir, 'idx');
    mkdirSync(root, { recursive: true });
    const make = (n: number, seed: number) => {
      const px = new Uint8Array(n * 16 * 16);
      const labels = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        labels[i] = i % 3;
        for (let p = 0; p < 256; p++) px[i * 256 + p] = ((p % 16) * (labels[i] + 1) * 17 + seed * i) & 255;
      }
      return { px, labels };
    };
    const tr = make(64, 1);
    const te = make(15, 2);
    writeIdx(join(root, 'train-images-idx3-ubyte.gz'), [64, 16, 16], tr.px, { gzip: true });
    writeIdx(join(root, 'train-labels-idx1-ubyte.gz'), [64], tr.labels, { gzip: true });
    writeIdx(join(root, 't10k-images-idx3-ubyte.gz'), [15, 16, 16], te.px, { gzip: true });
    writeIdx(join(root, 't10k-labels-idx1-ubyte.gz'), [15], te.labels, { gzip: true });
    const args = tiny.map((a) => (a === 'synthetic:240:4' ? `idx:${root}` : a));
    const r = await runCli(['pretrain', ...args, '--out', join(dir, 'idx-run'), '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const ev = jsonLines(r.stdout);
    expect((ev[0].config as Record<string, unknown>).hflip).toBe(0); // digit-style data: no flips
    expect(ev.filter((e) => e.event === 'step')).toHaveLength(6);
    expect(ev.find((e) => e.event === 'eval' && e.which === 'pretrained')!.n_val).toBe(15);
  });
});
