// `eval linear`: the linear probe (MAE protocol, see protocols.ts). The backbone runs forward only,
// once per image: train and val features are extracted with the eval transform and cached in the
// output folder (features.safetensors), then one linear classifier per probed block trains on them.
// Checkpoints after every epoch (and on Ctrl-C), so a run resumes where it stopped.
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { Engine } from '../engine/index.js';
import { SafetensorsFile, writeSafetensors } from '../io/safetensors.js';
import { loadCheckpoint, saveCheckpoint, type TrainState } from '../io/checkpoint.js';
import { lrAt, peakLr, type ScheduleConfig } from '../train/schedule.js';
import { Rng, permutation } from '../util/rng.js';
import {
  defaultOut,
  keepMetricsUpTo,
  loadInto,
  openBackbone,
  openEvalData,
  type Backbone,
  type BackboneOverrides,
} from './backbone.js';
import { FeatureExtractor, embed, probedLayers, type Embedded, type FeatureSpec } from './features.js';
import { studentPresets } from '../models/index.js';
import { knnBatch } from './knn.js';
import { LinearProbeModel } from './linear-model.js';
import {
  SMALL_DATA,
  linearDefaults,
  topK,
  type EpochResult,
  type EvalEvents,
  type LinearConfig,
  type TopK,
} from './protocols.js';
import { writeEvalReport } from '../report/eval.js';

export interface LinearRunOptions extends BackboneOverrides {
  checkpoint: string;
  fromScratch?: boolean;
  out?: string;
  resume?: boolean;
  seed?: number;
  config?: Partial<LinearConfig>;
  events: EvalEvents;
  interrupted?: () => boolean;
  /** Stop with a checkpoint after this many steps of this invocation (tests). */
  stopAfter?: number;
}

export interface LinearResult {
  status: 'done' | 'interrupted' | 'stopped';
  out: string;
  /** Final val accuracy per probed block (1-based block -> top-1 / top-5). */
  val: Record<string, TopK>;
  /** The best block by top-1. */
  best?: { block: number } & TopK;
  epochs: EpochResult[];
  config: LinearConfig;
}

const PROBE_KEY = 0x70726f62; // 'prob': the probe's shuffling stream
const CACHE_FORMAT = 'medic-native/features@1';

interface Cached {
  train: Embedded;
  val: Embedded;
}

/** Resolved config: 'auto' values made concrete for this training set size. */
export function resolveLinear(
  c: Partial<LinearConfig>,
  nTrain: number,
  imgSize = 224,
): LinearConfig & { optimizer: 'lars' | 'sgd' } {
  const r = {
    ...linearDefaults,
    ...Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined)),
  } as LinearConfig;
  const small = nTrain < SMALL_DATA;
  const optimizer = r.optimizer === 'auto' ? (small ? 'sgd' : 'lars') : r.optimizer;
  const batchSize = r.batchSize > 0 ? r.batchSize : small ? 256 : 16384;
  const featureBatch = r.featureBatch > 0 ? r.featureBatch : knnBatch(imgSize, nTrain);
  for (const [k, v] of [
    ['epochs', r.epochs],
    ['batchSize', batchSize],
    ['featureBatch', featureBatch],
  ] as const)
    if (!Number.isInteger(v) || v < 1)
      throw new Error(`--${k.replace(/[A-Z]/g, (m) => '-' + m.toLowerCase())}: expected a positive integer, got ${v}`);
  if (!(r.lr > 0)) throw new Error(`--lr: expected a positive number, got ${r.lr}`);
  return { ...r, optimizer, featureBatch, batchSize: Math.min(batchSize, nTrain) };
}

/** Features of train and val, from the cache in `out` when it was made for the same backbone and spec. */
async function features(
  b: Backbone,
  spec: FeatureSpec,
  data: Awaited<ReturnType<typeof openEvalData>>,
  out: string,
  cfg: LinearConfig,
  ev: EvalEvents,
): Promise<Cached> {
  const path = join(out, 'features.safetensors');
  const key = JSON.stringify({
    checkpoint: b.checkpoint,
    step: b.step,
    scratch: b.fromScratch,
    spec,
    data: b.config.data,
    img: b.config.imgSize,
    n: [data.train.length, data.val.length],
  });
  if (existsSync(path)) {
    const f = new SafetensorsFile(path);
    try {
      if (f.metadata.format === CACHE_FORMAT && f.metadata.key === key) {
        ev.info(`features: read from ${path}`);
        const get = (s: 'train' | 'val'): Embedded => ({
          features: f.readF32(`${s}.features`),
          labels: f.read(`${s}.labels`) as Int32Array,
        });
        return { train: get('train'), val: get('val') };
      }
      ev.info(`features: ${path} was made for another backbone or setting; extracting again`);
    } finally {
      f.close();
    }
  }
  const engine = Engine.create({ device: b.config.device, threads: b.config.threads });
  const fx = new FeatureExtractor(engine, b.config, cfg.featureBatch, spec);
  try {
    await loadInto(fx, b);
    const t0 = performance.now();
    const total = data.train.length + data.val.length;
    const progress = (base: number) => (done: number) => {
      const secs = (performance.now() - t0) / 1000;
      const rate = (base + done) / Math.max(secs, 1e-9);
      ev.progress({
        phase: 'features',
        epoch: 0,
        epochs: 1,
        step: base + done,
        steps: total,
        loss: NaN,
        imagesPerSec: rate,
        etaSec: (total - base - done) / rate,
      });
    };
    const train = await embed(fx, data.train, b.config, { onWarning: (m) => ev.warn(m), onEmbedded: progress(0) });
    const val = await embed(fx, data.val, b.config, {
      onWarning: (m) => ev.warn(m),
      onEmbedded: progress(data.train.length),
    });
    ev.info(
      `features: ${total} images in ${((performance.now() - t0) / 1000).toFixed(1)} s (${fx.dim} values each), cached in ${path}`,
    );
    writeSafetensors(
      path,
      {
        'train.features': { dtype: 'F32', shape: [train.labels.length, fx.dim], data: train.features },
        'train.labels': { dtype: 'I32', shape: [train.labels.length], data: train.labels },
        'val.features': { dtype: 'F32', shape: [val.labels.length, fx.dim], data: val.features },
        'val.labels': { dtype: 'I32', shape: [val.labels.length], data: val.labels },
      },
      { format: CACHE_FORMAT, key },
    );
    return { train, val };
  } finally {
    fx.dispose();
    engine.dispose();
  }
}

