// Setup of a pretraining run: the run folder, the checkpoint to resume from, the data, the engine,
// the MEDiC graph and its state (seeded init, teacher weights, or the checkpoint's), and the plan of
// steps and schedules. Everything the later phases (loop, evaluation, finish) share is in TrainRun.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { openData, type OpenedData, type Position } from '../data/index.js';
import { Engine } from '../engine/index.js';
import type { DataReporting } from '../eval/features.js';
import { GraphState, type CompiledGraph } from '../graph/index.js';
import { LossBalancer } from './balance.js';
import { checkParamTable, loadCheckpoint, paramTable, type Checkpoint, type ParamEntry } from '../io/checkpoint.js';
import { describeClipCheckpoint, loadClipTeacher, type ClipCheckpointInfo } from '../io/teacher.js';
import type { MedicGraph } from '../models/index.js';
import { applyTeacherCheckpoint, buildTrainModel } from './build.js';
import { absolutePaths, flagOf, type PretrainConfig } from './config.js';
import { describeRun, removeRunFiles, removeStaleTemporaries, runFolderOf } from '../io/run-folder.js';
import { resolvePrecision } from './precision.js';
import type { PretrainEvents, PretrainOptions } from './events.js';
import { peakLr, type ScheduleConfig } from './schedule.js';

/** Steps and schedules of a run, from the config and the size of the training set. */
export interface RunPlan {
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
  /** Each unreadable image is reported once per run, whichever loader meets it first. */
  dataReport: Required<Pick<DataReporting, 'onWarning' | 'reported'>>;
  progress: RunProgress;
  /** Evolved masking: the last step's teacher program and clustering times (ms), for the metrics. */
  evolvedMs?: { teacher: number; mask: number };
  /** Loss balancing state (lib/train/balance.ts). */
  balancer: LossBalancer;
}

