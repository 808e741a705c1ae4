// The CUDA engine on the CPU emulator (native/tests/emu, docs/GPU.md): the same .cu sources that nvcc
// compiles, translated to C++ and run with every CUDA thread as a fiber, mma.sync/ldmatrix taken from
// the PTX ISA's tables. Runs everywhere (CI included), no GPU needed. It checks the kernels' logic:
// indexing, fragment layouts, predication, barriers, split-K, reductions, graph capture and replay,
// and (under AddressSanitizer) that no kernel reads or writes outside its tensors.
// Speed and the hardware's own rounding stay for a GPU run (bench/gpu-check.sh).
//
// beforeAll builds build/emu with `npm run build:emu` (incremental: a few seconds when up to date,
// about a minute from scratch on 2 cores).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { jsonLines, runCli } from '../helpers/cli.js';

import { OP_NAMES } from '../../lib/engine/ops.js';

const root = join(import.meta.dirname, '..', '..');
const emuDir = join(root, 'build', 'emu');
const addon = join(emuDir, 'Release', 'medic_cuda_emu.node');
const parity = join(emuDir, 'medic_parity_emu');
const parityAsan = join(emuDir, 'medic_parity_emu_asan');
const selftest = join(emuDir, 'medic_emu_selftest');
const work = mkdtempSync(join(tmpdir(), 'medic-emu-'));

type Run = { code: number | null; out: string };

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: root, env: { ...process.env, ...env } });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, out }));
  });
}

type ParityReport = {
  device: string;
  seed: number;
  summary: { pass: number; fail: number; missing: number };
  parity: { op: string; case: string; status: string; err: number; tol: number; hash: string; detail: string }[];
};

// One seed for both orders: the same inputs, so their outputs can be compared bit for bit.
const seed = String(Date.now() % 1_000_000_007);

async function parityRun(order: string, binary = parity): Promise<ParityReport> {
  const json = join(work, `parity-${order}.json`);
  const r = await run(binary, ['--no-timing', '--seed', seed, '--json', json], { MEDIC_EMU_ORDER: order });
  expect(r.out).not.toContain('AddressSanitizer');
  const failed = r.out.split('\n').filter((l) => /^(FAIL|MISSING|ERROR)/.test(l));
  expect(failed, `${order} order:\n${failed.join('\n')}`).toEqual([]);
  expect(r.code, r.out.slice(-2000)).toBe(0);
  return JSON.parse(readFileSync(json, 'utf8')) as ParityReport;
}

// The emulator's fiber switch is x86-64 assembly; elsewhere these checks cannot run.
if (process.arch !== 'x64') {
  describe('CUDA emulator', () => {
    it('needs an x86-64 machine', (ctx) =>
      ctx.skip(`the emulator's fiber switch is x86-64 only (this is ${process.arch})`));
  });
}

