// Our gemm against OpenBLAS (through numpy's BLAS library) in fp32, and our bf16 gemm against
// PyTorch's bf16 matmul (oneDNN), at the shapes of bench/cases/gemm.ts, same shapes and thread count,
// in the same run:
//
//   npx tsx bench/gemm_vs_openblas.ts --threads 2 --preset tiny,base --reps 3 [--only 'qkv|fc1']
//   ... --precision fp32|bf16|both (default both: an fp32 and a bf16 column pair per shape)
//   ... --threads 1 --clock cpu     # on a shared machine: process CPU time instead of wall time
//                                     (both sides; meaningful with 1 thread, where nobody spins)
//   MEDIC_CPU_ISA=avx2 npx tsx bench/gemm_vs_openblas.ts ...   # our AVX2 path
//   ... --blas-core Haswell                                      # OpenBLAS pinned to its AVX2 kernels
//
// OpenBLAS runs in a long-lived bench/openblas_gemm.py --serve child (OPENBLAS_NUM_THREADS = --threads,
// OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed from its environment: they pin an old core type and
// slow current OpenBLAS down). Shape by shape, ours and OpenBLAS's timings alternate --reps times, so
// both sides see the same load on a shared machine; per side the best of the reps' medians is kept.
// ratio = OpenBLAS time / our time (> 1: we are faster). OpenBLAS does the plain GEMM (beta = 0: weight
// gradients are written, not accumulated, see bench/cases/gemm.ts); our time includes the fused bias /
// GELU epilogue where the shape has one. Our pool's idle threads sleep at once; OpenBLAS's spin for
// ~0.1 s, so each of our timings waits 0.3 s after OpenBLAS's.
// bf16: bench/torch_bf16_gemm.py --serve (torch.set_num_threads(--threads)) times the plain bf16
// product (matmul into a bf16 C); ours runs the same bf16 operands with the mixed-precision step's
// outputs (bf16 C and preact, f32 C for the weight gradients, f32 bias) and its epilogue. (The step
// itself keeps W and dY in fp32 and rounds them as it packs them: bench/kernels.ts --family
// gemm-bf16-step times that form.) For shapes with a bias, GELU or an f32
// weight gradient a second PyTorch column ("same work") times what a bf16 autocast model runs for
// them: addmm with the bias, then the erf GELU into a second tensor; for dW the matmul, then the cast
// of its bf16 result into the parameter's f32 .grad (torch_bf16_gemm.py, form "same"). Its ratio
// compares like with like; the plain column's is conservative for us.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { Engine } from '../lib/engine/index.js';
import { gemmCase, gemmShapes, shapeLabel, type GemmShape } from './cases/gemm.js';
import { presets, type Preset } from './presets.js';
import { clockName, timeCase } from './timing.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}

