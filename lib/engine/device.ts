// Device strings: 'auto' | 'cpu' | 'cuda' | 'cuda:N'.
//
// 'auto' picks CUDA when a CUDA binary is present and sees a GPU, otherwise the CPU, and says why in
// one line. An explicit 'cuda' never falls back silently: it fails with what was missing.
import { loadBinding, type LoadedBinding } from './loader.js';

/** A device as users write it: the type catches a misspelt device at compile time; parseDevice checks strings at run time. */
export type DeviceSpec = 'auto' | 'cpu' | 'cuda' | `cuda:${number}`;

export interface DeviceChoice {
  kind: 'cpu' | 'cuda';
  index: number;
  /** One line for the user: which device and why. */
  reason: string;
  loaded: LoadedBinding;
}

export function parseDevice(spec: string): { kind: 'auto' | 'cpu' | 'cuda'; index: number } {
  const m = /^(auto|cpu|cuda)(?::(\d+))?$/.exec(spec.trim());
  if (!m || (m[2] !== undefined && m[1] !== 'cuda')) {
    throw new Error(`--device: expected auto, cpu, cuda or cuda:N, got '${spec}'`);
  }
  return { kind: m[1] as 'auto' | 'cpu' | 'cuda', index: m[2] ? Number(m[2]) : 0 };
}

/** A device string from the command line or a file, checked: throws naming --device otherwise. */
export function deviceSpec(spec: string): DeviceSpec {
  parseDevice(spec);
  return spec.trim() as DeviceSpec;
}

export function chooseDevice(spec: DeviceSpec = 'auto'): DeviceChoice {
  const { kind, index } = parseDevice(spec);
  if (kind === 'cpu') {
    const loaded = loadBinding('cpu');
    return { kind: 'cpu', index: 0, reason: 'device cpu (asked for)', loaded };
  }
  let cuda: LoadedBinding | undefined;
  let why = '';
  try {
    cuda = loadBinding('cuda');
  } catch (err) {
    why = 'no CUDA build of the engine is installed';
    if (kind === 'cuda') throw new Error(`--device ${spec}: ${why}.\n${(err as Error).message}`, { cause: err });
  }
  if (cuda) {
    const n = cuda.binding.cudaDeviceCount();
    if (n > index) {
      const what = cuda.binding.cudaDescribe(index);
      return {
        kind: 'cuda',
        index,
        reason: `device cuda:${index} (${what})${kind === 'auto' ? ': a GPU is visible' : ''}`,
        loaded: cuda,
      };
    }
    why = n === 0 ? cuda.binding.cudaDescribe(0) : `only ${n} CUDA device(s) visible`;
    if (kind === 'cuda') throw new Error(`--device ${spec}: ${why}`);
  }
  const loaded = loadBinding('cpu');
  return { kind: 'cpu', index: 0, reason: `device cpu (auto: ${why})`, loaded };
}

/**
 * The compute capability in a CUDA device description (cudaDescribe, Engine.describe(): "..., compute
 * capability 9.0, ..."), or null when the text has none (the CPU, or no GPU).
 */
export function computeCapability(describe: string): { major: number; minor: number } | null {
  const m = /compute capability (\d+)\.(\d+)/.exec(describe);
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : null;
}
