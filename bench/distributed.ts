// Data parallel on one machine: 2 ranks x 1 thread (mpirun -np 2) against 1 rank x 2 threads, the same
// global batch and the same steps, run alternately (A B A B ...) so both sides share the machine's
// state. Throughput is the median img/s of the logged steps after the first few; the communication
// share is the time the steps spent in all-reduce calls over their total time.
//
//   npx tsx bench/distributed.ts [--rounds 3] [--steps 30] [--batch 128] [--model mini] [--bind core|none]
//
// Needs mpirun (Open MPI). Figures: bench/README.md.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(root, 'test', 'helpers', 'cli-entry.ts');
const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const rounds = Number(arg('rounds', '3'));
const steps = Number(arg('steps', '30'));
const batch = Number(arg('batch', '128'));
const model = arg('model', 'mini');
// Open MPI binds each of 2 ranks to a core by default; on a machine shared with other work a bound
// rank cannot move off a busy core, so `--bind none` is worth comparing there.
const bind = arg('bind', 'core');
const skip = 5; // first steps: allocation, page faults, caches

const dir = mkdtempSync(join(tmpdir(), 'medic-bench-dist-'));
const common = [
  'pretrain',
  '--model',
  model,
  '--epochs',
  '1',
  '--steps-per-epoch',
  String(steps),
  '--workers',
  '0',
  '--knn-limit',
  '20',
  '--json',
];

interface Sample {
  imgS: number;
  commShare: number;
  stepMs: number;
}

function run(kind: 'ranks' | 'threads', i: number): Sample {
  const out = join(dir, `${kind}-${i}`);
  const cli = [process.execPath, '--import', 'tsx', entry, ...common, '--out', out];
  const r =
    kind === 'threads'
      ? spawnSync(cli[0], [...cli.slice(1), '--threads', '2', '--batch-size', String(batch)], {
          cwd: root,
          env: { ...process.env, CI: '1' },
        })
      : spawnSync(
          'mpirun',
          [
            '--allow-run-as-root',
            '--bind-to',
            bind,
            '-np',
            '2',
            ...cli,
            '--threads',
            '1',
            '--batch-size',
            String(batch / 2),
          ],
          { cwd: root, env: { ...process.env, CI: '1' } },
        );
  if (r.status !== 0) throw new Error(`${kind} run failed:\n${r.stdout}\n${r.stderr}`);
  const m = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>)
    .slice(skip);
  const median = (v: number[]) => v.sort((a, b) => a - b)[Math.floor(v.length / 2)];
  const total = m.reduce((a, x) => a + x.step_ms, 0);
  const comm = m.reduce((a, x) => a + (x.comm_ms ?? 0), 0);
  return { imgS: median(m.map((x) => x.img_s)), commShare: comm / total, stepMs: median(m.map((x) => x.step_ms)) };
}

const results: Record<'ranks' | 'threads', Sample[]> = { ranks: [], threads: [] };
try {
  for (let i = 0; i < rounds; i++) {
    for (const kind of ['threads', 'ranks'] as const) {
      const s = run(kind, i);
      results[kind].push(s);
      console.log(
        `${kind.padEnd(7)} round ${i + 1}: ${s.imgS.toFixed(0)} img/s, step ${s.stepMs.toFixed(1)} ms, comm ${(100 * s.commShare).toFixed(1)} %`,
      );
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const med = (v: number[]) => v.slice().sort((a, b) => a - b)[Math.floor(v.length / 2)];
const t = med(results.threads.map((s) => s.imgS));
const r = med(results.ranks.map((s) => s.imgS));
console.log(
  `\nmodel ${model}, global batch ${batch}, ${steps} steps (first ${skip} skipped), ${rounds} rounds, ranks bound to ${bind}, medians:\n` +
    `  1 rank x 2 threads : ${t.toFixed(0)} img/s\n` +
    `  2 ranks x 1 thread : ${r.toFixed(0)} img/s (comm ${(100 * med(results.ranks.map((s) => s.commShare))).toFixed(1)} % of step time)\n` +
    `  ratio ranks / threads: ${(r / t).toFixed(2)}`,
);
