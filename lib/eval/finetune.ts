// `eval finetune`: the whole student trained with labels (BEiT / MAE recipe, see protocols.ts), from
// the pretrained weights or (--from-scratch) from the seeded random init of the same network. One
// native call per step; mixup / CutMix and the soft targets are made on the host, keyed by (seed,
// step), the data order and augmentation by (seed, epoch, sample), so a resumed run reproduces the
// uninterrupted one. The result is a classifier: its checkpoint, and a timm export with the head.
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { DataLoader, resolveNormalization, type Position } from '../data/index.js';
import { Engine } from '../engine/index.js';
import { checkParamTable, loadCheckpoint, saveCheckpoint, type TrainState } from '../io/checkpoint.js';
import { exportStudentTimm, flatParamSource } from '../io/export.js';
import { studentVitConfig } from '../train/build.js';
import { normalizationOf } from '../train/config.js';
import { lrAt, peakLr, type ScheduleConfig } from '../train/schedule.js';
import { writeEvalReport } from '../report/eval.js';
import { defaultOut, keepMetricsUpTo, openBackbone, openEvalData, type BackboneOverrides } from './backbone.js';
import { copyParamsByName, evalTransform } from './features.js';
import { bind, buildClassifierEval, buildFinetuneStep, disposeAll, type ClassifierSpec } from './finetune-model.js';
import { applyMix, drawMix, mixTargets } from './mixup.js';
import {
  SMALL_DATA,
  finetuneDefaults,
  topK,
  type EpochResult,
  type EvalEvents,
  type FinetuneConfig,
  type TopK,
} from './protocols.js';

export interface FinetuneRunOptions extends BackboneOverrides {
  checkpoint: string;
  fromScratch?: boolean;
  out?: string;
  resume?: boolean;
  seed?: number;
  config?: Partial<FinetuneConfig>;
  events: EvalEvents;
  interrupted?: () => boolean;
  stopAfter?: number;
}

export interface FinetuneResult {
  status: 'done' | 'interrupted' | 'stopped';
  out: string;
  val: TopK | undefined;
  epochs: EpochResult[];
  config: FinetuneConfig;
  /** The timm export (with the head), when done. */
  timm?: string;
}

const SEED_DROP_PATH = 0x64726f70; // 'drop', as pretraining

