// Our whole MEDiC step (bench/medic_step.ts: ViT-B/16 sparse student, CLIP ViT-B/16 teacher, 8 x 512
// decoder, three losses, grad norm, AdamW) on one engine: images/s = batch / median step time, where a
// step is program.run() as training calls it (inputs uploaded, every op, losses and grad norm read back).
// Then one profiled step (op by op, synchronised after each) for the per-op breakdown.
//
//   npx tsx bench/gpu_step.ts --device cuda --batch 256 --steps 10 --json step.json
//   npx tsx bench/gpu_step.ts --device cpu --config small --batch 4 --steps 2       (checks the script)
//   npx tsx bench/gpu_step.ts --device cpu --threads 2 --batch 8 --steps 3 --precision bf16|fp32
//     (the CPU step ratio; bench/pytorch_reference.py --threads 2 --batch 8 --precision bf16|fp32 beside it)
//   ... --clock cpu: process CPU time instead of wall time (a shared machine; meaningful with
//       --threads 1); --no-profile skips the profiled step.
//
// The first run of a program is op by op; the second captures a CUDA graph that later runs replay
// (MEDIC_CUDA_GRAPH=0 keeps every run op by op). Warm-up covers both, so the median is replay.
import { writeFileSync } from 'node:fs';

import { deviceSpec, Engine } from '../lib/engine/index.js';
import type { GraphState } from '../lib/graph/index.js';
import { buildStep, makeState, smallConfig, vitB16Config } from './medic_step.js';
import { clockName, clockOf } from './timing.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : def;
}

async function main(): Promise<void> {
  const device = deviceSpec(arg('device', 'cuda'));
  const batch = Number(arg('batch', '256'));
  const steps = Number(arg('steps', '10'));
  // CUDA needs two warm-up runs (op by op, then the graph capture); the CPU one.
  const warmup = Math.max(device.startsWith('cuda') ? 2 : 1, Number(arg('warmup', '3')));
  const clock = clockName(arg('clock', 'wall'));
  const now = clockOf(clock);
  const which = arg('config', 'vitb');
  const jsonPath = arg('json', '');
  const precision = arg('precision', 'fp32');
  if (precision !== 'fp32' && precision !== 'bf16')
    throw new Error(`--precision: expected fp32 or bf16, got '${precision}'`);
  const threads = Number(arg('threads', '0'));
  const cfg = { ...(which === 'small' ? smallConfig(batch) : vitB16Config(batch)), precision } as const;

  const t0 = performance.now();
  const engine = Engine.create({ device, threads });
  const step = buildStep(cfg, 1);
  const tBuild = performance.now();
  let state: GraphState;
  let init = 'native init ops on the engine';
  try {
    state = await makeState(engine, step.cg, { seed: 1 });
  } catch (err) {
    // A missing CUDA init kernel should not stop the step benchmark: initialise on the CPU and copy.
    init = `on the CPU and copied (${(err as Error).message.split('\n')[0]})`;
    const cpu = Engine.create({ device: 'cpu' });
    const cs = await makeState(cpu, step.cg, { seed: 1 });
    state = await makeState(engine, step.cg, { from: cs });
    cs.dispose();
    cpu.dispose();
  }
  const prog = state.program();
  const tCompile = performance.now();
  const info = prog.info();

  const runs: { ms: number; nativeMs: number; losses: number[]; gradNorm: number }[] = [];
  let s = 1;
  const one = async () => {
    const feed = step.feed(s++);
    const a = now();
    const out = await prog.run(feed);
    runs.push({
      ms: now() - a,
      nativeMs: out.ms,
      losses: Array.from(out.outputs.losses as Float32Array),
      gradNorm: (out.outputs.grad_norm as Float32Array)[0],
    });
  };
  for (let i = 0; i < warmup; i++) await one();
  const timedFrom = runs.length;
  for (let i = 0; i < steps; i++) await one();
  const timed = runs
    .slice(timedFrom)
    .map((r) => r.ms)
    .sort((a, b) => a - b);
  const nativeTimed = runs
    .slice(timedFrom)
    .map((r) => r.nativeMs)
    .sort((a, b) => a - b);
  const median = timed[timed.length >> 1];

  const prof = process.argv.includes('--no-profile')
    ? { profile: [] }
    : await prog.run(step.feed(s++), { profile: true });
  const profile = (prof.profile ?? []).sort((a, b) => b.ms - a.ms);
  const profTotal = profile.reduce((a, p) => a + p.ms, 0);

  const finite = runs.every((r) => r.losses.every(Number.isFinite) && Number.isFinite(r.gradNorm));
  const result = {
    tool: 'gpu_step',
    device: engine.describe(),
    precision,
    clock,
    config: which,
    batch,
    cudaGraph:
      process.env.MEDIC_CUDA_GRAPH === '0'
        ? 'off (MEDIC_CUDA_GRAPH=0)'
        : device.startsWith('cuda')
          ? 'on: run 1 op by op, run 2 captured, later runs replay'
          : 'n/a',
    init,
    tokens: { student: 1 + step.m.V, teacher: 1 + step.m.N, masked: step.m.M },
    params: { trainable: step.cg.sizes.train, frozen: step.cg.sizes.frozen },
    program: info,
    seconds: { build: (tBuild - t0) / 1e3, stateAndCompile: (tCompile - tBuild) / 1e3 },
    warmupMs: runs.slice(0, timedFrom).map((r) => r.ms),
    stepMs: runs.slice(timedFrom).map((r) => r.ms),
    stepMsMedian: median,
    nativeStepMsMedian: nativeTimed[nativeTimed.length >> 1],
    imagesPerS: batch / (median / 1e3),
    finite,
    losses: runs.map((r) => r.losses),
    gradNorm: runs.map((r) => r.gradNorm),
    memory: engine.memory(),
    profile: { totalMs: profTotal, ops: profile.map((p) => ({ ...p, pct: (100 * p.ms) / profTotal })) },
  };
  const text = JSON.stringify(result, null, 2);
  if (jsonPath) writeFileSync(jsonPath, text + '\n');
  console.log(text);
  console.error(
    `[gpu_step] ${device} ${precision} batch ${batch}: ${median.toFixed(1)} ms/step, ${result.imagesPerS.toFixed(1)} images/s; profile top: ${profile
      .slice(0, 5)
      .map((p) => `${p.op} ${p.ms.toFixed(1)} ms`)
      .join(', ')}`,
  );
  prog.dispose();
  state.dispose();
  engine.dispose();
  if (!finite) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
