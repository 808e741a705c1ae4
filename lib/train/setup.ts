// Setup of a pretraining run: the run folder, the checkpoint to resume from, the data, the engine,
// the MEDiC graph and its state (seeded init, teacher weights, or the checkpoint's), and the plan of
// steps and schedules. Everything the later phases (loop, evaluation, finish) share is in TrainRun.
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join, resolve } from 'node:path';

import { openData, type OpenedData, type Position } from '../data/index.js';
import {
  Engine,
  World,
  chooseDevice,
  detectLaunch,
  deviceSpec,
  parseDevice,
  type DeviceSpec,
  type Launch,
} from '../engine/index.js';
import type { DataReporting } from '../eval/features.js';
import { GraphState, type CompiledGraph } from '../graph/index.js';
import { LossBalancer } from './balance.js';
import { checkParamTable, loadCheckpoint, paramTable, type Checkpoint, type ParamEntry } from '../io/checkpoint.js';
import {
  checkpointPool,
  describeClipCheckpoint,
  describeTeacherInput,
  loadClipTeacher,
  renormalizeTeacherInput,
  type ClipCheckpointInfo,
} from '../io/teacher.js';
import type { MedicGraph } from '../models/index.js';
import { applyTeacherCheckpoint, buildTrainModel, teacherInputOf } from './build.js';
import { absolutePaths, flagOf, teacherFile, type PretrainConfig } from './config.js';
import { describeRun, removeRunFiles, removeStaleTemporaries, runFolderOf } from '../io/run-folder.js';
import { distributedGraph } from './distributed.js';
import { resolvePrecision, type Precision } from './precision.js';
import type { EvolvedTimes, PretrainEvents, PretrainOptions } from './events.js';
import { peakLr, type ScheduleConfig } from './schedule.js';

/** Steps and schedules of a run, from the config and the size of the training set. */
export interface RunPlan {
  /** Images per step over all ranks (world size x per-rank batch); the schedule and the data order use it. */
  globalBatch: number;
  stepsPerEpoch: number;
  totalSteps: number;
  sched: ScheduleConfig;
}

/** Where the run stands; the loop advances it, checkpoints record it. */
export interface RunProgress {
  step: number;
  position: Position;
  /** Bookkeeping stored in checkpoints (kNN results). */
  extra: Record<string, unknown>;
  lastCheckpoint: string | null;
}

export interface TrainRun {
  c: PretrainConfig;
  ev: PretrainEvents;
  ckptDir: string;
  resumed: Checkpoint | null;
  data: OpenedData;
  engine: Engine;
  medic: MedicGraph;
  cg: CompiledGraph;
  state: GraphState;
  table: ParamEntry[];
  plan: RunPlan;
  /** The processes of the run (rank 0 alone when not distributed); rank 0 writes the run folder. */
  world: World;
  /** Each unreadable image is reported once per run, whichever loader meets it first. */
  dataReport: Required<Pick<DataReporting, 'onWarning' | 'reported'>>;
  progress: RunProgress;
  /** Evolved masking: the current step's teacher program and mask times (ms), for the metrics. */
  evolvedMs?: EvolvedTimes;
  /** Loss balancing state (lib/train/balance.ts). */
  balancer: LossBalancer;
  /** The precision the step runs in (--precision resolved). */
  precision: Precision;
  /** Set by runSteps when it returns: this invocation's steps and their wall seconds. */
  trained?: { steps: number; seconds: number };
}

