// `medic-native doctor`: what this machine and this install can run, and why.
import { arch, cpus, platform, totalmem } from 'node:os';

import type { Command } from 'commander';

import { detectLaunch, type CommProbe } from '../engine/comm.js';
import { chooseDevice } from '../engine/device.js';
import { candidatePaths, loadBinding, type LoadedBinding } from '../engine/loader.js';

export interface DoctorReport {
  node: string;
  platform: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  binaries: { variant: string; path: string | null; error?: string; cpuFeatures?: string; cudaCompiled?: boolean }[];
  cuda: { compiledIn: boolean; devices: number; description: string; kernels: number; ops: number };
  auto: string;
  threads: number;
  /** Data parallel: MPI (every engine binary) and NCCL (the CUDA binary), each found or not and why. */
  mpi: CommProbe;
  nccl: CommProbe;
  /** The launcher that started this process (mpirun, srun), or null. */
  launch: string | null;
}

function tryLoad(variant: 'cpu' | 'cuda'): { loaded?: LoadedBinding; error?: string } {
  try {
    return { loaded: loadBinding(variant) };
  } catch (err) {
    return { error: (err as Error).message.split('\n').slice(1).map((l) => l.trim()).filter(Boolean).join('; ') };
  }
}

export function doctorReport(): DoctorReport {
  const cpu = tryLoad('cpu');
  const cuda = tryLoad('cuda');
  const binaries = [cpu, cuda].map((r, i) => ({
    variant: i === 0 ? 'cpu' : 'cuda',
    path: r.loaded?.path ?? null,
    error: r.error,
    cpuFeatures: r.loaded?.binding.cpuFeatures(),
    cudaCompiled: r.loaded?.binding.cudaCompiled(),
  }));
  const cb = cuda.loaded?.binding;
  let auto: string;
  try {
    auto = chooseDevice('auto').reason;
  } catch (err) {
    auto = `none: ${(err as Error).message}`;
  }
  return {
    node: process.version,
    platform: `${platform()}-${arch()}`,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    binaries,
    cuda: {
      compiledIn: !!cb,
      devices: cb ? cb.cudaDeviceCount() : 0,
      description: cb ? cb.cudaDescribe(0) : 'no CUDA build of the engine (nvcc was not found when it was built)',
      kernels: cb ? cb.cudaKernels().length : 0,
      ops: (cpu.loaded ?? cuda.loaded)?.binding.opNames().length ?? 0,
    },
    auto,
    threads: (cpu.loaded ?? cuda.loaded)?.binding.defaultThreads() ?? 0,
    ...commReport(cpu.loaded ?? cuda.loaded, cuda.loaded),
  };
}

function commReport(any: LoadedBinding | undefined, cuda: LoadedBinding | undefined): Pick<DoctorReport, 'mpi' | 'nccl' | 'launch'> {
  const none = (reason: string): CommProbe => ({ found: false, library: '', version: '', reason });
  const mpi = any ? any.binding.mpiProbe() : none('no engine binary could be loaded');
  const nccl = cuda ? cuda.binding.ncclProbe() : none('NCCL serves the CUDA build of the engine, which is not installed');
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
      if (opts.json) {
        console.log(JSON.stringify(r, null, 2));
        return;
      }
      console.log(`node ${r.node} on ${r.platform}, ${r.cpu} (${r.cores} cores, ${r.memoryGiB} GiB)`);
      for (const b of r.binaries) {
        if (b.path) console.log(`binary ${b.variant.padEnd(4)}: ${b.path}${b.cudaCompiled ? ' (CPU + CUDA backends)' : ' (CPU backend)'}`);
        else console.log(`binary ${b.variant.padEnd(4)}: not available (${b.error || candidatePaths(b.variant as 'cpu' | 'cuda').join(', ')})`);
      }
      const features = r.binaries.find((b) => b.cpuFeatures)?.cpuFeatures ?? 'unknown';
      console.log(`cpu kernels  : ${features}; ${r.threads} threads by default`);
      console.log(`cuda         : ${r.cuda.compiledIn ? `${r.cuda.devices} device(s): ${r.cuda.description}` : r.cuda.description}`);
      if (r.cuda.compiledIn) console.log(`cuda kernels : ${r.cuda.kernels} of ${r.cuda.ops} ops`);
      console.log(`--device auto: ${r.auto}`);
      console.log(`mpi          : ${commLine(r.mpi, 'data parallel across processes (mpirun, srun), CPU collectives')}`);
      console.log(`nccl         : ${commLine(r.nccl, 'GPU collectives of data-parallel CUDA runs')}`);
      console.log(`launcher     : ${r.launch ?? 'none (pretrain runs as one process; under mpirun or srun --distributed auto spreads it)'}`);
    });
}
