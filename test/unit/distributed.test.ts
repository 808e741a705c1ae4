// Data parallel pieces that need no second process: the launcher's environment, the rewritten step
// graph (buckets, wait, averaged losses, drop-path offsets), and the split of data, masks and drop
// path, each checked against what one process computes for the same global batch. Runs under mpirun
// are in test/mpi/mpirun.test.ts.
import { afterAll, describe, expect, it } from 'vitest';

import { openData } from '../../lib/data/index.js';
import { DataLoader } from '../../lib/data/loader.js';
import { Engine, detectLaunch } from '../../lib/engine/index.js';
import { GraphState, type CompiledGraph } from '../../lib/graph/index.js';
import { buildTrainModel } from '../../lib/train/build.js';
import { resolveConfig } from '../../lib/train/config.js';
import { distributedGraph, gradientBuckets } from '../../lib/train/distributed.js';
import { makeMasks, stepMasks } from '../../lib/train/masking.js';

const engine = Engine.create({ device: 'cpu', threads: 1 });
afterAll(() => engine.dispose());

const config = resolveConfig(
  {},
  {
    data: 'synthetic:64:2',
    imgSize: 16,
    patchSize: 4,
    model: 'micro',
    teacherDim: 32,
    teacherDepth: 1,
    teacherHeads: 2,
    decoderDim: 16,
    decoderDepth: 1,
    decoderHeads: 2,
    batchSize: 4,
    dropPath: 0.5,
  },
);

describe('detectLaunch', () => {
  it('reads mpirun, PMI and srun environments, and nothing else', () => {
    expect(
      detectLaunch({ OMPI_COMM_WORLD_SIZE: '4', OMPI_COMM_WORLD_RANK: '3', OMPI_COMM_WORLD_LOCAL_RANK: '1' }),
    ).toEqual({
      source: 'OMPI_COMM_WORLD_SIZE=4',
      rank: 3,
      size: 4,
      localRank: 1,
    });
    expect(detectLaunch({ PMI_SIZE: '2', PMI_RANK: '1', MPI_LOCALRANKID: '0' })).toMatchObject({
      rank: 1,
      size: 2,
      localRank: 0,
    });
    expect(detectLaunch({ SLURM_STEP_NUM_TASKS: '8', SLURM_PROCID: '5', SLURM_LOCALID: '1' })).toMatchObject({
      rank: 5,
      size: 8,
      localRank: 1,
    });
    // a batch script (no job step) and a plain shell are not launches
    expect(detectLaunch({ SLURM_PROCID: '0', SLURM_NTASKS: '8' })).toBeNull();
    expect(detectLaunch({})).toBeNull();
  });
});

describe('distributedGraph', () => {
  const { cg } = buildTrainModel(config);
  const bucketValues = 5000;
  const dg = distributedGraph(cg, { rowOffset: 4, bucketValues, averageOutputs: ['losses'] });
  const gradView = new Map(cg.buffers.filter((b) => b.kind === 'view' && b.of === 'grads').map((b) => [b.name, b]));
  const writes = (op: CompiledGraph['ops'][number], lo: number, hi: number) =>
    op.out.some((n) => {
      const v = gradView.get(n);
      if (!v) return false;
      const start = v.offset!;
      const end = start + v.shape.reduce((a, d) => a * d, 1);
      return start < hi && lo < end;
    });

  it('reduces every gradient bucket once, after the last op that writes it, and waits before grad_norm', () => {
    const nBuckets = Math.ceil(cg.sizes.train / bucketValues);
    expect(nBuckets).toBeGreaterThan(3);
    const wait = dg.ops.findIndex((o) => o.op === 'allreduce_wait');
    expect(dg.ops.filter((o) => o.op === 'allreduce_wait')).toHaveLength(1);
    expect(wait).toBeLessThan(dg.ops.findIndex((o) => o.op === 'grad_norm'));
    for (let i = 0; i < nBuckets; i++) {
      const lo = i * bucketValues;
      const hi = Math.min(cg.sizes.train, lo + bucketValues);
      const at = dg.ops.findIndex((o) => o.op === 'allreduce' && o.out[0] === `grads.bucket${i}`);
      expect(at, `bucket ${i}`).toBeGreaterThan(0);
      expect(at).toBeLessThan(wait);
      expect(dg.buffers.find((b) => b.name === `grads.bucket${i}`)).toMatchObject({
        kind: 'view',
        of: 'grads',
        offset: lo,
        shape: [hi - lo],
      });
      // the op just before (skipping other inserted reductions) writes into the bucket; none after it does
      let k = at - 1;
      while (dg.ops[k].op === 'allreduce') k--;
      expect(writes(dg.ops[k], lo, hi), `bucket ${i}: op before its reduction`).toBe(true);
      expect(
        dg.ops.slice(at + 1).some((o) => writes(o, lo, hi)),
        `bucket ${i}: written after its reduction`,
      ).toBe(false);
    }
    // buckets of the decoder and head (the end of the flat buffer) are finished first in the backward pass
    const order = dg.ops
      .filter((o) => o.op === 'allreduce' && o.out[0].startsWith('grads.'))
      .map((o) => Number(o.out[0].slice('grads.bucket'.length)));
    expect(order[0]).toBeGreaterThan(order[order.length - 1]);
    // the losses are averaged too, and every drop path draws for the rank's rows of the global batch
    expect(dg.ops.some((o) => o.op === 'allreduce' && o.out[0] === 'losses')).toBe(true);
    const dropPath = dg.ops.filter((o) => o.op === 'drop_path_mask');
    expect(dropPath.length).toBeGreaterThan(0);
    expect(dropPath.every((o) => o.attrs.row0 === 4)).toBe(true);
    expect(gradientBuckets(cg, cg.sizes.train).length).toBe(1);
  });

  it('runs alone (no communicator) with the outputs of the plain step', async () => {
    const run = async (g: CompiledGraph) => {
      using state = new GraphState(engine, g);
      await state.initNative(7);
      using program = state.program();
      const B = config.batchSize;
      const images = Float32Array.from({ length: B * 3 * 16 * 16 }, (_, i) => Math.sin(i * 0.37));
      const masks = stepMasks(
        { kind: 'block', ratio: config.maskRatio, gridH: 4, gridW: 4 },
        buildTrainModel(config).medic,
        B,
        1,
        0,
      );
      const names = new Set(g.inputs.map((i) => i.name));
      const inputs: Record<string, Float32Array | Int32Array | Uint8Array> = {
        images,
        hyper: Float32Array.of(1e-3, 0.05, 1),
        seed: Int32Array.of(11, 0),
      };
      for (const [k, v] of Object.entries(masks)) if (names.has(k)) inputs[k] = v;
      const r = await program.run(inputs);
      return { losses: r.outputs.losses, norm: r.outputs.grad_norm, params: state.get('params').read() };
    };
    const plain = await run(cg);
    const alone = await run({
      ...dg,
      ops: dg.ops.map((o) => (o.op === 'drop_path_mask' ? { ...o, attrs: { ...o.attrs, row0: 0 } } : o)),
    });
    expect(alone).toEqual(plain);
  });

  it('is refused natively when an allreduce has no allreduce_wait after it', () => {
    using g = engine.tensor([8]);
    expect(() =>
      engine.program({
        buffers: [{ name: 'g', shape: [8], kind: 'bound', tensor: g }],
        ops: [{ op: 'allreduce', in: [], out: ['g'] }],
      }),
    ).toThrow(/op 0 \(allreduce\) has no allreduce_wait after it/);
  });
});

