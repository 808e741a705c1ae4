// The raw shape of the native module (native/napi). Only lib/engine talks to these directly;
// everything else uses the typed wrappers in this folder.
import type { CommBinding } from './comm.js';
import type { OpName } from './ops.js';

export type DType = 'f32' | 'bf16' | 'i32' | 'u8';
export type TypedArrayOf<D extends DType> = D extends 'f32'
  ? Float32Array
  : D extends 'bf16'
    ? Uint16Array
    : D extends 'i32'
      ? Int32Array
      : Uint8Array;
export type AnyTypedArray = Float32Array | Uint16Array | Int32Array | Uint8Array;
export type Attrs = Record<string, number | boolean>;

export interface MemoryStats {
  liveTensors: number;
  livePrograms: number;
  hostBytes: number;
  deviceBytes: number;
  peakHostBytes: number;
  peakDeviceBytes: number;
}

export interface NativeEngine {
  describe(): string;
  memory(): MemoryStats;
  threads(): number;
  device(): string;
  runOp(op: OpName, inputs: (NativeTensor | null)[], outputs: (NativeTensor | null)[], attrs?: Attrs): void;
  synchronize(): void;
  /** Data parallel: the communicator of the allreduce ops (comm_wrap.cpp). */
  attachComm(backend: 'mpi' | 'nccl', timeoutSec: number): void;
  commStats(): CommStats | null;
  dispose(): void;
}

/** Host-side counters of an engine's communicator since it was attached. */
export interface CommStats {
  backend: 'mpi' | 'nccl';
  rank: number;
  size: number;
  buckets: number;
  values: number;
  /** Time inside the calls that start buckets, and waiting for them to complete. */
  startMs: number;
  waitMs: number;
}

export interface NativeTensor {
  shape(): number[];
  dtype(): DType;
  read(into?: AnyTypedArray): AnyTypedArray;
  write(data: AnyTypedArray): void;
  disposed(): boolean;
  dispose(): void;
}

export interface NativeBufferSpec {
  name: string;
  shape: number[];
  dtype: DType;
  kind: 'input' | 'output' | 'temp' | 'bound' | 'view';
  of?: string;
  offset?: number;
  tensor?: NativeTensor;
}

export interface NativeOpSpec {
  op: OpName;
  in: string[];
  out: string[];
  attrs?: Attrs;
}

export interface NativeStepResult {
  outputs: Record<string, AnyTypedArray>;
  ms: number;
  profile?: { op: OpName; calls: number; ms: number }[];
}

export interface NativeProgram {
  run(inputs: Record<string, AnyTypedArray>, options?: { profile?: boolean }): Promise<NativeStepResult>;
  read(name: string): AnyTypedArray;
  write(name: string, data: AnyTypedArray): void;
  info(): { arenaBytes: number; naiveBytes: number; ops: number; buffers: number };
  dispose(): void;
}

export interface NativeBinding extends CommBinding {
  Engine: new (device: 'cpu' | 'cuda', index: number, threads: number) => NativeEngine;
  Tensor: new (engine: NativeEngine, shape: number[], dtype: DType, data?: AnyTypedArray) => NativeTensor;
  Program: new (engine: NativeEngine, spec: { buffers: NativeBufferSpec[]; ops: NativeOpSpec[] }) => NativeProgram;
  cpuFeatures(): string;
  /** The CPU's bf16 product kernel: 'amx-bf16', 'avx512bf16' or 'fp32-fallback' (absent in binaries before it). */
  bf16GemmKernel?(): string;
  cudaCompiled(): boolean;
  cudaDeviceCount(): number;
  cudaDescribe(index: number): string;
  defaultThreads(): number;
  /** MEDIC_OP_LIST's names, in its order (test/unit/op-names.test.ts checks they are OP_NAMES). */
  opNames(): OpName[];
  /** Ops with a CUDA kernel in this binary (empty for the CPU variant). */
  cudaKernels(): OpName[];
  /**
   * Evolved masking's parts (native/include/medic/cluster.h): maps [B, N, N] (em: the attention maps
   * A; hc: their Gram matrices A^T A), K [B] parts per image, em's init [B, max(K), N] (null for hc)
   * -> labels [B, N], numbered by first appearance.
   */
  clusterParts(
    method: 'em' | 'hc',
    maps: Float32Array,
    B: number,
    N: number,
    gridW: number,
    K: Int32Array,
    opts: { rounds?: number; kappa?: number; lambda?: number; threads?: number },
    init: Float32Array | null,
  ): Int32Array;
  /**
   * clusterParts on a libuv worker (the training loop clusters the next batch while this one's step
   * runs). maps, K and init are read in place: do not write to them before the promise settles.
   */
  clusterPartsAsync(...args: Parameters<NativeBinding['clusterParts']>): Promise<Int32Array>;
  /** The JS-facing interface's version (native/napi/addon.cpp); loader.ts's ABI_VERSION is this package's. */
  abiVersion: number;
}
