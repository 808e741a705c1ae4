// What --mask evolved costs per training step, end to end: short pretraining runs (--stop-after) of
// one or more checkouts of this package, alternated, with the per-step times of metrics.jsonl. Used to
// compare the in-line masks (teacher, clustering, then the step) with the lookahead (the next batch's
// clustering during this step; lib/train/lookahead.ts) by running a checkout from before the change
// beside the current one.
// Usage: npx tsx bench/evolved_step.ts [--roots /path/a,/path/b] [--rounds 2] [--steps 24]
//        [--cases digits-em,digits-hc,g14-em,g14-hc] [--threads 2]
// A root is a checkout with dist/ and build/ built; its bin/medic-native.js is run.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const opt = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const roots = opt('roots', '.')
  .split(',')
  .map((r) => resolve(r));
const rounds = Number(opt('rounds', '2'));
const steps = Number(opt('steps', '24'));
const threads = opt('threads', '2');

// digits at 28 px in patches of 4 (49 patches); g14: 56 px in patches of 4 (196 patches, ViT-B/16's grid)
const cases: Record<string, string[]> = {
  'digits-em': ['--patch-size', '4', '--mask-cluster', 'em'],
  'digits-hc': ['--patch-size', '4', '--mask-cluster', 'hc'],
  'g14-em': ['--img-size', '56', '--patch-size', '4', '--mask-cluster', 'em', '--teacher', 'random'],
  'g14-hc': ['--img-size', '56', '--patch-size', '4', '--mask-cluster', 'hc', '--teacher', 'random'],
};
const chosen = opt('cases', Object.keys(cases).join(',')).split(',');

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

interface Row {
  root: string;
  kase: string;
  step: number;
  teacher: number;
  mask: number;
  wait: number;
  perStep: number;
}

function once(root: string, kase: string): Row {
  const dir = mkdtempSync(join(tmpdir(), 'medic-evolved-step-'));
  try {
    const args = [join(root, 'bin/medic-native.js'), 'pretrain', '--mask', 'evolved', '--mask-ratio', '0.75'];
    args.push(...cases[kase], '--threads', threads, '--stop-after', String(steps), '--knn-limit', '256');
    args.push('--eval-every', '0', '--log-every', '0', '--json', '--out', join(dir, 'run'));
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 28 });
    if (r.status !== 0) throw new Error(`${kase} in ${root}: exit ${r.status}\n${r.stderr}`);
    const recs = r.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, number | string>)
      .filter((e) => e.event === 'step')
      .slice(2); // the first steps warm up caches and the loader
    const col = (k: string) => median(recs.map((e) => Number(e[k] ?? 0)));
    // what a step costs the loop: the step, its teacher pass, and the masks it waited for (in line: all
    // of mask_ms; with the lookahead: mask_wait_ms), plus the loader's wait
    const perStep = median(
      recs.map(
        (e) => Number(e.step_ms) + Number(e.wait_ms) + Number(e.teacher_ms) + Number(e.mask_wait_ms ?? e.mask_ms),
      ),
    );
    return {
      root,
      kase,
      step: col('step_ms'),
      teacher: col('teacher_ms'),
      mask: col('mask_ms'),
      wait: col('mask_wait_ms'),
      perStep,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`# evolved masking per step, ${threads} threads, ${steps} steps per run, load ${loadavg()[0].toFixed(1)}`);
console.log('| case | checkout | step_ms | teacher_ms | mask_ms | mask_wait_ms | per step (ms) |');
console.log('| --- | --- | --- | --- | --- | --- | --- |');
for (let round = 0; round < rounds; round++)
  for (const kase of chosen)
    for (const root of roots) {
      const r = once(root, kase);
      const f = (x: number) => x.toFixed(1);
      console.log(
        `| ${kase} | ${root} | ${f(r.step)} | ${f(r.teacher)} | ${f(r.mask)} | ${f(r.wait)} | ${f(r.perStep)} |`,
      );
    }
console.log(`# load at the end ${loadavg()[0].toFixed(1)}`);