export async function setupRun(config: PretrainConfig, opts: PretrainOptions): Promise<TrainRun> {
  const applied = applyTeacherCheckpoint(config, { heads: opts.teacherHeads });
  const c = absolutePaths(applied.config);
  const teacherInfo = applied.info;
  const ev = opts.events;
  const launch = c.distributed === 'auto' ? detectLaunch() : null;
  const device =
    launch && launch.size > 1 ? deviceOfRank(deviceSpec(c.device), launch.localRank) : deviceSpec(c.device);
  const world = openWorld(c, launch, device);
  // Nothing is written to the run folder until the run is known to start (prepareRunFolder, below).
  // Rank 0 alone judges the folder (it alone writes it; a failure there aborts every rank).
  if (world.isRoot) checkRunFolder(c.out, opts);
  const ckptDir = join(c.out, 'checkpoints');
  // Resume: the caller's config should start from the checkpoint's (the CLI merges checkpoint < --config <
  // flags); a parameter table that does not fit the model is refused in initParams. Every rank reads it.
  const resumed = opts.resume ? loadCheckpoint(opts.resume) : null;
  if (resumed) ev.info(`resuming from ${resumed.path} (step ${resumed.state.step}, epoch ${resumed.state.epoch + 1})`);
  for (const n of resumed?.notes ?? []) ev.info(n);
  const data = await openTrainData(c, ev);

  const engine = Engine.create({ device, threads: threadsOf(c, world) });
  let state: GraphState | null = null;
  try {
    // The CUDA reason already names the GPU; the CPU one gains the threads and instruction set.
    ev.info(engine.device.kind === 'cpu' ? `${engine.device.reason}; ${engine.describe()}` : engine.device.reason);
    const { precision, reason } = resolvePrecision(c.precision, engine);
    ev.info(reason);
    const built = buildTrainModel(c, precision);
    const { medic } = built;
    let { cg } = built;
    if (world.distributed) {
      engine.attachComm(engine.device.kind === 'cuda' ? 'nccl' : 'mpi', c.commTimeout);
      const bucketValues = Math.max(1, Math.floor((c.bucketMb * 1e6) / 4));
      cg = distributedGraph(cg, { rowOffset: world.rank * c.batchSize, bucketValues, averageOutputs: ['losses'] });
      const buckets = cg.ops.filter((o) => o.op === 'allreduce').length - 1;
      ev.info(
        `distributed: rank ${world.rank} of ${world.size} (${launch!.source}; ${world.localSize} on this node), ` +
          `${engine.device.kind === 'cuda' ? 'NCCL' : 'MPI'} all-reduce of ${cg.sizes.train} gradient values in ${buckets} bucket(s) of <= ${c.bucketMb} MB`,
      );
    }
    state = new GraphState(engine, cg);
    describeModel(c, ev, medic, cg);
    const table = paramTable(cg);
    const progress = await initParams(c, ev, state, medic, teacherInfo, resumed, table);
    const plan = planRun(c, ev, data, resumed, world);
    prepareRunFolder(c, ev, !!opts.overwrite, world);
    const dataReport = { onWarning: (m: string) => ev.warn(m), reported: new Set<string>() };
    const balancer = new LossBalancer(c.lossBalance, c.balanceMomentum);
    if (resumed) balancer.restore(resumed.state.extra?.balance, resumed.path);
    return {
      c,
      ev,
      ckptDir,
      resumed,
      data,
      engine,
      medic,
      cg,
      state,
      table,
      plan,
      world,
      dataReport,
      progress,
      balancer,
      precision,
    };
  } catch (err) {
    state?.dispose();
    engine.dispose();
    throw err;
  }
}

/**
 * The MPI world of a launched process, through the binary the engine will use (MPI belongs to the
 * binary that loaded it). One process alone (no launcher, --distributed off, or a world of one) has
 * no MPI at all.
 */
function openWorld(c: PretrainConfig, launch: Launch | null, device: DeviceSpec): World {
  if (!launch || launch.size < 2) return World.single();
  const binding = chooseDevice(device).loaded.binding;
  const probe = binding.mpiProbe();
  if (!probe.found)
    throw new Error(
      `--distributed auto: this process was started by a launcher (${launch.source}) but MPI cannot be used: ${probe.reason}. ` +
        'Install Open MPI, or pass --distributed off to run every process alone.',
    );
  const world = World.init(binding, c.commTimeout);
  if (world.size !== launch.size || world.rank !== launch.rank)
    throw new Error(
      `--distributed: the launcher says rank ${launch.rank} of ${launch.size} (${launch.source}), MPI says rank ${world.rank} of ${world.size}`,
    );
  return world;
}

/** --device auto / cuda on a launched process: the GPU of its local rank (one GPU per rank). */
function deviceOfRank(spec: DeviceSpec, localRank: number): DeviceSpec {
  const { kind } = parseDevice(spec);
  if (kind === 'cpu' || /:\d+$/.test(spec.trim())) return spec;
  const choice = chooseDevice(spec);
  if (choice.kind !== 'cuda') return spec;
  const n = choice.loaded.binding.cudaDeviceCount();
  return `cuda:${localRank % n}`;
}

