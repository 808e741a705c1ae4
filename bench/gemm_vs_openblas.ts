// Our gemm against OpenBLAS (through numpy's BLAS library) at the shapes of bench/cases/gemm.ts, same
// shapes and thread count, in the same run:
//
//   npx tsx bench/gemm_vs_openblas.ts --threads 2 --preset tiny,base --reps 3 [--only 'qkv|fc1']
//   MEDIC_CPU_ISA=avx2 npx tsx bench/gemm_vs_openblas.ts ...   # our AVX2 path
//   ... --blas-core Haswell                                      # OpenBLAS pinned to its AVX2 kernels
//
// OpenBLAS runs in a long-lived bench/openblas_gemm.py --serve child (OPENBLAS_NUM_THREADS = --threads,
// OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed from its environment: they pin an old core type and
// slow current OpenBLAS down). Shape by shape, ours and OpenBLAS's timings alternate --reps times, so
// both sides see the same load on a shared machine; per side the best of the reps' medians is kept.
// ratio = OpenBLAS time / our time (> 1: we are faster). OpenBLAS does the plain GEMM (beta=1 for acc
// cases); our time includes the fused bias / GELU epilogue where the shape has one. Our pool's idle
// threads sleep at once; OpenBLAS's spin for ~0.1 s, so each of our timings waits 0.3 s after OpenBLAS's.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { Engine } from '../lib/engine/index.js';
import { gemmCase, gemmShapes, shapeLabel, type GemmShape } from './cases/gemm.js';
import { timeCase } from './kernels.js';
import { presets, type Preset } from './presets.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}

/** A bench/openblas_gemm.py --serve child: one JSON line out per case sent. */
function openBlasServer(threads: number, core: string) {
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
      child.stdin.write(JSON.stringify({ name: s.name, M: s.M, N: s.N, K: s.K, ta: s.ta, tb: s.tb, acc: s.acc ?? 0, min_ms: minMs }) + '\n');
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
  const engine = Engine.create({ device: 'cpu', threads });
  const blas = openBlasServer(threads, core);
  try {
    console.log(`engine: ${engine.describe()}`);
    console.log(`blas: ${JSON.stringify((await blas.info()).blas)}`);
    console.log(`threads ${threads}; per side the best of ${reps} medians, each over >= ${minMs} ms`);
    console.log(`${'preset'.padEnd(6)} ${'shape'.padEnd(58)} ${'ours ms'.padStart(9)} ${'GFLOP/s'.padStart(8)} ${'blas ms'.padStart(9)} ${'GFLOP/s'.padStart(8)} ${'ratio'.padStart(6)}`);
    let logSum = 0;
    let worst = Infinity;
    for (const { preset, s } of shapes) {
      let ours = Infinity;
      let ref = Infinity;
      for (let rep = 0; rep < reps; rep++) {
        // OpenBLAS's idle workers spin for a while after each call (THREAD_TIMEOUT, ~0.1 s) and
        // would steal our cores: let them fall asleep first.
        await sleep(300);
        ours = Math.min(ours, timeCase(engine, gemmCase(s), minMs, 3));
        ref = Math.min(ref, await blas.time(s, minMs));
      }
      const gf = (ms: number) => (2 * s.M * s.N * s.K) / (ms * 1e6);
      const ratio = ref / ours;
      logSum += Math.log(ratio);
      worst = Math.min(worst, ratio);
      console.log(
        `${preset.padEnd(6)} ${shapeLabel(s).padEnd(58)} ${ours.toFixed(3).padStart(9)} ${gf(ours).toFixed(1).padStart(8)} ${ref.toFixed(3).padStart(9)} ${gf(ref).toFixed(1).padStart(8)} ${ratio.toFixed(2).padStart(6)}`,
      );
    }
    console.log(`ratio (blas time / ours): geometric mean ${Math.exp(logSum / shapes.length).toFixed(3)}, worst ${worst.toFixed(2)}`);
  } finally {
    blas.close();
    engine.dispose();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
