// The single-GPU smoke run of the NCCL path (one rank, no MPI): a CUDA engine gets an NCCL
// communicator, a program reduces two gradient buckets and waits, first op by op, then replayed as
// a captured CUDA graph. With one rank the mean is the value itself, so the buffer must come back
// unchanged, and the engine stream must have waited for NCCL's stream.
//
//   npx tsx bench/nccl-smoke.ts        (needs the CUDA build, a GPU and libnccl.so.2 >= 2.10)
//
// Under `mpirun -np N` with one GPU per rank, every rank checks that the mean of its rank-filled
// buffer is (N - 1) / 2.
import { Engine, World, chooseDevice } from '../lib/engine/index.js';

const binding = chooseDevice('cuda').loaded.binding;
const nccl = binding.ncclProbe();
if (!nccl.found) throw new Error(`NCCL: ${nccl.reason}`);
const launched = process.env.OMPI_COMM_WORLD_SIZE !== undefined;
const world = launched ? World.init(binding, 60) : World.single();
const engine = Engine.create({ device: `cuda:${world.localRank % binding.cudaDeviceCount()}` });
try {
  engine.attachComm('nccl', 60);
  const n = 1 << 20;
  using g = engine.tensor([2 * n], 'f32', new Float32Array(2 * n).fill(world.rank));
  using program = engine.program({
    buffers: [
      { name: 'g', shape: [2 * n], kind: 'bound', tensor: g },
      { name: 'b0', shape: [n], kind: 'view', of: 'g', offset: n },
      { name: 'b1', shape: [n], kind: 'view', of: 'g', offset: 0 },
    ],
    ops: [
      { op: 'allreduce', in: [], out: ['b0'] },
      { op: 'allreduce', in: [], out: ['b1'] },
      { op: 'allreduce_wait', in: [], out: ['g'] },
    ],
  });
  const want = (world.size - 1) / 2;
  for (let step = 0; step < 3; step++) {
    g.write(new Float32Array(2 * n).fill(world.rank));
    const r = await program.run({});
    const got = g.read() as Float32Array;
    const bad = got.findIndex((v) => Math.abs(v - want) > 1e-6);
    if (bad >= 0) throw new Error(`step ${step}: g[${bad}] = ${got[bad]}, expected ${want}`);
    console.log(
      `rank ${world.rank} of ${world.size}, step ${step} (${step < 1 ? 'op by op' : 'CUDA graph'}): ok, ${r.ms.toFixed(3)} ms`,
    );
  }
  console.log(`${nccl.library} NCCL ${nccl.version}: ${JSON.stringify(engine.commStats())}`);
} finally {
  engine.dispose();
  world.finalize();
}