export function resolveFinetune(c: Partial<FinetuneConfig>, nTrain: number, imgSize: number): FinetuneConfig {
  const r = {
    ...finetuneDefaults,
    ...Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined)),
  } as FinetuneConfig;
  const small = nTrain < SMALL_DATA;
  const out: FinetuneConfig = {
    ...r,
    epochs: r.epochs > 0 ? r.epochs : small ? 20 : 100,
    batchSize: Math.min(r.batchSize > 0 ? r.batchSize : small ? 128 : 1024, nTrain),
    cropScale: r.cropScale > 0 ? r.cropScale : imgSize <= 32 ? 0.5 : 0.08,
  };
  for (const [k, v] of [
    ['epochs', out.epochs],
    ['batch-size', out.batchSize],
  ] as const)
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${k}: expected a positive integer, got ${v}`);
  if (!(out.lr > 0)) throw new Error(`--lr: expected a positive number, got ${out.lr}`);
  if (!(out.layerDecay > 0 && out.layerDecay <= 1))
    throw new Error(`--layer-decay: expected a number in (0, 1], got ${out.layerDecay}`);
  if (out.pool !== 'avg' && out.pool !== 'cls') throw new Error(`--pool: expected avg or cls, got ${out.pool}`);
  return out;
}

export async function runFinetune(o: FinetuneRunOptions): Promise<FinetuneResult> {
  const ev = o.events;
  const b = openBackbone(o.checkpoint, o, !!o.fromScratch);
  const c = b.config;
  const out = defaultOut(b, 'finetune', o.out);
  const ckptDir = join(out, 'checkpoints');
  if (existsSync(join(ckptDir, 'latest.json')) && !o.resume)
    throw new Error(`${out} holds a fine-tuning run already: add --resume to continue it, or choose another --out`);
  mkdirSync(out, { recursive: true });
  const data = await openEvalData(b, 'eval finetune');
  const resumed = o.resume && existsSync(join(ckptDir, 'latest.json')) ? loadCheckpoint(ckptDir) : null;
  const saved = resumed ? (resumed.state.config as { finetune: Partial<FinetuneConfig> }).finetune : {};
  const cfg = resolveFinetune({ ...saved, ...(resumed ? {} : o.config) }, data.train.length, c.imgSize);
  const seed = o.seed ?? c.seed;
  const K = data.classNames.length;
  const B = cfg.batchSize;
  const S = c.imgSize;
  const spec: ClassifierSpec = {
    vit: { ...studentVitConfig(c), dropPath: cfg.dropPath },
    classes: K,
    pool: cfg.pool,
    headInit: cfg.headInit,
  };
  const stepsPerEpoch = Math.floor(data.train.length / B);
  const totalSteps = stepsPerEpoch * cfg.epochs;
  const sched: ScheduleConfig = {
    baseLr: cfg.lr,
    lrBatchRef: 256,
    batchSize: B,
    warmupSteps: Math.min(cfg.warmupEpochs * stepsPerEpoch, totalSteps),
    totalSteps,
    warmupLr: 0,
    minLr: cfg.minLr,
    weightDecay: cfg.weightDecay,
    weightDecayEnd: cfg.weightDecay,
  };
  ev.info(
    `fine-tuning ${b.fromScratch ? 'the random-init twin of ' : ''}${b.checkpoint} (step ${b.step}, student ${c.model}) on ${c.data}: ${data.train.length} train, ${data.val.length} val images, ${K} classes`,
  );
  ev.info(
    `recipe: ${cfg.pool === 'avg' ? 'mean-pool + fc_norm' : 'CLS'} head, AdamW, layer decay ${cfg.layerDecay}, wd ${cfg.weightDecay}, drop path ${cfg.dropPath}, ` +
      `smoothing ${cfg.smoothing}, mixup ${cfg.mixup} / cutmix ${cfg.cutmix} (switch ${cfg.switchProb}), crop scale ${cfg.cropScale}; ` +
      `${cfg.epochs} epochs x ${stepsPerEpoch} steps of ${B}, peak lr ${peakLr(sched).toExponential(3)}, ${sched.warmupSteps} warmup steps`,
  );

  const engine = Engine.create({ device: c.device, threads: c.threads });
  const evalBatch = Math.min(256, data.val.length);
  const train = bind(engine, buildFinetuneStep(spec, B, { layerDecay: cfg.layerDecay, clipGrad: cfg.clipGrad }));
  const evalP = bind(engine, buildClassifierEval(spec, evalBatch));
  const table = train.cg.params
    .filter((p) => p.group === 'train')
    .map((p) => ({ name: p.name, shape: p.shape, offset: p.offset }));
  const metricsPath = join(out, 'metrics.jsonl');
  let loader: DataLoader | null = null;
  try {
    await train.state.initNative(seed, ['train']);
    if (b.params) {
      // The backbone from the checkpoint; the head (and fc_norm) start from their init.
      copyParamsByName(b.params, b.table, train.state, 'train', {
        skip: (n) => n.startsWith('encoder.head.') || n.startsWith('encoder.fc_norm.'),
      });
    }
    let step = 0;
    let position: Position = { epoch: 0, index: 0 };
    let epochs: EpochResult[] = [];
    if (resumed) {
      checkParamTable(resumed.path, resumed.state.paramTable, table);
      train.state.get('params').write(resumed.params);
      train.state.get('adam_m').write(resumed.m);
      train.state.get('adam_v').write(resumed.v);
      step = resumed.state.step;
      position = resumed.state.dataPosition;
      epochs = (resumed.state.extra as { epochs: EpochResult[] }).epochs;
      ev.info(`resuming from ${resumed.path} (step ${step} of ${totalSteps})`);
    }
    keepMetricsUpTo(metricsPath, step);
    const save = (reason: string): void => {
      const st: TrainState = {
        step,
        epoch: position.epoch,
        dataPosition: position,
        seed,
        config: {
          finetune: cfg,
          backbone: { checkpoint: b.checkpoint, step: b.step, fromScratch: b.fromScratch },
          pretrain: c,
          classNames: data.classNames,
        },
        paramTable: table,
        extra: { epochs },
      };
      const path = saveCheckpoint(ckptDir, {
        state: st,
        params: train.state.get('params').read() as Float32Array,
        m: train.state.get('adam_m').read() as Float32Array,
        v: train.state.get('adam_v').read() as Float32Array,
      });
      ev.info(`checkpoint (${reason}): ${path}`);
    };
    const evaluate = async (epoch: number, trainLoss: number, t0: number): Promise<EpochResult> => {
      evalP.state.get('params').write(train.state.get('params').read() as Float32Array);
      const vl = new DataLoader(data.val, {
        batchSize: evalBatch,
        imageSize: S,
        train: false,
        workers: c.workers,
        padLast: true,
        transform: evalTransform(c),
        onWarning: (m) => ev.warn(m),
      });
      const logits = new Float32Array(data.val.length * K);
      const labels = new Int32Array(data.val.length);
      let n = 0;
      try {
        for await (const vb of vl) {
          const r = await evalP.program.run({ images: vb.images });
          logits.set((r.outputs.logits as Float32Array).subarray(0, vb.size * K), n * K);
          labels.set(vb.labels.subarray(0, vb.size), n);
          n += vb.size;
        }
      } finally {
        await vl.close();
      }
      return {
        protocol: 'finetune',
        epoch,
        step,
        val: { head: topK(logits, labels, K) },
        train_loss: trainLoss,
        seconds: (performance.now() - t0) / 1000,
      };
    };
    const inputNames = new Set(train.cg.inputs.map((i) => i.name));
    const mix = {
      mixup: cfg.mixup,
      cutmix: cfg.cutmix,
      prob: cfg.mixupProb,
      switchProb: cfg.switchProb,
      smoothing: cfg.smoothing,
    };
    let status: FinetuneResult['status'] = 'done';
    const t0 = performance.now();
    let stepsThisRun = 0;
    let lossSum = 0;
    let lossN = 0;
    while (step < totalSteps) {
      const epoch = Math.floor(step / stepsPerEpoch);
      if (!loader || loader.position.epoch !== position.epoch || loader.position.index !== position.index) {
        await loader?.close();
        loader = new DataLoader(data.train, {
          batchSize: B,
          imageSize: S,
          train: true,
          seed,
          workers: c.workers,
          prefetch: c.prefetch,
          start: position,
          epochs: cfg.epochs,
          transform: { scale: [cfg.cropScale, 1], hflip: c.hflip, colorJitter: 0, normalize: normalizationOf(c) },
          onWarning: (m) => ev.warn(m),
        });
      }
      const next = await loader.next();
      if (next.done) throw new Error(`fine-tune: the data loader ended at step ${step} of ${totalSteps}`);
      const batch = next.value;
      const images = Float32Array.from(batch.images);
      const draw = drawMix(mix, S, seed, step);
      applyMix(images, B, S, draw);
      const inputs: Record<string, Float32Array | Int32Array> = {
        images,
        targets: mixTargets(batch.labels, K, draw.lam, cfg.smoothing),
        hyper: Float32Array.from([lrAt(sched, step), cfg.weightDecay, step + 1]),
        seed: Int32Array.from([seed ^ SEED_DROP_PATH, step]),
      };
      for (const k of Object.keys(inputs)) if (!inputNames.has(k)) delete inputs[k];
      const r = await train.program.run(inputs);
      const loss = (r.outputs.loss as Float32Array)[0];
      const gn = (r.outputs.grad_norm as Float32Array)[0];
      if (!Number.isFinite(loss) || !Number.isFinite(gn))
        throw new Error(`fine-tune: the loss is ${loss} (grad norm ${gn}) at step ${step + 1}: lower --lr`);
      step++;
      stepsThisRun++;
      position = batch.next;
      lossSum += loss;
      lossN++;
      const m = { step, epoch, loss, grad_norm: gn, lr: inputs.hyper[0], lam: draw.lam, wait_ms: batch.waitMs };
      appendFileSync(metricsPath, JSON.stringify(m) + '\n');
      ev.metrics(m);
      const rate = (stepsThisRun * B) / Math.max((performance.now() - t0) / 1000, 1e-9);
      const inEpoch = step - epoch * stepsPerEpoch;
      ev.progress({
        phase: 'finetune',
        epoch,
        epochs: cfg.epochs,
        step: inEpoch,
        steps: stepsPerEpoch,
        loss,
        imagesPerSec: rate,
        etaSec: ((totalSteps - step) * B) / rate,
      });
      if (inEpoch === stepsPerEpoch) {
        position = { epoch: epoch + 1, index: 0 };
        const er = await evaluate(epoch + 1, lossSum / Math.max(1, lossN), t0);
        lossSum = 0;
        lossN = 0;
        epochs.push(er);
        ev.epoch(er);
        save(`epoch ${epoch + 1}`);
      }
      if (o.interrupted?.()) status = 'interrupted';
      else if (o.stopAfter && stepsThisRun >= o.stopAfter && step < totalSteps) status = 'stopped';
      if (status !== 'done') {
        if (inEpoch !== stepsPerEpoch) save(status);
        break;
      }
    }
    const result: FinetuneResult = { status, out, val: epochs[epochs.length - 1]?.val.head, epochs, config: cfg };
    if (status === 'done') {
      const timm = join(out, 'classifier-timm.safetensors');
      exportStudentTimm(timm, flatParamSource(train.state.get('params').read() as Float32Array, table), spec.vit, {
        names: table.map((p) => p.name),
        head: { classes: K, pool: cfg.pool },
        normalization: resolveNormalization(normalizationOf(c)),
        metadata: {
          source: 'medic-native eval finetune',
          step: String(step),
          classes: JSON.stringify(data.classNames),
        },
      });
      ev.info(
        `classifier exported with timm ViT names (num_classes ${K}, global_pool '${cfg.pool === 'avg' ? 'avg' : 'token'}'): ${timm}`,
      );
      result.timm = timm;
      writeEvalReport(out, {
        protocol: 'finetune',
        backbone: b,
        config: cfg,
        epochs,
        metricsPath,
        files: { checkpoint: join(ckptDir, 'latest.json'), timm },
      });
    }
    return result;
  } finally {
    await loader?.close();
    disposeAll(train, evalP);
    engine.dispose();
  }
}