/** --threads 0 with several ranks on a node that does not bind them: the node's cores shared out. */
function threadsOf(c: PretrainConfig, world: World): number {
  if (c.threads > 0 || world.localSize < 2) return c.threads;
  const visible = availableParallelism();
  return visible < cpus().length ? 0 : Math.max(1, Math.floor(visible / world.localSize)); // bound by the launcher: keep its share
}

export function disposeRun(run: TrainRun): void {
  run.state.dispose();
  run.engine.dispose();
}

/**
 * A new run does not go into a folder that holds another run (its files would mix and pruning would
 * remove the newer checkpoints): refused unless resuming that run or told to replace it.
 */
function checkRunFolder(out: string, opts: PretrainOptions): void {
  const resumeFolder = opts.resume ? runFolderOf(opts.resume) : null;
  const same = resumeFolder !== null && resolve(resumeFolder) === resolve(out);
  if (opts.overwrite && same)
    throw new Error(
      `--overwrite with --resume ${opts.resume}: replacing the run folder would delete the checkpoint being resumed; give the resumed run another --out`,
    );
  const held = describeRun(out);
  if (!held || same || opts.overwrite) return;
  throw new Error(
    `--out ${out} holds a run (${held}): pass --resume ${out} to continue it, --overwrite to replace it ` +
      `(only this program's files are removed), or choose another --out`,
  );
}

/**
 * The run is known to start: with --overwrite the earlier run's files go (only those this program
 * writes), temporaries of a save killed midway go, then the folder, checkpoints/ and config.json.
 * Rank 0 only: the other ranks of a data-parallel run write nothing there.
 */
function prepareRunFolder(c: PretrainConfig, ev: PretrainEvents, overwrite: boolean, world: World): void {
  if (!world.isRoot) return;
  if (overwrite) {
    const removed = removeRunFiles(c.out);
    if (removed.length) ev.info(`--overwrite: removed ${removed.length} file(s) of the earlier run in ${c.out}`);
  }
  const stale = removeStaleTemporaries(c.out);
  if (stale.length)
    ev.info(`removed ${stale.length} temporary file(s) left by an interrupted save: ${stale.join(', ')}`);
  mkdirSync(join(c.out, 'checkpoints'), { recursive: true });
  writeFileSync(join(c.out, 'config.json'), JSON.stringify(c, null, 2) + '\n');
}

async function openTrainData(c: PretrainConfig, ev: PretrainEvents): Promise<OpenedData> {
  const data = await openData(c.data);
  for (const n of data.notes) ev.info(`data: ${n}`);
  ev.info(
    `data: train ${data.train.length} images (${data.train.description}), val ${data.val?.length ?? 0}, ${data.classNames.length} classes`,
  );
  return data;
}

function describeModel(c: PretrainConfig, ev: PretrainEvents, medic: MedicGraph, cg: CompiledGraph): void {
  const count = (group: 'train' | 'frozen') =>
    cg.params.filter((p) => p.group === group).reduce((a, p) => a + p.numel, 0);
  ev.info(
    `model: student ${c.model} (${c.encoding}), ${(count('train') / 1e6).toFixed(2)}M trainable params incl. head${medic.decoder ? ' and decoder' : ''}; ` +
      `teacher ${(count('frozen') / 1e6).toFixed(2)}M frozen; ${medic.N} patches, ${medic.M} masked, sequence ${1 + (c.encoding === 'sparse' ? medic.V : medic.N)}`,
  );
  ev.info(`losses: ${c.wTok} * token + ${c.wCls} * cls + ${c.wPix} * pixel (tau ${c.tau})`);
}