describe('the global batch split over ranks', () => {
  it('drop_path_mask with row0 draws what the whole batch draws for those rows', () => {
    using seed = engine.tensor([2], 'i32', Int32Array.of(12345, 7));
    using all = engine.tensor([8]);
    using lo = engine.tensor([4]);
    using hi = engine.tensor([4]);
    engine.op('drop_path_mask', [seed], [all], { p: 0.5, stream: 3 });
    engine.op('drop_path_mask', [seed], [lo], { p: 0.5, stream: 3, row0: 0 });
    engine.op('drop_path_mask', [seed], [hi], { p: 0.5, stream: 3, row0: 4 });
    const whole = all.read() as Float32Array;
    expect(new Set(whole)).toEqual(new Set([0, 2])); // p = 0.5 over 8 rows: both outcomes occur
    expect([...(lo.read() as Float32Array), ...(hi.read() as Float32Array)]).toEqual([...whole]);
  });

  it('masks of rows row0.. are those of the whole batch', () => {
    const c = { kind: 'block' as const, ratio: 0.4, gridH: 4, gridW: 4 };
    const whole = makeMasks(c, 8, 5, 3).mask;
    expect([...makeMasks(c, 4, 5, 3, 0).mask, ...makeMasks(c, 4, 5, 3, 4).mask]).toEqual([...whole]);
  });

  it('sharded loaders decode, between them, exactly the batches of one loader', async () => {
    const data = await openData('synthetic:64:2');
    const opts = { batchSize: 8, imageSize: 16, train: true, seed: 4, workers: 0, epochs: 2 } as const;
    const take = async (l: DataLoader, n: number) => {
      const out: { indices: number[]; images: Float32Array; next: unknown }[] = [];
      for (let i = 0; i < n; i++) {
        const b = (await l.next()).value!;
        out.push({ indices: [...b.indices], images: b.images.slice(), next: b.next });
      }
      await l.close();
      return out;
    };
    const n = 9; // past the end of an epoch (57 train images: 7 batches of 8)
    const one = await take(new DataLoader(data.train, opts), n);
    const r0 = await take(new DataLoader(data.train, { ...opts, shard: { rank: 0, size: 2 } }), n);
    const r1 = await take(new DataLoader(data.train, { ...opts, shard: { rank: 1, size: 2 } }), n);
    for (let i = 0; i < n; i++) {
      expect([...r0[i].indices, ...r1[i].indices]).toEqual(one[i].indices);
      expect([...r0[i].images, ...r1[i].images]).toEqual([...one[i].images]);
      expect(r0[i].next).toEqual(one[i].next);
    }
    expect(() => new DataLoader(data.train, { ...opts, shard: { rank: 0, size: 3 } })).toThrow(
      /batch of 8 images does not split evenly over 3 ranks/,
    );
  });
});
