// Processes of a data-parallel run: which launcher started this process (from its environment), the
// MPI world (loaded by the engine binary at run time, see native/include/medic/comm.h), and the few
// host collectives the TypeScript side needs (evaluation features, agreement on stopping).
//
// MPI belongs to the binary that loaded it: the world must be initialised through the binding of the
// engine that will run the steps (Engine.binding), never through another variant's.

/** What the binary says about a communication library (`doctor`). */
export interface CommProbe {
  found: boolean;
  /** The file loaded, or tried last. */
  library: string;
  version: string;
  /** Why it was not found or is not usable. */
  reason: string;
}

/** The native functions of comm_wrap.cpp. */
export interface CommBinding {
  mpiProbe(): CommProbe;
  ncclProbe(): CommProbe;
  mpiInit(timeoutSec: number): { rank: number; size: number; localRank: number; localSize: number };
  mpiActive(): boolean;
  mpiFinalize(): void;
  mpiAbort(code: number): never;
  mpiSetTimeout(seconds: number): void;
  mpiBarrier(what: string): void;
  mpiBcast(data: Uint8Array | Float32Array | Int32Array | Float64Array, root: number): void;
  mpiAllgather(data: Uint8Array | Float32Array | Int32Array | Float64Array): { data: Uint8Array; sizes: number[] };
  mpiAllreduce(data: Float64Array, op: 'sum' | 'max'): void;
}

/** A process started by a launcher: rank and size as the launcher's environment states them. */
export interface Launch {
  /** The variable that gave it away, e.g. OMPI_COMM_WORLD_SIZE=2. */
  source: string;
  rank: number;
  size: number;
  localRank: number;
}

type Env = Record<string, string | undefined>;

const int = (v: string | undefined): number | null => (v !== undefined && /^\d+$/.test(v) ? Number(v) : null);

/**
 * The launcher's view of this process, or null when no launcher started it. Open MPI's mpirun
 * (OMPI_COMM_WORLD_*), PMI-based launchers (PMI_SIZE / PMI_RANK: MPICH's hydra, Intel MPI, srun
 * --mpi=pmi2) and Slurm's srun (SLURM_STEP_NUM_TASKS / SLURM_PROCID: a job step, not the batch
 * script itself, which has no step).
 */
export function detectLaunch(env: Env = process.env): Launch | null {
  const forms: [string, string, string, string[]][] = [
    ['OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_LOCAL_RANK', []],
    ['PMI_SIZE', 'PMI_RANK', 'MPI_LOCALRANKID', ['PMI_LOCAL_RANK']],
    ['SLURM_STEP_NUM_TASKS', 'SLURM_PROCID', 'SLURM_LOCALID', []],
  ];
  for (const [sizeVar, rankVar, localVar, altLocal] of forms) {
    const size = int(env[sizeVar]);
    const rank = int(env[rankVar]);
    if (size === null || rank === null) continue;
    const local = int(env[localVar]) ?? altLocal.map((v) => int(env[v])).find((v) => v !== null) ?? 0;
    return { source: `${sizeVar}=${size}`, rank, size, localRank: local };
  }
  return null;
}

/** The MPI world of this process (rank 0 alone when not distributed). */
export class World {
  private finalized = false;
  private static current: World | null = null;

  private constructor(
    private readonly binding: CommBinding | null,
    readonly rank: number,
    readonly size: number,
    readonly localRank: number,
    readonly localSize: number,
  ) {}

  /** One process, no MPI. */
  static single(): World {
    return new World(null, 0, 1, 0, 1);
  }

  /** MPI_Init through `binding` (the engine's), bounded collectives after `timeoutSec` without progress. */
  static init(binding: CommBinding, timeoutSec: number): World {
    const w = binding.mpiInit(timeoutSec);
    World.current = new World(binding, w.rank, w.size, w.localRank, w.localSize);
    return World.current;
  }

  /** The MPI world of this process, once initialised and until finalised (the CLI aborts it on errors). */
  static active(): World | null {
    return World.current && !World.current.finalized ? World.current : null;
  }

  get distributed(): boolean {
    return this.binding !== null;
  }

  get isRoot(): boolean {
    return this.rank === 0;
  }

  /** [start, end) of this rank's contiguous share of n items (the first n % size ranks take one more). */
  share(n: number): [number, number] {
    const base = Math.floor(n / this.size);
    const extra = n % this.size;
    const start = this.rank * base + Math.min(this.rank, extra);
    return [start, start + base + (this.rank < extra ? 1 : 0)];
  }

  /** Every rank's values, concatenated in rank order. */
  allgather(x: Float32Array): Float32Array;
  allgather(x: Int32Array): Int32Array;
  allgather(x: Float32Array | Int32Array): Float32Array | Int32Array {
    if (!this.binding) return x.slice();
    const { data } = this.binding.mpiAllgather(x);
    const buf = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
    return x instanceof Float32Array ? new Float32Array(buf) : new Int32Array(buf);
  }

  /** Element-wise over ranks, in place and returned. */
  allreduce(x: Float64Array, op: 'sum' | 'max'): Float64Array {
    this.binding?.mpiAllreduce(x, op);
    return x;
  }

  /** True on every rank when it is true on any (a stop request seen by one rank stops all at the same step). */
  any(flag: boolean): boolean {
    if (!this.binding) return flag;
    return this.allreduce(Float64Array.of(flag ? 1 : 0), 'max')[0] > 0;
  }

  barrier(what: string): void {
    this.binding?.mpiBarrier(what);
  }

  /** MPI_Finalize (every rank must call it before exiting, or the launcher reports the job failed). */
  finalize(): void {
    if (!this.binding || this.finalized) return;
    this.finalized = true;
    this.binding.mpiFinalize();
  }

  /** MPI_Abort: the launcher stops every rank of the job; this process exits with `code`. */
  abort(code: number): never {
    if (!this.binding) process.exit(code);
    return this.binding.mpiAbort(code);
  }
}