/** Per-image features [N, L * F] -> layer-major [L][N * F]. */
function byLayer(e: Embedded, L: number): Float32Array[] {
  const N = e.labels.length;
  const F = e.features.length / N / L;
  return Array.from({ length: L }, (_, l) => {
    const out = new Float32Array(N * F);
    for (let i = 0; i < N; i++) out.set(e.features.subarray((i * L + l) * F, (i * L + l + 1) * F), i * F);
    return out;
  });
}

export async function runLinearProbe(o: LinearRunOptions): Promise<LinearResult> {
  const ev = o.events;
  const b = openBackbone(o.checkpoint, o, !!o.fromScratch);
  const out = defaultOut(b, 'linear', o.out);
  const ckptDir = join(out, 'checkpoints');
  if (existsSync(join(ckptDir, 'latest.json')) && !o.resume)
    throw new Error(`${out} holds a linear probe run already: add --resume to continue it, or choose another --out`);
  mkdirSync(out, { recursive: true });
  const data = await openEvalData(b, 'eval linear');
  const resumed = o.resume && existsSync(join(ckptDir, 'latest.json')) ? loadCheckpoint(ckptDir) : null;
  const saved = resumed ? (resumed.state.config as { linear: Partial<LinearConfig> }).linear : {};
  const cfg = resolveLinear({ ...saved, ...(resumed ? {} : o.config) }, data.train.length, b.config.imgSize);
  const seed = o.seed ?? b.config.seed;
  const spec: FeatureSpec = { pool: cfg.pool, layers: cfg.layers };
  const blocks = probedLayers(spec, studentPresets[b.config.model].depth);
  ev.info(
    `linear probe of ${b.fromScratch ? 'the random-init twin of ' : ''}${b.checkpoint} (step ${b.step}, student ${b.config.model}) on ${b.config.data}: ${data.train.length} train, ${data.val.length} val images, ${data.classNames.length} classes`,
  );

  const cached = await features(b, spec, data, out, cfg, ev);
  const L = blocks.length;
  const N = cached.train.labels.length;
  const F = cached.train.features.length / N / L;
  const K = data.classNames.length;
  const trainX = byLayer(cached.train, L);
  const valX = byLayer(cached.val, L);
  const B = cfg.batchSize;
  const stepsPerEpoch = Math.floor(N / B);
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
    `probe: ${L} block(s) x ${F} features (${cfg.pool}), BatchNorm (no affine) + linear, ${cfg.optimizer.toUpperCase()} momentum ${cfg.momentum}${cfg.optimizer === 'lars' ? ` trust ${cfg.trust}` : ''}, ${cfg.epochs} epochs x ${stepsPerEpoch} steps of ${B}, peak lr ${peakLr(sched).toExponential(3)}, ${sched.warmupSteps} warmup steps`,
  );

  const engine = Engine.create({ device: b.config.device, threads: b.config.threads });
  const evalBatch = Math.min(1024, cached.val.labels.length);
  const model = new LinearProbeModel(engine, { layers: L, dim: F, classes: K, batch: B }, evalBatch, {
    kind: cfg.optimizer,
    momentum: cfg.momentum,
    trust: cfg.trust,
  });
  const metricsPath = join(out, 'metrics.jsonl');
  try {
    await model.init(seed);
    let step = 0;
    let epochs: EpochResult[] = [];
    if (resumed) {
      const extra = resumed.state.extra as { frozen: number[]; epochs: EpochResult[] };
      model.restore({ params: resumed.params, mu: resumed.m, frozen: Float32Array.from(extra.frozen) });
      step = resumed.state.step;
      epochs = extra.epochs;
      ev.info(`resuming from ${resumed.path} (step ${step} of ${totalSteps})`);
    }
    keepMetricsUpTo(metricsPath, step);
    const save = (reason: string): void => {
      const snap = model.snapshot();
      const st: TrainState = {
        step,
        epoch: Math.floor(step / stepsPerEpoch),
        dataPosition: { epoch: Math.floor(step / stepsPerEpoch), index: (step % stepsPerEpoch) * B },
        seed,
        config: { linear: cfg, backbone: { checkpoint: b.checkpoint, step: b.step, fromScratch: b.fromScratch } },
        paramTable: model.train.cg.params
          .filter((p) => p.group === 'train')
          .map((p) => ({ name: p.name, shape: p.shape, offset: p.offset })),
        extra: { frozen: Array.from(snap.frozen), epochs },
      };
      const path = saveCheckpoint(ckptDir, {
        state: st,
        params: snap.params,
        m: snap.mu,
        v: new Float32Array(snap.params.length),
      });
      ev.info(`checkpoint (${reason}): ${path}`);
    };
    const evaluate = async (epoch: number, trainLoss: number, t0: number): Promise<EpochResult> => {
      model.syncEval();
      const Nv = cached.val.labels.length;
      const logits = Array.from({ length: L }, () => new Float32Array(Nv * K));
      const xb = new Float32Array(L * evalBatch * F);
      for (let s = 0; s < Nv; s += evalBatch) {
        const n = Math.min(evalBatch, Nv - s);
        xb.fill(0);
        for (let l = 0; l < L; l++) xb.set(valX[l].subarray(s * F, (s + n) * F), l * evalBatch * F);
        const r = await model.logits(xb);
        for (let l = 0; l < L; l++) logits[l].set(r[l].subarray(0, n * K), s * K);
      }
      const val: Record<string, TopK> = {};
      blocks.forEach((blk, l) => (val[String(blk)] = topK(logits[l], cached.val.labels, K)));
      return { protocol: 'linear', epoch, step, val, train_loss: trainLoss, seconds: (performance.now() - t0) / 1000 };
    };

    let status: LinearResult['status'] = 'done';
    const t0 = performance.now();
    const xb = new Float32Array(L * B * F);
    const yb = new Int32Array(B);
    let stepsThisRun = 0;
    while (step < totalSteps) {
      const epoch = Math.floor(step / stepsPerEpoch);
      const perm = permutation(N, new Rng(seed, PROBE_KEY, epoch));
      let lossSum = 0;
      let lossN = 0;
      for (let i = step % stepsPerEpoch; i < stepsPerEpoch; i++) {
        for (let j = 0; j < B; j++) {
          const idx = perm[i * B + j];
          yb[j] = cached.train.labels[idx];
          for (let l = 0; l < L; l++) xb.set(trainX[l].subarray(idx * F, (idx + 1) * F), (l * B + j) * F);
        }
        const lr = lrAt(sched, step);
        const r = await model.step(xb, yb, lr, cfg.weightDecay);
        const loss = r.loss.reduce((a, v) => a + v, 0) / L;
        if (!Number.isFinite(loss))
          throw new Error(`linear probe: the loss is ${loss} at step ${step + 1}: lower --lr`);
        step++;
        stepsThisRun++;
        lossSum += loss;
        lossN++;
        const m: Record<string, number> = { step, epoch, loss, lr };
        r.loss.forEach((v, l) => (m[`loss_${blocks[l]}`] = v));
        appendFileSync(metricsPath, JSON.stringify(m) + '\n');
        ev.metrics(m);
        const rate = (stepsThisRun * B) / Math.max((performance.now() - t0) / 1000, 1e-9);
        ev.progress({
          phase: 'linear',
          epoch,
          epochs: cfg.epochs,
          step: i + 1,
          steps: stepsPerEpoch,
          loss,
          imagesPerSec: rate,
          etaSec: ((totalSteps - step) * B) / rate,
        });
        if (o.interrupted?.()) status = 'interrupted';
        else if (o.stopAfter && stepsThisRun >= o.stopAfter && step < totalSteps) status = 'stopped';
        if (status !== 'done') break;
      }
      if (status !== 'done') {
        save(status);
        break;
      }
      const r = await evaluate(epoch + 1, lossSum / Math.max(lossN, 1), t0);
      epochs.push(r);
      ev.epoch(r);
      save(`epoch ${epoch + 1}`);
    }
    const last = epochs[epochs.length - 1];
    const val = last?.val ?? {};
    let best: LinearResult['best'];
    blocks.forEach((blk) => {
      const v = val[String(blk)];
      if (v && (!best || v.top1 > best.top1)) best = { block: blk, ...v };
    });
    const result: LinearResult = { status, out, val, best, epochs, config: cfg };
    if (status === 'done') writeEvalReport(out, { protocol: 'linear', backbone: b, config: cfg, epochs, metricsPath });
    return result;
  } finally {
    model.dispose();
    engine.dispose();
  }
}

/** The summary of a finished probe run in `out` (for pretrain --eval and tests). */
export function readSummary(out: string): unknown {
  return JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
}
