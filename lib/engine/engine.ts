// The typed surface over the native engine: Engine, Tensor, Program.
//
// Native memory is released by dispose() (or `using`), never left to the garbage collector.
// Every handle throws a clear error when used after dispose().
import type { LoadedBinding } from './loader.js';
import type {
  AnyTypedArray,
  Attrs,
  CommStats,
  DType,
  MemoryStats,
  NativeBinding,
  NativeEngine,
  NativeOpSpec,
  NativeProgram,
  NativeStepResult,
  NativeTensor,
  TypedArrayOf,
} from './binding.js';
import { chooseDevice, type DeviceChoice, type DeviceSpec } from './device.js';
import type { OpName } from './ops.js';

export type { AnyTypedArray, Attrs, CommStats, DType, MemoryStats };

export interface EngineOptions {
  /** 'auto' | 'cpu' | 'cuda' | 'cuda:N' (default 'cpu'). */
  device?: DeviceSpec;
  /** CPU worker threads (default: the cores this process may use). */
  threads?: number;
}

export class Engine {
  readonly binding: NativeBinding;
  readonly device: DeviceChoice;
  private native: NativeEngine | null;

  private constructor(device: DeviceChoice, threads: number) {
    this.device = device;
    this.binding = device.loaded.binding;
    this.native = new this.binding.Engine(device.kind, device.index, threads);
  }

  static create(options: EngineOptions = {}): Engine {
    const threads = options.threads ?? 0;
    if (!Number.isInteger(threads) || threads < 0)
      throw new Error(`threads: expected a non-negative integer, got ${threads}`);
    return new Engine(chooseDevice(options.device ?? 'cpu'), threads);
  }

  get handle(): NativeEngine {
    if (!this.native) throw new Error('engine was disposed');
    return this.native;
  }
  get loaded(): LoadedBinding {
    return this.device.loaded;
  }

  describe(): string {
    return this.handle.describe();
  }
  threads(): number {
    return this.handle.threads();
  }
  memory(): MemoryStats {
    return this.handle.memory();
  }

  /** A new tensor, zero-filled, or holding a copy of `data`. */
  tensor<D extends DType = 'f32'>(shape: number[], dtype?: D, data?: TypedArrayOf<D> | ArrayLike<number>): Tensor<D> {
    const dt = (dtype ?? 'f32') as D;
    let arr: AnyTypedArray | undefined;
    if (data !== undefined) arr = isTypedArray(data) ? data : toTypedArray(dt, data);
    return new Tensor<D>(this, new this.binding.Tensor(this.handle, shape, dt, arr));
  }

  /** Run one op now (eager mode): for tests, debugging and small tools. */
  op(name: OpName, inputs: (Tensor | null)[], outputs: (Tensor | null)[], attrs: Attrs = {}): void {
    this.handle.runOp(
      name,
      inputs.map((t) => (t ? t.handle : null)),
      outputs.map((t) => (t ? t.handle : null)),
      attrs,
    );
  }

  /** Compile a static op list once; run it per step with program.run(). */
  program(spec: ProgramSpec): Program {
    const buffers = spec.buffers.map((b) => ({
      name: b.name,
      shape: b.shape,
      dtype: b.dtype ?? 'f32',
      kind: b.kind,
      of: b.of,
      offset: b.offset,
      tensor: b.tensor?.handle,
    }));
    return new Program(new this.binding.Program(this.handle, { buffers, ops: spec.ops }));
  }

  /**
   * Data parallel: the allreduce ops of this engine's programs average over the ranks of the MPI world
   * (initialised through this engine's binding: World.init(engine.binding, ...)). 'mpi' for CPU
   * engines, 'nccl' for CUDA engines (one rank alone needs no MPI).
   */
  attachComm(backend: 'mpi' | 'nccl', timeoutSec = 300): void {
    this.handle.attachComm(backend, timeoutSec);
  }

  /** The communicator's counters since attachComm, or null without one. */
  commStats(): CommStats | null {
    return this.handle.commStats();
  }

  /** Releases all native memory of this engine, its tensors and programs included. */
  dispose(): void {
    if (!this.native) return;
    this.native.dispose();
    this.native = null;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

export class Tensor<D extends DType = DType> {
  constructor(
    readonly engine: Engine,
    private native: NativeTensor,
  ) {}

  get handle(): NativeTensor {
    return this.native;
  }
  get shape(): number[] {
    return this.native.shape();
  }
  get dtype(): D {
    return this.native.dtype() as D;
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get disposed(): boolean {
    return this.native.disposed();
  }
  /** A copy of the contents on the host. */
  /** A copy of the contents; with `into` (same kind and length), copied into it and returned. */
  read(into?: TypedArrayOf<D>): TypedArrayOf<D> {
    return this.native.read(into) as TypedArrayOf<D>;
  }
  write(data: TypedArrayOf<D>): void {
    this.native.write(data);
  }
  dispose(): void {
    this.native.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

export interface BufferDecl {
  name: string;
  shape: number[];
  dtype?: DType;
  /** input: set by run(); output: returned by run(); temp: arena; bound: a Tensor; view: window into `of`. */
  kind: 'input' | 'output' | 'temp' | 'bound' | 'view';
  of?: string;
  offset?: number;
  tensor?: Tensor;
}

export interface ProgramSpec {
  buffers: BufferDecl[];
  ops: NativeOpSpec[];
}

export type StepResult = NativeStepResult;

export class Program {
  private native: NativeProgram | null;
  constructor(native: NativeProgram) {
    this.native = native;
  }
  private get handle(): NativeProgram {
    if (!this.native) throw new Error('program was disposed');
    return this.native;
  }
  /** One step: copies `inputs` in, runs every op off the JS thread, returns the output buffers. */
  run(inputs: Record<string, AnyTypedArray>, options?: { profile?: boolean }): Promise<StepResult> {
    return this.handle.run(inputs, options);
  }
  read(name: string): AnyTypedArray {
    return this.handle.read(name);
  }
  write(name: string, data: AnyTypedArray): void {
    this.handle.write(name, data);
  }
  info(): { arenaBytes: number; naiveBytes: number; ops: number; buffers: number } {
    return this.handle.info();
  }
  dispose(): void {
    if (!this.native) return;
    this.native.dispose();
    this.native = null;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

function isTypedArray(x: unknown): x is AnyTypedArray {
  return ArrayBuffer.isView(x) && !(x instanceof DataView);
}

function toTypedArray(dtype: DType, data: ArrayLike<number>): AnyTypedArray {
  switch (dtype) {
    case 'f32':
      return Float32Array.from(data);
    case 'i32':
      return Int32Array.from(data);
    case 'u8':
      return Uint8Array.from(data);
    case 'bf16':
      return Uint16Array.from(data);
  }
}