export async function setupRun(config: PretrainConfig, opts: PretrainOptions): Promise<TrainRun> {
  const applied = applyTeacherCheckpoint(config, { heads: opts.teacherHeads });
  const c = absolutePaths(applied.config);
  const teacherInfo = applied.info;
  const ev = opts.events;
  // Nothing is written to the run folder until the run is known to start (prepareRunFolder, below).
  checkRunFolder(c.out, opts);
  const ckptDir = join(c.out, 'checkpoints');
  // Resume: the caller's config should start from the checkpoint's (the CLI merges checkpoint < --config <
  // flags); a parameter table that does not fit the model is refused in initParams.
  const resumed = opts.resume ? loadCheckpoint(opts.resume) : null;
  if (resumed) ev.info(`resuming from ${resumed.path} (step ${resumed.state.step}, epoch ${resumed.state.epoch + 1})`);
  for (const n of resumed?.notes ?? []) ev.info(n);
  const data = await openTrainData(c, ev);

  const engine = Engine.create({ device: c.device, threads: c.threads });
  let state: GraphState | null = null;
  try {
    // The CUDA reason already names the GPU; the CPU one gains the threads and instruction set.
    ev.info(engine.device.kind === 'cpu' ? `${engine.device.reason}; ${engine.describe()}` : engine.device.reason);
    const { precision, reason } = resolvePrecision(c.precision, engine);
    ev.info(reason);
    const { medic, cg } = buildTrainModel(c, precision);
    state = new GraphState(engine, cg);
    describeModel(c, ev, medic, cg);
    const table = paramTable(cg);
    const progress = await initParams(c, ev, state, medic, teacherInfo, resumed, table);
    const plan = planRun(c, ev, data, resumed);
    prepareRunFolder(c, ev, !!opts.overwrite);
    const dataReport = { onWarning: (m: string) => ev.warn(m), reported: new Set<string>() };
    const balancer = new LossBalancer(c.lossBalance, c.balanceMomentum);
    if (resumed) balancer.restore(resumed.state.extra?.balance, resumed.path);
    return { c, ev, ckptDir, resumed, data, engine, medic, cg, state, table, plan, dataReport, progress, balancer };
  } catch (err) {
    state?.dispose();
    engine.dispose();
    throw err;
  }
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
  if (opts.overwrite && same) throw new Error(`--overwrite with --resume ${opts.resume}: replacing the run folder would delete the checkpoint being resumed; give the resumed run another --out`);
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
 */
function prepareRunFolder(c: PretrainConfig, ev: PretrainEvents, overwrite: boolean): void {
  if (overwrite) {
    const removed = removeRunFiles(c.out);
    if (removed.length) ev.info(`--overwrite: removed ${removed.length} file(s) of the earlier run in ${c.out}`);
  }
  const stale = removeStaleTemporaries(c.out);
  if (stale.length) ev.info(`removed ${stale.length} temporary file(s) left by an interrupted save: ${stale.join(', ')}`);
  mkdirSync(join(c.out, 'checkpoints'), { recursive: true });
  writeFileSync(join(c.out, 'config.json'), JSON.stringify(c, null, 2) + '\n');
}

async function openTrainData(c: PretrainConfig, ev: PretrainEvents): Promise<OpenedData> {
  const data = await openData(c.data);
  for (const n of data.notes) ev.info(`data: ${n}`);
  ev.info(`data: train ${data.train.length} images (${data.train.description}), val ${data.val?.length ?? 0}, ${data.classNames.length} classes`);
  return data;
}

function describeModel(c: PretrainConfig, ev: PretrainEvents, medic: MedicGraph, cg: CompiledGraph): void {
  const count = (group: 'train' | 'frozen') => cg.params.filter((p) => p.group === group).reduce((a, p) => a + p.numel, 0);
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
    ev.info(`teacher: a seeded random CLIP-architecture network (width ${c.teacherDim}, depth ${c.teacherDepth}, seed ${c.seed}): no checkpoint given (--teacher)`);
  } else {
    loadClipTeacher(state, c.teacher, medic.teacher.cfg);
    ev.info(describeClipCheckpoint(teacherInfo, c.imgSize));
    for (const n of teacherInfo.notes) ev.info(`teacher: ${n}`);
  }
  if (!resumed) return { step: 0, position: { epoch: 0, index: 0 }, extra: {}, lastCheckpoint: null };
  checkParamTable(resumed.path, resumed.state.paramTable, table);
  state.get('params').write(resumed.params);
  state.get('adam_m').write(resumed.m);
  state.get('adam_v').write(resumed.v);
  const s = resumed.state;
  return { step: s.step, position: s.dataPosition, extra: s.extra ?? {}, lastCheckpoint: resumed.path };
}

function planRun(c: PretrainConfig, ev: PretrainEvents, data: OpenedData, resumed: Checkpoint | null): RunPlan {
  const B = c.batchSize;
  const available = Math.floor(data.train.length / B);
  if (available < 1) throw new Error(`--batch-size ${B}: larger than the training set (${data.train.length} images)`);
  const stepsPerEpoch = c.stepsPerEpoch > 0 ? Math.min(c.stepsPerEpoch, available) : available;
  const totalSteps = stepsPerEpoch * c.epochs;
  if (resumed) {
    // Steps map to epochs and data positions through these two settings: changing them on resume
    // continues the run, but no longer as the uninterrupted run would have.
    const was = resumed.state.config as Partial<PretrainConfig>;
    for (const k of ['batchSize', 'stepsPerEpoch'] as const)
      if (was[k] !== undefined && was[k] !== c[k]) ev.warn(`${flagOf(k)} ${c[k]} differs from the checkpoint's ${was[k]}: the resumed run will not reproduce an uninterrupted one`);
  }
  const sched: ScheduleConfig = {
    baseLr: c.lr, lrBatchRef: c.lrBatchRef, batchSize: B, warmupSteps: Math.min(c.warmupEpochs * stepsPerEpoch, totalSteps),
    totalSteps, warmupLr: c.warmupLr, minLr: c.minLr, weightDecay: c.weightDecay, weightDecayEnd: c.weightDecayEnd,
  };
  ev.info(`schedule: ${c.epochs} epochs x ${stepsPerEpoch} steps of ${B} images; peak lr ${peakLr(sched).toExponential(3)} after ${sched.warmupSteps} warmup steps`);
  return { stepsPerEpoch, totalSteps, sched };
}
