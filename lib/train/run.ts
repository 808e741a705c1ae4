// The MEDiC pretraining loop (facebookresearch/mae's main + engine roles in one place):
// data -> masks -> one Program.run per step (teacher, student, decoder, fused losses, backward,
// grad norm, AdamW all native) -> metrics, checkpoints, kNN evaluation, report.
//
// Everything random is keyed by (seed, step) or (seed, epoch, sample), and checkpoints hold params,
// AdamW moments, the step and the data position, so a resumed run reproduces the uninterrupted one.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

import { DataLoader, openData, type OpenedData, type Position } from '../data/index.js';
import { Engine, type Program } from '../engine/index.js';
import { GraphState } from '../graph/index.js';
import { checkParamTable, loadCheckpoint, saveCheckpoint, type TrainState } from '../io/checkpoint.js';
import { maskInputs } from '../models/index.js';
import { lrAt, peakLr, weightDecayAt, type ScheduleConfig } from '../optim/schedule.js';
import { flagOf, normalizationOf, type PretrainConfig } from './config.js';
import { knnEvaluate } from './knn-eval.js';
import { makeMasks } from './masking.js';
import { describeClipCheckpoint, loadClipTeacher } from '../models/clip-checkpoint.js';
import { exportStudentTimm, flatParamSource } from '../io/export.js';
import { applyTeacherCheckpoint, buildTrainModel, FeatureExtractor, paramTable, studentVitConfig } from './model.js';
import { writeReport } from './report.js';

/** What the loop tells the outside world; the CLI renders it (text or JSON lines). */
export interface PretrainEvents {
  info(line: string): void;
  warn(line: string): void;
  progress(p: { epoch: number; epochs: number; step: number; steps: number; loss: number; imagesPerSec: number; etaSec: number }): void;
  metrics(m: StepMetrics): void;
  eval(e: EvalRecord): void;
}

export interface StepMetrics {
  step: number;
  epoch: number;
  loss: number;
  l_tok: number;
  l_cls: number;
  l_pix: number;
  grad_norm: number;
  lr: number;
  wd: number;
  step_ms: number;
  wait_ms: number;
  img_s: number;
}

export interface EvalRecord {
  step: number;
  epoch: number;
  which: 'random-init' | 'pretrained';
  knn: Record<number, number>;
  n_train: number;
  n_val: number;
  seconds: number;
}

export interface PretrainResult {
  status: 'done' | 'stopped' | 'interrupted' | 'diverged';
  steps: number;
  knn?: Record<number, number>;
  knnRandom?: Record<number, number>;
  outDir: string;
}

export interface PretrainOptions {
  events: PretrainEvents;
  /** Resume from a checkpoint file or run folder. */
  resume?: string;
  /** Set by the CLI on SIGINT: the loop finishes the step, checkpoints, and returns 'interrupted'. */
  interrupted?: () => boolean;
}

const SEED_STREAM_DROP_PATH = 0x64726f70; // 'drop'

