// The pretrain and eval commands end to end on a tiny configuration (seconds per run): the run
// folder, JSON lines, exact resume, SIGINT, divergence, and the bad-input errors.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { writeSafetensors } from '../../lib/io/safetensors.js';
import { jsonLines, runCli, startCli } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'medic-e2e-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// micro student on 16x16 synthetic images in 4 classes: 16 patches, 6 masked.
const tiny = [
  '--data', 'synthetic:240:4', '--img-size', '16', '--patch-size', '4', '--model', 'micro',
  '--teacher-dim', '32', '--teacher-depth', '1', '--teacher-heads', '2',
  '--decoder-dim', '16', '--decoder-depth', '1', '--decoder-heads', '2',
  '--batch-size', '16', '--epochs', '2', '--steps-per-epoch', '3', '--warmup-epochs', '1',
  '--workers', '1', '--threads', '2', '--knn-limit', '100', '--seed', '3',
];

const losses = (stdout: string) => jsonLines(stdout).filter((e) => e.event === 'step').map((e) => [e.step, e.loss, e.l_tok, e.l_cls, e.l_pix, e.grad_norm]);

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
    for (const s of steps) for (const k of ['loss', 'l_tok', 'l_cls', 'l_pix', 'grad_norm', 'lr', 'img_s', 'wait_ms']) expect(Number.isFinite(s[k] as number)).toBe(true);
    // total = 1 * tok + 0.4 * cls + 1 * pix, as logged
    for (const s of steps) expect(s.loss as number).toBeCloseTo((s.l_tok as number) + 0.4 * (s.l_cls as number) + (s.l_pix as number), 4);
    const evals = ev.filter((e) => e.event === 'eval');
    expect(evals.map((e) => e.which)).toEqual(['random-init', 'pretrained']);
    for (const e of evals) expect(Object.keys(e.knn as object)).toEqual(['10', '20']);
    expect(ev.some((e) => e.event === 'info' && /seeded random CLIP-architecture/.test(e.message as string))).toBe(true);
    const summary = ev.find((e) => e.event === 'summary')!;
    expect(summary.status).toBe('done');
    for (const f of ['config.json', 'metrics.jsonl', 'report.html', 'summary.json', 'student-timm.safetensors', 'checkpoints/latest.json'])
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

  it('stops with a clear message when the loss diverges, keeping the last good checkpoint', async () => {
    const out = join(dir, 'nan');
    const r = await runCli(['pretrain', ...tiny, '--lr', '1e9', '--warmup-epochs', '0', '--clip-grad', '0', '--epochs', '20', '--out', out, '--json']);
    expect(r.code).toBe(3);
    const warn = jsonLines(r.stdout).find((e) => e.event === 'warning' && /diverged/.test(e.message as string));
    expect(warn?.message).toMatch(/the loss is (NaN|Infinity|-Infinity)/);
    expect(warn?.message).toMatch(/last good checkpoint is kept/);
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
    await bad(['pretrain', '--data', join(dir, 'no-such-folder')], /no-such-folder/);
    await bad(['pretrain', '--resume', join(dir, 'nothing-here')], /nothing-here: no such file or folder/);
    const corrupt = join(dir, 'corrupt.safetensors');
    writeFileSync(corrupt, 'not a checkpoint at all');
    await bad(['pretrain', '--resume', corrupt], /corrupt.safetensors: not a valid safetensors file/);
    // a checkpoint whose shapes do not fit: resume the micro run as a mini student
    await bad(['pretrain', '--resume', join(dir, 'full'), '--model', 'mini'], /does not fit this model .*encoder\.patch_embed\.proj\.weight: checkpoint has \[32,3,4,4\], the model needs \[96,3,4,4\]/);
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