/** A bench/openblas_gemm.py --serve child: one JSON line out per case sent. */
function openBlasServer(threads: number, core: string, clock: string) {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'openblas_gemm.py');
  const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(threads) };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  if (core) env.OPENBLAS_CORETYPE = core;
  const child = spawn('/usr/bin/python3', [script, '--serve'], { env, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, unknown>> => {
    const r = await lines.next();
    if (r.done) throw new Error('openblas_gemm.py exited early (see its stderr above)');
    return JSON.parse(r.value) as Record<string, unknown>;
  };
  return {
    info: next,
    async time(s: GemmShape, minMs: number): Promise<number> {
      child.stdin.write(
        JSON.stringify({
          name: s.name,
          M: s.M,
          N: s.N,
          K: s.K,
          ta: s.ta,
          tb: s.tb,
          min_ms: minMs,
          clock,
        }) + '\n',
      );
      return (await next()).ms as number;
    },
    close: () => child.stdin.end(),
  };
}

/** A bench/torch_bf16_gemm.py --serve child: one JSON line out per case sent. */
function torchServer(threads: number, clock: string) {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'torch_bf16_gemm.py');
  const child = spawn('/usr/bin/python3', [script, '--serve', '--threads', String(threads)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, unknown>> => {
    const r = await lines.next();
    if (r.done)
      throw new Error("torch_bf16_gemm.py exited early (see its stderr above; it needs Debian's python3-torch)");
    return JSON.parse(r.value) as Record<string, unknown>;
  };
  return {
    info: next,
    async time(s: GemmShape, minMs: number, form: 'plain' | 'same' = 'plain'): Promise<number> {
      child.stdin.write(
        JSON.stringify({
          name: s.name,
          M: s.M,
          N: s.N,
          K: s.K,
          ta: s.ta,
          tb: s.tb,
          wgrad: s.wgrad ? 1 : 0,
          bias: s.bias ? 1 : 0,
          act: s.act ?? 0,
          form,
          min_ms: minMs,
          clock,
        }) + '\n',
      );
      return (await next()).ms as number;
    },
    close: () => child.stdin.end(),
  };
}

async function main(): Promise<void> {
  const threads = Number(arg('threads', '2'));
  const reps = Number(arg('reps', '3'));
  const minMs = Number(arg('min-ms', '200'));
  const only = arg('only', '');
  const core = arg('blas-core', '');
  const presetNames = arg('preset', 'tiny,base').split(',') as Preset['name'][];
  const shapes: { preset: string; s: GemmShape }[] = [];
  for (const p of presetNames) {
    if (!presets[p]) throw new Error(`--preset: unknown preset '${p}' (tiny, base)`);
    for (const s of gemmShapes(presets[p])) if (!only || new RegExp(only).test(s.name)) shapes.push({ preset: p, s });
  }
  const precision = arg('precision', 'both');
  if (!['fp32', 'bf16', 'both'].includes(precision))
    throw new Error(`--precision: expected fp32, bf16 or both, got '${precision}'`);
  const doF32 = precision !== 'bf16',
    doBf16 = precision !== 'fp32';
  const engine = Engine.create({ device: 'cpu', threads });
  const clock = clockName(arg('clock', 'wall'));
  const blas = doF32 ? openBlasServer(threads, core, clock) : null;
  const torch = doBf16 ? torchServer(threads, clock) : null;
  try {
    console.log(`engine: ${engine.describe()}`);
    if (blas) console.log(`blas: ${JSON.stringify((await blas.info()).blas)}`);
    if (torch) console.log(`torch: ${JSON.stringify((await torch.info()).torch)}`);
    console.log(
      `threads ${threads}; per side the best of ${reps} medians, each over >= ${minMs} ms, ${clock} clock; ratio = reference time / ours`,
    );
    const head = (tag: string, ref: string) =>
      `${(tag + ' ours ms').padStart(13)} ${'GFLOP/s'.padStart(8)} ${(ref + ' ms').padStart(10)} ${'GFLOP/s'.padStart(8)} ${'ratio'.padStart(6)}`;
    const sameHead = ` ${'same work ms'.padStart(12)} ${'GFLOP/s'.padStart(8)} ${'ratio'.padStart(6)}`;
    console.log(
      `${'preset'.padEnd(6)} ${'shape'.padEnd(58)}${doF32 ? ' ' + head('fp32', 'blas') : ''}${doBf16 ? ' ' + head('bf16', 'torch') + sameHead : ''}`,
    );
    const logs = { f32: [] as number[], bf16: [] as number[], same: [] as number[], sameEpi: [] as number[] };
    for (const { preset, s } of shapes) {
      const gf = (ms: number) => (2 * s.M * s.N * s.K) / (ms * 1e6);
      const col = (ours: number, ref: number) =>
        `${ours.toFixed(3).padStart(13)} ${gf(ours).toFixed(1).padStart(8)} ${ref.toFixed(3).padStart(10)} ${gf(ref).toFixed(1).padStart(8)} ${(ref / ours).toFixed(2).padStart(6)}`;
      let line = `${preset.padEnd(6)} ${shapeLabel(s).padEnd(58)}`;
      if (blas) {
        let ours = Infinity,
          ref = Infinity;
        for (let rep = 0; rep < reps; rep++) {
          // OpenBLAS's idle workers spin for a while after each call (THREAD_TIMEOUT, ~0.1 s) and
          // would steal our cores: let them fall asleep first.
          await sleep(300);
          ours = Math.min(ours, timeCase(engine, gemmCase(s), minMs, 3, clock));
          ref = Math.min(ref, await blas.time(s, minMs));
        }
        logs.f32.push(Math.log(ref / ours));
        line += ' ' + col(ours, ref);
      }
      if (torch) {
        const epilogue = s.bias || s.act || s.wgrad;
        let ours = Infinity,
          ref = Infinity,
          same = Infinity;
        for (let rep = 0; rep < reps; rep++) {
          await sleep(300); // oneDNN's OpenMP workers spin after a call too
          ours = Math.min(ours, timeCase(engine, gemmCase(s, 'bf16'), minMs, 3, clock));
          ref = Math.min(ref, await torch.time(s, minMs));
          if (epilogue) same = Math.min(same, await torch.time(s, minMs, 'same'));
        }
        if (!epilogue) same = ref; // no epilogue: the same work is the plain product
        logs.bf16.push(Math.log(ref / ours));
        logs.same.push(Math.log(same / ours));
        if (epilogue) logs.sameEpi.push(Math.log(same / ours));
        line += ' ' + col(ours, ref);
        line += ` ${same.toFixed(3).padStart(12)} ${gf(same).toFixed(1).padStart(8)} ${(same / ours).toFixed(2).padStart(6)}`;
      }
      console.log(line);
    }
    const summary = (l: number[]) =>
      `geometric mean ${Math.exp(l.reduce((a, b) => a + b, 0) / l.length).toFixed(3)}, worst ${Math.exp(Math.min(...l)).toFixed(2)}`;
    if (blas) console.log(`fp32 ratio (OpenBLAS time / ours): ${summary(logs.f32)}`);
    if (torch) {
      console.log(`bf16 ratio (PyTorch bf16 matmul time / ours): ${summary(logs.bf16)}`);
      console.log(
        `bf16 ratio, same work (PyTorch addmm + GELU where ours has them, matmul + cast to the f32 grad for dW / ours): ${summary(logs.same)}`,
      );
      if (logs.sameEpi.length)
        console.log(
          `  of which the ${logs.sameEpi.length} shapes with a bias, GELU or an f32 weight gradient: ${summary(logs.sameEpi)}`,
        );
    }
  } finally {
    blas?.close();
    torch?.close();
    engine.dispose();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