export async function pretrain(config: PretrainConfig, opts: PretrainOptions): Promise<PretrainResult> {
  const { config: c, info: teacherInfo } = applyTeacherCheckpoint(config);
  const ev = opts.events;
  const outDir = c.out;
  const ckptDir = join(outDir, 'checkpoints');
  mkdirSync(ckptDir, { recursive: true });
  writeFileSync(join(outDir, 'config.json'), JSON.stringify(c, null, 2) + '\n');

  // Resume: the caller's config should start from the checkpoint's (the CLI merges checkpoint < --config <
  // flags); a parameter table that does not fit the model is refused below.
  const resumed = opts.resume ? loadCheckpoint(opts.resume) : null;
  if (resumed) ev.info(`resuming from ${resumed.path} (step ${resumed.state.step}, epoch ${resumed.state.epoch + 1})`);

  const data: OpenedData = await openData(c.data);
  for (const n of data.notes) ev.info(`data: ${n}`);
  ev.info(`data: train ${data.train.length} images (${data.train.description}), val ${data.val?.length ?? 0}, ${data.classNames.length} classes`);

  const engine = Engine.create({ device: c.device, threads: c.threads });
  // The CUDA reason already names the GPU; the CPU one gains the threads and instruction set.
  ev.info(engine.device.kind === 'cpu' ? `${engine.device.reason}; ${engine.describe()}` : engine.device.reason);
  const { medic, cg } = buildTrainModel(c);
  const state = new GraphState(engine, cg);
  const table = paramTable(cg);
  let program: Program | null = null;
  const holder: { fx: FeatureExtractor | null } = { fx: null }; // created on the first evaluation
  try {
    const nTrain = cg.params.filter((p) => p.group === 'train').reduce((a, p) => a + p.numel, 0);
    const nFrozen = cg.params.filter((p) => p.group === 'frozen').reduce((a, p) => a + p.numel, 0);
    ev.info(
      `model: student ${c.model} (${c.encoding}), ${(nTrain / 1e6).toFixed(2)}M trainable params incl. head${medic.decoder ? ' and decoder' : ''}; ` +
        `teacher ${(nFrozen / 1e6).toFixed(2)}M frozen; ${medic.N} patches, ${medic.M} masked, sequence ${1 + (c.encoding === 'sparse' ? medic.V : medic.N)}`,
    );
    ev.info(`losses: ${c.wTok} * token + ${c.wCls} * cls + ${c.wPix} * pixel (tau ${c.tau})`);

    // Parameters: checkpoint, or seeded init (student) + teacher.
    await state.initNative(c.seed);
    if (c.teacher === 'random') {
      ev.info(`teacher: a seeded random CLIP-architecture network (width ${c.teacherDim}, depth ${c.teacherDepth}, seed ${c.seed}): no checkpoint given (--teacher)`);
    } else {
      loadClipTeacher(state, c.teacher, medic.teacher.cfg);
      ev.info(describeClipCheckpoint(teacherInfo!, c.imgSize));
      for (const n of teacherInfo!.notes) ev.info(`teacher: ${n}`);
    }
    let step = 0;
    let position = { epoch: 0, index: 0 };
    let extra: Record<string, unknown> = {};
    if (resumed) {
      checkParamTable(resumed.path, resumed.state.paramTable, table);
      state.get('params').write(resumed.params);
      state.get('adam_m').write(resumed.m);
      state.get('adam_v').write(resumed.v);
      step = resumed.state.step;
      position = resumed.state.dataPosition;
      extra = resumed.state.extra ?? {};
    }

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

    // Each unreadable image is reported once per run, whichever loader meets it first.
    const dataReport = { onWarning: (m: string) => ev.warn(m), reported: new Set<string>() };

    // kNN before training (the random-init baseline), on a fresh run only.
    const numClasses = data.classNames.length;
    const canEval = !!data.val && data.val.length > 0;
    const evalBatch = Math.min(B, 256);
    const evaluate = async (which: EvalRecord['which'], epoch: number): Promise<Record<number, number> | undefined> => {
      if (!canEval) return undefined;
      const fx = (holder.fx ??= new FeatureExtractor(engine, c, evalBatch));
      fx.load(state.get('params').read() as Float32Array, table);
      const t0 = performance.now();
      const r = await knnEvaluate(fx, data.train, data.val!, c, numClasses, dataReport);
      const rec: EvalRecord = { step, epoch, which, knn: r.accuracy, n_train: r.nTrain, n_val: r.nTest, seconds: (performance.now() - t0) / 1000 };
      ev.eval(rec);
      return r.accuracy;
    };
    if (!canEval) ev.warn('no val split: kNN evaluation is skipped');
    let knnRandom = extra.knnRandom as Record<number, number> | undefined;
    if (!resumed && canEval) knnRandom = await evaluate('random-init', 0);
    extra.knnRandom = knnRandom;

    program = state.program();
    const masks = { kind: c.mask, ratio: c.maskRatio, gridH: c.imgSize / c.patchSize, gridW: c.imgSize / c.patchSize };
    const masksFor = (s: number) => maskInputs(makeMasks(masks, B, c.seed, s).mask, B, medic.N, medic.scored);
    const inputNames = cg.inputs.map((i) => i.name);
    const metricsPath = join(outDir, 'metrics.jsonl');
    // A resumed run continues metrics.jsonl from its checkpoint: records past it (logged before a crash,
    // a second Ctrl-C or a divergence) are dropped so that no step appears twice.
    keepMetricsUpTo(metricsPath, resumed ? step : 0);

    let lastCheckpoint: string | null = resumed?.path ?? null;
    const save = (reason: string): void => {
      const st: TrainState = { step, epoch: position.epoch, dataPosition: position, seed: c.seed, config: { ...c }, paramTable: table, extra };
      lastCheckpoint = saveCheckpoint(ckptDir, {
        state: st,
        params: state.get('params').read() as Float32Array,
        m: state.get('adam_m').read() as Float32Array,
        v: state.get('adam_v').read() as Float32Array,
      });
      ev.info(`checkpoint (${reason}): ${lastCheckpoint}`);
    };

    // One loader serves consecutive epochs; it is reopened only where the next batch it holds is not
    // the one the run needs: at the start, and after an epoch capped by --steps-per-epoch.
    const openLoader = (start: Position) =>
      new DataLoader(data.train, {
        batchSize: B,
        imageSize: c.imgSize,
        train: true,
        seed: c.seed,
        workers: c.workers,
        prefetch: c.prefetch,
        start,
        epochs: c.epochs,
        transform: { scale: [c.cropScale, 1], hflip: c.hflip, colorJitter: c.colorJitter, normalize: normalizationOf(c) },
        ...dataReport,
      });

    let status: PretrainResult['status'] = 'done';
    let stepsThisRun = 0;
    const runStart = performance.now();
    let knn: Record<number, number> | undefined;
    let loader: DataLoader | null = null;
    const metricsFd = openSync(metricsPath, 'a');
    try {
      let stepMasks = masksFor(step);
      while (step < totalSteps) {
        const epoch = Math.floor(step / stepsPerEpoch);
        if (position.epoch !== epoch) position = { epoch, index: 0 }; // a capped epoch ended mid-data
        if (!loader || !samePosition(loader.position, position)) {
          await loader?.close();
          loader = openLoader(position);
        }
        const next = await loader.next();
        if (next.done) throw new Error(`pretrain: the data loader ended at step ${step} of ${totalSteps}`);
        const batch = next.value;
        const t0 = performance.now();
        const hyper = Float32Array.from([lrAt(sched, step), weightDecayAt(sched, step), step + 1]);
        const seed = Int32Array.from([c.seed ^ SEED_STREAM_DROP_PATH, step]);
        const running = program.run(pick({ images: batch.images, ...stepMasks, hyper, seed }, inputNames));
        stepMasks = masksFor(step + 1); // the next step's masks, made while this step runs natively
        const r = await running;
        const losses = r.outputs.losses as Float32Array;
        const gradNorm = (r.outputs.grad_norm as Float32Array)[0];
        const stepMs = performance.now() - t0;
        if (!Number.isFinite(losses[0]) || !Number.isFinite(gradNorm)) {
          ev.warn(
            `step ${step + 1}: the loss is ${losses[0]} (grad norm ${gradNorm}): training diverged. ` +
              (lastCheckpoint ? `The last good checkpoint is kept: ${lastCheckpoint}; ` : 'No checkpoint was written before it; ') +
              `lower --lr or raise --warmup-epochs${lastCheckpoint ? ', then --resume' : ''}.`,
          );
          status = 'diverged';
          break;
        }
        step += 1;
        stepsThisRun += 1;
        position = batch.next;
        const epochSteps = step - epoch * stepsPerEpoch;
        const epochDone = epochSteps === stepsPerEpoch;
        const m: StepMetrics = {
          step, epoch, loss: losses[0], l_tok: losses[1], l_cls: losses[2], l_pix: losses[3], grad_norm: gradNorm,
          lr: hyper[0], wd: hyper[1], step_ms: stepMs, wait_ms: batch.waitMs, img_s: (B * 1000) / (stepMs + batch.waitMs),
        };
        if (c.logEvery === 0 || step % c.logEvery === 0 || epochDone) {
          writeSync(metricsFd, JSON.stringify(m) + '\n');
          ev.metrics(m);
        }
        const rate = (stepsThisRun * B) / Math.max((performance.now() - runStart) / 1000, 1e-9);
        ev.progress({ epoch, epochs: c.epochs, step: epochSteps, steps: stepsPerEpoch, loss: losses[0], imagesPerSec: rate, etaSec: ((totalSteps - step) * B) / rate });

        if (opts.interrupted?.()) status = 'interrupted';
        else if (c.stopAfter > 0 && stepsThisRun >= c.stopAfter && step < totalSteps) status = 'stopped';
        if (epochDone) {
          const done = epoch + 1;
          position = { epoch: done, index: 0 };
          // A --stop-after run still does its epoch's evaluation, so that stopping and resuming yields
          // the records of an uninterrupted run; Ctrl-C skips it. The final epoch is handled below.
          if (step < totalSteps && status !== 'interrupted') {
            if (c.evalEvery > 0 && done % c.evalEvery === 0) await evaluate('pretrained', done);
            if (status === 'done' && c.checkpointEvery > 0 && done % c.checkpointEvery === 0) save(`epoch ${done}`);
          }
        }
        if (status === 'interrupted' || status === 'stopped') {
          save(status === 'interrupted' ? 'interrupted' : `stop after ${c.stopAfter} steps`);
          break;
        }
      }
    } finally {
      closeSync(metricsFd);
      await loader?.close();
    }
    if (status === 'done') {
      knn = await evaluate('pretrained', c.epochs);
      extra.knn = knn;
      save('final');
      const exportPath = join(outDir, 'student-timm.safetensors');
      exportStudentTimm(exportPath, flatParamSource(state.get('params').read() as Float32Array, table), studentVitConfig(c), {
        names: table.map((p) => p.name),
        metadata: { source: 'medic-native pretrain', step: String(step) },
      });
      ev.info(`student exported with timm ViT names: ${exportPath}`);
    }
    writeReport(outDir, c, { knn, knnRandom });
    return { status, steps: step, knn, knnRandom, outDir };
  } finally {
    program?.dispose();
    holder.fx?.dispose();
    state.dispose();
    engine.dispose();
  }
}

function pick<T extends Record<string, unknown>>(o: T, keys: string[]): Record<string, T[keyof T]> {
  const out: Record<string, T[keyof T]> = {};
  for (const k of keys) {
    if (!(k in o)) throw new Error(`pretrain: the step needs input '${k}', which the loop does not produce`);
    out[k] = o[k as keyof T];
  }
  return out;
}

function samePosition(a: Position, b: Position): boolean {
  return a.epoch === b.epoch && a.index === b.index;
}

/** Truncates metrics.jsonl to the records of steps <= `step` (0: empties it). */
function keepMetricsUpTo(path: string, step: number): void {
  if (!existsSync(path)) return;
  const stepOf = (line: string): number => {
    try {
      return (JSON.parse(line) as StepMetrics).step;
    } catch {
      return Infinity; // a line cut short by a kill
    }
  };
  const kept = step === 0 ? [] : readFileSync(path, 'utf8').split('\n').filter((l) => l && stepOf(l) <= step);
  writeFileSync(path, kept.map((l) => l + '\n').join(''));
}
