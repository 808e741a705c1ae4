// Data-parallel pretraining under Open MPI's mpirun, two CPU ranks on this machine: the same run as
// one process (losses of 20 steps, parameters after them), resuming with another world size, and a
// rank that dies or hangs. Needs `mpirun` (Debian: openmpi-bin; .ci/run installs it).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { loadCheckpoint, readCheckpointState } from '../../lib/io/checkpoint.js';
import { jsonLines, runCli, type CliResult } from '../helpers/cli.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const entry = join(root, 'test', 'helpers', 'cli-entry.ts');
const hasMpirun = spawnSync('mpirun', ['--version'], { stdio: 'ignore' }).status === 0;

const dir = mkdtempSync(join(tmpdir(), 'medic-mpi-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The CLI under `mpirun -np 2` (as root, two ranks on however many cores there are). */
function mpirun(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const child = spawn(
    'mpirun',
    ['--allow-run-as-root', '--oversubscribe', '-np', '2', process.execPath, '--import', 'tsx', entry, ...args],
    {
      cwd: root,
      env: { ...process.env, CI: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

// A micro student on 16x16 synthetic images, 20 steps of a global batch of 8 (drop path on, so the
// per-sample draws must follow the samples), gradient buckets of 5,000 values (7 buckets).
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
  '--drop-path',
  '0.3',
  '--epochs',
  '2',
  '--steps-per-epoch',
  '10',
  '--warmup-epochs',
  '1',
  '--workers',
  '0',
  '--threads',
  '1',
  '--knn-limit',
  '24',
  '--seed',
  '3',
  '--bucket-mb',
  '0.02',
  '--json',
];
const one = ['--batch-size', '8'];
const two = ['--batch-size', '4'];

type Row = number[];
const steps = (stdout: string): Row[] =>
  jsonLines(stdout)
    .filter((e) => e.event === 'step')
    .map((e) => [e.step, e.loss, e.l_tok, e.l_cls, e.l_pix, e.grad_norm] as number[]);

/** Largest |a - b| relative to the largest |a| (per column of the step rows, or over a whole vector). */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(b.length).toBe(a.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(a[i]));
  }
  return num / den;
}

function expectSameSteps(got: Row[], want: Row[]): void {
  expect(got.map((r) => r[0])).toEqual(want.map((r) => r[0]));
  for (let col = 1; col < want[0].length; col++) {
    const d = relDiff(
      want.map((r) => r[col]),
      got.map((r) => r[col]),
    );
    expect(d, `column ${col} of the step records`).toBeLessThan(1e-5);
  }
}

const ok = (r: CliResult) => {
  expect(r.code, `exit code\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`).toBe(0);
};

describe.runIf(hasMpirun)('pretrain under mpirun -np 2', () => {
  let single: CliResult;
  const singleOut = join(dir, 'single');

  it('matches one process at the same global batch: losses of 20 steps, parameters, kNN', async () => {
    single = await runCli(['pretrain', ...tiny, ...one, '--out', singleOut]);
    ok(single);
    const out = join(dir, 'ranks');
    const r = await mpirun(['pretrain', ...tiny, ...two, '--out', out]);
    ok(r);
    // rank 0 alone prints the run
    expect(jsonLines(r.stdout).filter((e) => e.event === 'summary')).toHaveLength(1);
    expect(
      jsonLines(r.stdout).some((e) => e.event === 'info' && /rank 0 of 2 .*in 7 bucket\(s\)/.test(e.message as string)),
    ).toBe(true);
    expect(steps(single.stdout)).toHaveLength(20);
    expectSameSteps(steps(r.stdout), steps(single.stdout));
    const pa = loadCheckpoint(singleOut).params;
    const pb = loadCheckpoint(out).params;
    expect(relDiff(pa, pb)).toBeLessThan(1e-5);
    expect(relDiff(pa, pb)).toBeGreaterThan(0); // reduction order differs: not the same computation
    // the random-init kNN sees the same weights; its features were embedded in halves and gathered
    const evals = (s: string) =>
      jsonLines(s)
        .filter((e) => e.event === 'eval')
        .map((e) => [e.which, e.knn, e.n_train, e.n_val]);
    expect(evals(r.stdout)[0]).toEqual(evals(single.stdout)[0]);
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>);
    expect(metrics).toHaveLength(20);
    expect(metrics.every((m) => m.comm_ms >= 0 && m.comm_ms < m.step_ms)).toBe(true);
  });

  it('resumes with another world size at the same global batch: 2 ranks then 1, and 1 then 2', async () => {
    const want = steps(single.stdout);
    const a = join(dir, 'two-then-one');
    const a1 = await mpirun(['pretrain', ...tiny, ...two, '--stop-after', '7', '--out', a]);
    ok(a1);
    const a2 = await runCli(['pretrain', '--resume', a, ...one, '--json']);
    ok(a2);
    expect(a2.stderr).toBe('');
    expectSameSteps([...steps(a1.stdout), ...steps(a2.stdout)], want);

    const b = join(dir, 'one-then-two');
    const b1 = await runCli(['pretrain', ...tiny, ...one, '--stop-after', '13', '--out', b]);
    ok(b1);
    const b2 = await mpirun(['pretrain', '--resume', b, ...two, '--json']);
    ok(b2);
    expectSameSteps([...steps(b1.stdout), ...steps(b2.stdout)], want);
    expect(relDiff(loadCheckpoint(singleOut).params, loadCheckpoint(b).params)).toBeLessThan(1e-5);
  });

  // The integration branch's step inputs under data parallel: evolved masks (the teacher program's
  // attention, clustered per sample, keyed by the global sample index) and uncertainty balancing (its
  // log-variances are parameters, so their gradient is all-reduced like the others'; the spike guard
  // reads the rank-averaged losses) and bf16 storage (gradients stay f32, so the reduction is unchanged).
  it('evolved masks, uncertainty loss balancing and bf16 match one process at the same global batch', async () => {
    const extra = [
      '--mask',
      'evolved',
      '--loss-balance',
      'uncertainty',
      '--precision',
      'bf16',
      '--epochs',
      '1',
      '--steps-per-epoch',
      '6',
    ];
    const a = await runCli(['pretrain', ...tiny, ...one, ...extra, '--out', join(dir, 'evolved-one')]);
    ok(a);
    const b = await mpirun(['pretrain', ...tiny, ...two, ...extra, '--out', join(dir, 'evolved-two')]);
    ok(b);
    const want = steps(a.stdout);
    expect(want).toHaveLength(6);
    expectSameSteps(steps(b.stdout), want);
    const scales = (s: string) =>
      jsonLines(s)
        .filter((e) => e.event === 'step')
        .flatMap((e) => e.loss_scale as number[]);
    expect(scales(a.stdout)).toHaveLength(18);
    expect(relDiff(scales(a.stdout), scales(b.stdout))).toBeLessThan(1e-5);
    expect(
      relDiff(loadCheckpoint(join(dir, 'evolved-one')).params, loadCheckpoint(join(dir, 'evolved-two')).params),
    ).toBeLessThan(1e-5);
  });

  // Checkpoints at steps 2 and 4 (an epoch is 2 steps); rank 1 goes away after step 6. The spike guard
  // writes an epoch's checkpoint once the next step's loss passed it: step 4's is written after step 5,
  // before rank 0 can finish step 6 (whose all-reduce needs rank 1), so the fault cannot race it.
  const faulty = [...tiny, ...two, '--steps-per-epoch', '2', '--epochs', '10'];

  it('a killed rank stops the job, the launcher names it, the last checkpoint is intact', async () => {
    const out = join(dir, 'killed');
    const r = await mpirun(['pretrain', ...faulty, '--out', out], { MEDIC_FAULT: 'kill:1:6' });
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/process rank 1 .* exited on signal 9/);
    expect(readCheckpointState(out).state.step).toBe(4);
    expect(loadCheckpoint(out).params.length).toBeGreaterThan(0);
  });

  it('a hung rank makes the others stop after --comm-timeout, naming it', async () => {
    const out = join(dir, 'hung');
    const r = await mpirun(['pretrain', ...faulty, '--comm-timeout', '3', '--out', out], { MEDIC_FAULT: 'stall:1:6' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/rank 0 of 2: .* made no progress for 3 s; lost or stalled: rank 1; stopping/);
    expect(r.stderr).toMatch(/rank 0 stops the job \(MPI_Abort\)/);
    expect(readCheckpointState(out).state.step).toBe(4);
  });
});