/** Parameters: seeded init (student) + teacher, then the checkpoint's when resuming. */
async function initParams(
  c: PretrainConfig,
  ev: PretrainEvents,
  state: GraphState,
  medic: MedicGraph,
  teacherInfo: ClipCheckpointInfo | null,
  resumed: Checkpoint | null,
  table: ParamEntry[],
): Promise<RunProgress> {
  await state.initNative(c.seed);
  if (!teacherInfo) {
    ev.info(
      `teacher: a seeded random CLIP-architecture network (width ${c.teacherDim}, depth ${c.teacherDepth}, seed ${c.seed}): no checkpoint given (--teacher); its targets carry no knowledge beyond the pixels (docs/TEACHER.md)`,
    );
  } else {
    if (c.teacher === 'digits')
      ev.info(
        'teacher: the bundled digits teacher, a mini ViT trained with the labels of the bundled digits (train split only) by scripts/train-digits-teacher.mjs, standing in for CLIP (--teacher random: the seeded random teacher; docs/TEACHER.md)',
      );
    loadClipTeacher(state, teacherFile(c)!, medic.teacher.cfg);
    ev.info(describeClipCheckpoint(teacherInfo, c.imgSize));
    for (const n of teacherInfo.notes) ev.info(`teacher: ${n}`);
    ev.info(`teacher: ${describeTeacherPool(c)}`);
  }
  const input = teacherInputOf(c, teacherInfo);
  for (const n of input.notes) ev.info(`teacher: ${n}`);
  if (!input.same) renormalizeTeacherInput(state, medic.teacher.cfg.width, input.student, input.norm);
  ev.info(describeTeacherInput(input, c.normalize));
  if (!resumed) return { step: 0, position: { epoch: 0, index: 0 }, extra: {}, lastCheckpoint: null };
  checkParamTable(resumed.path, resumed.state.paramTable, table);
  state.get('params').write(resumed.params);
  state.get('adam_m').write(resumed.m);
  state.get('adam_v').write(resumed.v);
  const s = resumed.state;
  return { step: s.step, position: s.dataPosition, extra: s.extra ?? {}, lastCheckpoint: resumed.path };
}

function planRun(
  c: PretrainConfig,
  ev: PretrainEvents,
  data: OpenedData,
  resumed: Checkpoint | null,
  world: World,
): RunPlan {
  const B = c.batchSize * world.size;
  const available = Math.floor(data.train.length / B);
  const what =
    world.size > 1
      ? `the global batch ${B} (${world.size} processes x --batch-size ${c.batchSize})`
      : `--batch-size ${B}`;
  if (available < 1) throw new Error(`${what}: larger than the training set (${data.train.length} images)`);
  const stepsPerEpoch = c.stepsPerEpoch > 0 ? Math.min(c.stepsPerEpoch, available) : available;
  const totalSteps = stepsPerEpoch * c.epochs;
  if (resumed) {
    // Steps map to epochs and data positions through these two settings: changing them on resume
    // continues the run, but no longer as the uninterrupted run would have. Another world size at
    // the same global batch continues the same run.
    const was = resumed.state.config as Partial<PretrainConfig>;
    const wasGlobal = (resumed.state.extra?.globalBatch as number | undefined) ?? was.batchSize;
    if (wasGlobal !== undefined && wasGlobal !== B)
      ev.warn(
        `${what} differs from the checkpoint's ${wasGlobal}: the resumed run will not reproduce an uninterrupted one`,
      );
    if (was.stepsPerEpoch !== undefined && was.stepsPerEpoch !== c.stepsPerEpoch)
      ev.warn(
        `${flagOf('stepsPerEpoch')} ${c.stepsPerEpoch} differs from the checkpoint's ${was.stepsPerEpoch}: the resumed run will not reproduce an uninterrupted one`,
      );
  }
  const sched: ScheduleConfig = {
    baseLr: c.lr,
    lrBatchRef: c.lrBatchRef,
    batchSize: B,
    warmupSteps: Math.min(c.warmupEpochs * stepsPerEpoch, totalSteps),
    totalSteps,
    warmupLr: c.warmupLr,
    minLr: c.minLr,
    weightDecay: c.weightDecay,
    weightDecayEnd: c.weightDecayEnd,
  };
  const split = world.size > 1 ? ` (${world.size} processes x ${c.batchSize})` : '';
  ev.info(
    `schedule: ${c.epochs} epochs x ${stepsPerEpoch} steps of ${B} images${split}; peak lr ${peakLr(sched).toExponential(3)} after ${sched.warmupSteps} warmup steps`,
  );
  return { globalBatch: B, stepsPerEpoch, totalSteps, sched };
}

/** The CLS target and where its choice comes from (the config holds 'cls' or 'avg' by now). */
function describeTeacherPool(c: PretrainConfig): string {
  const what = (p: string) => (p === 'avg' ? 'the mean of its patch tokens' : 'its CLS token');
  const file = checkpointPool(teacherFile(c)!);
  const why =
    file.pool === c.teacherPool ? file.why : `set by --teacher-pool; the file would give ${file.pool}: ${file.why}`;
  return `CLS target: ${what(c.teacherPool)} (${why})`;
}