describe.runIf(process.arch === 'x64')('CUDA emulator', () => {
  beforeAll(async () => {
    const r = await run('npm', ['run', 'build:emu']);
    expect(r.code, `npm run build:emu failed:\n${r.out.slice(-4000)}`).toBe(0);
    for (const f of [addon, parity, parityAsan, selftest]) expect(existsSync(f), f).toBe(true);
  }, 900_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('self-test: exact mma/ldmatrix product, cp.async landing at its wait, and the faults it claims to catch are caught', async () => {
    const r = await run(selftest, []);
    expect(r.out).toContain('emulator self-test: 0 failure(s)');
    expect(r.out.match(/^PASS /gm)?.length, r.out).toBe(13);
    expect(r.code).toBe(0);
  });

  it('every CUDA kernel matches the CPU kernel (threads in order, under AddressSanitizer)', async () => {
    const rep = await parityRun('forward', parityAsan);
    expect(rep.device).toContain('emulator');
    expect(rep.summary.fail + rep.summary.missing).toBe(0);
    // Every op of the table is covered, and the tensor-core ops are compared to real tolerances.
    const ops = new Set(rep.parity.map((p) => p.op));
    expect(ops.size).toBe(OP_NAMES.length);
    const gemm = rep.parity.filter((p) => p.op === 'gemm');
    expect(gemm.length).toBeGreaterThanOrEqual(15);
    for (const g of gemm) expect(g.err).toBeLessThan(g.tol);
    // Mixed precision: every op with bf16 slots also ran with them in bf16 ("bf16", "mixed" variants).
    const bf16 = rep.parity.filter((p) => / (bf16|mixed)/.test(p.case));
    expect(bf16.length).toBeGreaterThanOrEqual(300);
    for (const p of bf16) expect(p.err, `${p.op} ${p.case}`).toBeLessThanOrEqual(p.tol);
    // (597 cases since the bf16 variants: 357 s here under AddressSanitizer on 2 shared cores, load
    // average about 10; hence the longer timeout)
  }, 1_800_000);

  it('every CUDA kernel matches the CPU kernel with threads shuffled, and gives the same bits as in order', async () => {
    const rep = await parityRun('shuffle');
    expect(rep.summary.pass).toBeGreaterThanOrEqual(500);
    expect(rep.summary.fail).toBe(0);
    // Determinism (no float atomics, fixed reduction orders): the outputs do not depend on the order
    // in which threads and blocks run, bit for bit, against the in-order run on the same inputs.
    const ordered = JSON.parse(readFileSync(join(work, 'parity-forward.json'), 'utf8')) as ParityReport;
    expect(ordered.seed).toBe(rep.seed);
    const byCase = new Map(ordered.parity.map((p) => [`${p.op} ${p.case}`, p.hash]));
    const differ = rep.parity.filter((p) => byCase.get(`${p.op} ${p.case}`) !== p.hash).map((p) => `${p.op} ${p.case}`);
    expect(differ, `seed ${seed}: outputs that depend on the thread order`).toEqual([]);
    expect(rep.parity.every((p) => /^[0-9a-f]{16}$/.test(p.hash))).toBe(true);
  }, 1_800_000);

  // Dry runs (MEDIC_EMU_DRY_RUN=1): every launch is checked against the device limits but no kernel
  // runs, so the full-size shapes of the benchmark take seconds: launch configurations, workspace
  // growth before capture, graph capture, and the memory the step needs, at the batch the GPU runs.
  it('dry run: every timed kernel shape at ViT-B/16 batch 256 launches within the device limits', async () => {
    const r = await run(parity, ['--no-parity', '--batch', '256', '--reps', '1'], { MEDIC_EMU_DRY_RUN: '1' });
    const bad = r.out.split('\n').filter((l) => /^(ERROR|MISSING)/.test(l));
    expect(bad, bad.join('\n')).toEqual([]);
    expect((r.out.match(/^TIME /gm) ?? []).length).toBeGreaterThanOrEqual(40);
    expect(r.code).toBe(0);
  }, 300_000);

  it('dry run: the whole ViT-B/16 MEDiC step at batch 256 captures as one graph and fits an H200', async () => {
    const r = await run(
      'npx',
      ['tsx', 'bench/gpu_step.ts', '--device', 'cuda', '--batch', '256', '--steps', '2', '--warmup', '2'],
      {
        MEDIC_NATIVE_BINARY: addon,
        MEDIC_EMU_DRY_RUN: '1',
        MEDIC_EMU_VERBOSE: '1',
      },
    );
    expect(r.code, r.out.slice(-3000)).toBe(0);
    const nodes = Number(/graph instantiated with (\d+) nodes/.exec(r.out)?.[1]);
    expect(nodes, 'kernels and copies in the captured step').toBeGreaterThan(500);
    const peak = Number(/peak device memory ([\d.]+) GiB/.exec(r.out)?.[1]);
    expect(peak).toBeGreaterThan(1);
    expect(peak, 'device memory of the batch-256 step (an H200 has about 139 GiB)').toBeLessThan(139);
  }, 300_000);

  it('test/gpu on the emulated CUDA backend: every op through N-API and 6 MEDiC steps with graph capture', async () => {
    const r = await run('npx', ['vitest', 'run', 'test/gpu', '--reporter=verbose'], {
      MEDIC_NATIVE_BINARY: addon,
      MEDIC_EMU_VERBOSE: '1',
      NO_COLOR: '1',
      FORCE_COLOR: '0',
    });
    const passed = Number(/Tests\s+(\d+) passed/.exec(r.out)?.[1]);
    expect(passed, r.out.slice(-3000)).toBeGreaterThanOrEqual(36);
    expect(r.out).not.toMatch(/\d+ failed/);
    expect(r.out).not.toMatch(/skipped/);
    // The step after the first was captured once and later steps replayed it.
    expect(r.out).toMatch(/graph instantiated with \d+ nodes/);
    expect((r.out.match(/graph launch/g) ?? []).length).toBeGreaterThanOrEqual(5);
    expect(r.code).toBe(0);
  }, 600_000);
  // The CLI on the emulated GPU, as test/e2e runs it on the CPU: --device cuda end to end, and an
  // interrupted run resumed from its checkpoint continues with the uninterrupted run's losses, bit for
  // bit (device-side drop-path RNG, graph re-capture after resume, no float atomics anywhere).
  it('pretrain --device cuda: a full run, and an interrupted + resumed run with the same losses bit for bit', async () => {
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
      '--json',
    ];
    const env = { MEDIC_NATIVE_BINARY: addon };
    const losses = (stdout: string) =>
      jsonLines(stdout)
        .filter((e) => e.event === 'step')
        .map((e) => [e.loss, e.l_tok, e.l_cls, e.l_pix, e.grad_norm] as number[]);

    const a = await runCli(['pretrain', ...tiny, '--device', 'cuda', '--out', join(work, 'a')], env);
    expect(a.code, a.stderr).toBe(0);
    const ev = jsonLines(a.stdout);
    expect(ev.some((e) => e.event === 'info' && /^device cuda:0 \(medic CUDA emulator/.test(e.message as string))).toBe(
      true,
    );
    expect(ev.find((e) => e.event === 'summary')!.status).toBe('done');
    expect(losses(a.stdout)).toHaveLength(6);

    const b1 = await runCli(
      ['pretrain', ...tiny, '--device', 'cuda', '--out', join(work, 'b'), '--stop-after', '4'],
      env,
    );
    expect(b1.code, b1.stderr).toBe(0);
    const b2 = await runCli(['pretrain', '--resume', join(work, 'b'), '--json'], env);
    expect(b2.code, b2.stderr).toBe(0);
    expect([...losses(b1.stdout), ...losses(b2.stdout)]).toEqual(losses(a.stdout));

    // The same run on the CPU engine: the GPU's bf16 tensor-core operands keep the losses close.
    const c = await runCli(['pretrain', ...tiny, '--device', 'cpu', '--out', join(work, 'c')]);
    expect(c.code, c.stderr).toBe(0);
    const lc = losses(c.stdout);
    losses(a.stdout).forEach((row, i) =>
      expect(Math.abs(row[0] - lc[i][0]) / Math.abs(lc[i][0]), `step ${i + 1} loss`).toBeLessThan(2e-2),
    );
  }, 300_000);
});
