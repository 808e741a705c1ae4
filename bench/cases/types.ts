// One benchmark case: an op (or a short op sequence) at one shape. bench/kernels.ts times run()
// after a warm-up and prints time, and GFLOP/s (flops) or GB/s (bytes moved) when given.
import type { Engine } from '../../lib/engine/index.js';
import type { Preset } from '../presets.js';

export interface BenchInstance {
  run(): void;
  dispose(): void;
}

export interface BenchCase {
  /** e.g. "gemm qkv [1904x192]x[192x576]" */
  name: string;
  family: string;
  /** Floating-point operations per run (multiply-add = 2). */
  flops?: number;
  /** Bytes read + written per run, for memory-bound ops. */
  bytes?: number;
  setup(engine: Engine): BenchInstance;
}

export type CaseList = (preset: Preset) => BenchCase[];
