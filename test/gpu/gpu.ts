// Shared by test/gpu/*: is there a CUDA build of the engine and a GPU to run it on?
// Without one the GPU tests skip and say which was missing (CI has neither).
import { Engine, type OpName } from '../../lib/engine/index.js';
import { loadBinding } from '../../lib/engine/loader.js';

export type GpuStatus =
  { ok: true; describe: string; kernels: Set<OpName>; opNames: OpName[] } | { ok: false; reason: string };

// MEDIC_GPU_TESTS_ON_CPU=1 runs these files with the CPU engine standing in for CUDA: a self-test of
// the cases and tolerances on a machine without a GPU (it proves nothing about the CUDA kernels).
export const selfTest = process.env.MEDIC_GPU_TESTS_ON_CPU === '1';

export const gpu: GpuStatus = (() => {
  if (selfTest) {
    const b = loadBinding('cpu').binding;
    return {
      ok: true,
      describe: 'CPU standing in for CUDA (MEDIC_GPU_TESTS_ON_CPU=1)',
      kernels: new Set(b.opNames()),
      opNames: b.opNames(),
    };
  }
  let binding;
  try {
    binding = loadBinding('cuda').binding;
  } catch (err) {
    return { ok: false, reason: `no CUDA build of the engine (${(err as Error).message.split('\n')[0]})` };
  }
  const n = binding.cudaDeviceCount();
  if (n < 1) return { ok: false, reason: `CUDA build present but no GPU: ${binding.cudaDescribe(0)}` };
  return {
    ok: true,
    describe: binding.cudaDescribe(0),
    kernels: new Set(binding.cudaKernels()),
    opNames: binding.opNames(),
  };
})();

export const skipReason = gpu.ok ? '' : gpu.reason;

/** The CPU and CUDA engines compared by the tests (created lazily, only when a GPU is there). */
export function engines(): { cpu: Engine; cuda: Engine } {
  return { cpu: Engine.create({ device: 'cpu' }), cuda: Engine.create({ device: selfTest ? 'cpu' : 'cuda' }) };
}
