// `medic-native doctor`: what this machine and this install can run, and why.
import { arch, cpus, platform, totalmem } from 'node:os';

import type { Command } from 'commander';

import { detectLaunch, type CommProbe } from '../engine/comm.js';
import { chooseDevice } from '../engine/device.js';
import {
  CUDA_PACKAGE,
  loadBinding,
  shortPath,
  type LoadedBinding,
  type Origin,
  type Variant,
} from '../engine/loader.js';
import { precisionFor } from '../train/precision.js';

export interface DoctorReport {
  node: string;
  platform: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  /** The binary `--device auto` runs on: its variant and whether it is prebuilt or built locally. */
  engine: { variant: Variant; origin: Origin; path: string } | null;
  /** When no binary loads: the loader's message (what was tried, what to run). */
  engineError?: string;
  binaries: {
    variant: string;
    path: string | null;
    origin?: Origin;
    error?: string;
    cpuFeatures?: string;
    /** The kernel of bf16 products (amx-bf16, avx512bf16 or fp32-fallback). */
    bf16Kernel?: string;
    cudaCompiled?: boolean;
  }[];
  cuda: { compiledIn: boolean; devices: number; description: string; kernels: number; ops: number };
  auto: string;
  threads: number;
  /** Data parallel: MPI (every engine binary) and NCCL (the CUDA binary), each found or not and why. */
  mpi: CommProbe;
  nccl: CommProbe;
  /** The launcher that started this process (mpirun, srun), or null. */
  launch: string | null;
}

/** `error`: the paths tried, one per line of the loader's message, joined; `message`: all of it. */
function tryLoad(variant: Variant): { loaded?: LoadedBinding; error?: string; message?: string } {
  try {
    return { loaded: loadBinding(variant) };
  } catch (err) {
    const message = (err as Error).message;
    const tried = message
      .split('\n')
      .filter((l) => l.startsWith('  '))
      .map((l) => l.trim());
    return { error: tried.join('; '), message };
  }
}

export function doctorReport(): DoctorReport {
  const cpu = tryLoad('cpu');
  const cuda = tryLoad('cuda');
  const binaries = [cpu, cuda].map((r, i) => ({
    variant: i === 0 ? 'cpu' : 'cuda',
    path: r.loaded?.path ?? null,
    origin: r.loaded?.origin,
    error: r.error,
    cpuFeatures: r.loaded?.binding.cpuFeatures(),
    bf16Kernel: r.loaded?.binding.bf16GemmKernel?.(),
    cudaCompiled: r.loaded?.binding.cudaCompiled(),
  }));
  const cb = cuda.loaded?.binding;
  let auto: string;
  let engine: DoctorReport['engine'] = null;
  try {
    const choice = chooseDevice('auto');
    auto = choice.reason;
    engine = { variant: choice.loaded.variant, origin: choice.loaded.origin, path: choice.loaded.path };
  } catch (err) {
    auto = `none: ${(err as Error).message}`;
  }
  return {
    node: process.version,
    platform: `${platform()}-${arch()}`,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    engine,
    engineError: engine ? undefined : cpu.message,
    binaries,
    cuda: {
      compiledIn: !!cb,
      devices: cb ? cb.cudaDeviceCount() : 0,
      description: cb
        ? cb.cudaDescribe(0)
        : `no CUDA build of the engine installed (the optional package ${CUDA_PACKAGE}, or a source build with nvcc)`,
      kernels: cb ? cb.cudaKernels().length : 0,
      ops: (cpu.loaded ?? cuda.loaded)?.binding.opNames().length ?? 0,
    },
    auto,
    threads: (cpu.loaded ?? cuda.loaded)?.binding.defaultThreads() ?? 0,
    ...commReport(cpu.loaded ?? cuda.loaded, cuda.loaded),
  };
}

function commReport(
  any: LoadedBinding | undefined,
  cuda: LoadedBinding | undefined,
): Pick<DoctorReport, 'mpi' | 'nccl' | 'launch'> {
  const none = (reason: string): CommProbe => ({ found: false, library: '', version: '', reason });
  const mpi = any ? any.binding.mpiProbe() : none('no engine binary could be loaded');
  const nccl = cuda
    ? cuda.binding.ncclProbe()
    : none('NCCL serves the CUDA build of the engine, which is not installed');
  const l = detectLaunch();
  return { mpi, nccl, launch: l ? `${l.source}: rank ${l.rank} of ${l.size}, local rank ${l.localRank}` : null };
}

function commLine(p: CommProbe, use: string): string {
  return p.found ? `${p.version || 'found'} (${p.library}): ${use}` : `not found: ${p.reason}`;
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('explain the device, the native binaries and the CPU features this install will use')
    .option('--json', 'print the report as JSON')
    .addHelpText('after', '\nExamples:\n  $ medic-native doctor\n  $ medic-native doctor --json')
    .action((opts: { json?: boolean }) => {
      const r = doctorReport();
      // Nothing to run on is a broken install: say so in the exit code too.
      if (!r.engine) process.exitCode = 1;
      if (opts.json) {
        console.log(JSON.stringify(r, null, 2));
        return;
      }
      console.log(`node ${r.node} on ${r.platform}, ${r.cpu} (${r.cores} cores, ${r.memoryGiB} GiB)`);
      if (r.engine)
        console.log(`engine       : ${r.engine.variant} variant, ${r.engine.origin} (${shortPath(r.engine.path)})`);
      else console.log('engine       : none loads (see below)');
      for (const b of r.binaries) {
        if (b.path)
          console.log(
            `binary ${b.variant.padEnd(4)}  : ${b.origin}, ${shortPath(b.path)}${b.cudaCompiled ? ' (CPU + CUDA backends)' : ' (CPU backend)'}`,
          );
        else console.log(`binary ${b.variant.padEnd(4)}  : not available (${b.error})`);
      }
      const features = r.binaries.find((b) => b.cpuFeatures)?.cpuFeatures ?? 'unknown';
      const bf16Kernel = r.binaries.find((b) => b.bf16Kernel)?.bf16Kernel;
      console.log(
        `cpu kernels  : ${features}; ${r.threads} threads by default${bf16Kernel ? `; bf16 products on ${bf16Kernel}` : ''}`,
      );
      console.log(
        `cuda         : ${r.cuda.compiledIn ? `${r.cuda.devices} device(s): ${r.cuda.description}` : r.cuda.description}`,
      );
      if (r.cuda.compiledIn) console.log(`cuda kernels : ${r.cuda.kernels} of ${r.cuda.ops} ops`);
      console.log(`--device auto: ${r.auto}`);
      console.log(`--precision auto on the CPU: ${precisionFor('auto', false, features).reason}`);
      if (r.cuda.compiledIn && r.cuda.devices > 0)
        console.log(`--precision auto on CUDA: ${precisionFor('auto', true, r.cuda.description).reason}`);
      console.log(
        `mpi          : ${commLine(r.mpi, 'data parallel across processes (mpirun, srun), CPU collectives')}`,
      );
      console.log(`nccl         : ${commLine(r.nccl, 'GPU collectives of data-parallel CUDA runs')}`);
      console.log(
        `launcher     : ${r.launch ?? 'none (pretrain runs as one process; under mpirun or srun --distributed auto spreads it)'}`,
      );
      if (r.engineError) console.error(r.engineError);
    });
}
