// The evaluation protocols' settings: defaults with their sources, the small-data defaults, and the
// events a run reports (the CLI renders them as text, progress bars or JSON lines).
//
// Linear probe (MAE, main_linprobe.py; the MEDiC paper follows it): frozen backbone, BatchNorm without
// affine (eps 1e-6) before a linear head initialised trunc-normal(0.01), LARS (trust 0.001) with
// momentum 0.9, no weight decay, batch 16384, base lr 0.1 per 256 images, 90 epochs with 10 warmup,
// per-step cosine to 0. Differences: the features are computed once with the eval transform and
// cached (MAE re-augments every epoch: RandomResizedCrop + flip, so its backbone runs every epoch);
// on a small training set (< 100k images) batch 256 and plain momentum SGD, since LARS's per-step
// relative change (lr x trust) at a few thousand steps leaves a tiny head barely trained.
//
// Fine-tune (BEiT / MAE, main_finetune.py): the whole network with labels; AdamW (0.9, 0.999),
// base lr 5e-4 per 256 images, layer-wise lr decay 0.65 (the issue's ViT-B value; MAE uses 0.75),
// weight decay 0.05 (not on 1-D params, pos_embed, cls_token), drop path 0.1, label smoothing 0.1,
// mixup 0.8 / CutMix 1.0 (switch prob 0.5), 5 warmup epochs then per-step cosine to 1e-6, batch 1024,
// 100 epochs, the head trunc-normal(2e-5), mean-pool head (fc_norm after the mean of the patch tokens,
// the final norm removed) or CLS after the final norm. Not implemented: RandAugment (9, 0.5) and
// random erasing (0.25). Small training sets: batch 128 and 20 epochs.
import type { FeaturePool } from './features.js';

/** A training set below this many images gets the small-data defaults (marked 'auto'). */
export const SMALL_DATA = 100_000;

export interface LinearConfig {
  pool: FeaturePool;
  /** 1-based blocks to probe (one classifier each); empty = the last block. */
  layers: number[];
  /** 'auto': LARS on large data, SGD below SMALL_DATA. */
  optimizer: 'lars' | 'sgd' | 'auto';
  epochs: number;
  /** 0 = auto: 16384, or 256 below SMALL_DATA. */
  batchSize: number;
  /** Base lr per 256 images (lr = base * batch / 256). */
  lr: number;
  warmupEpochs: number;
  minLr: number;
  weightDecay: number;
  momentum: number;
  /** LARS trust coefficient. */
  trust: number;
  /** Images per forward when the features are extracted (0 = auto: 512 up to 64 px, 128 above). */
  featureBatch: number;
}

export const linearDefaults: LinearConfig = {
  pool: 'cls',
  layers: [],
  optimizer: 'auto',
  epochs: 90,
  batchSize: 0,
  lr: 0.1,
  warmupEpochs: 10,
  minLr: 0,
  weightDecay: 0,
  momentum: 0.9,
  trust: 0.001,
  featureBatch: 0,
};

export interface FinetuneConfig {
  pool: 'avg' | 'cls';
  /** 0 = auto: 100, or 20 below SMALL_DATA. */
  epochs: number;
  /** 0 = auto: 1024, or 128 below SMALL_DATA. */
  batchSize: number;
  /** Base lr per 256 images. */
  lr: number;
  layerDecay: number;
  weightDecay: number;
  dropPath: number;
  smoothing: number;
  mixup: number;
  cutmix: number;
  mixupProb: number;
  switchProb: number;
  warmupEpochs: number;
  minLr: number;
  /** RandomResizedCrop smallest area (timm 0.08; 0 = auto: 0.08, or 0.5 on 28 px digits). */
  cropScale: number;
  /** Global-norm gradient clipping (0 = off, as MAE and BEiT by default). */
  clipGrad: number;
  /** Head init std. */
  headInit: number;
}

export const finetuneDefaults: FinetuneConfig = {
  pool: 'avg',
  epochs: 0,
  batchSize: 0,
  lr: 5e-4,
  layerDecay: 0.65,
  weightDecay: 0.05,
  dropPath: 0.1,
  smoothing: 0.1,
  mixup: 0.8,
  cutmix: 1.0,
  mixupProb: 1.0,
  switchProb: 0.5,
  warmupEpochs: 5,
  minLr: 1e-6,
  cropScale: 0,
  clipGrad: 0,
  headInit: 2e-5,
};

export interface EvalProgress {
  phase: string;
  epoch: number;
  epochs: number;
  step: number;
  steps: number;
  loss: number;
  imagesPerSec: number;
  etaSec: number;
}

/** What an evaluation run tells the outside world. */
export interface EvalEvents {
  info(line: string): void;
  warn(line: string): void;
  progress(p: EvalProgress): void;
  /** One record per logged step (also appended to metrics.jsonl). */
  metrics(m: Record<string, number>): void;
  /** One record per evaluation of the val split. */
  epoch(e: EpochResult): void;
}

/** Top-1 / top-5 (top-5 only with more than 5 classes) in [0, 1]. */
export interface TopK {
  top1: number;
  top5?: number;
}

export interface EpochResult {
  protocol: 'linear' | 'finetune';
  epoch: number;
  step: number;
  /** Per probed block for the linear probe (key = block), one entry 'head' for fine-tuning. */
  val: Record<string, TopK>;
  train_loss: number;
  seconds: number;
}

export const silentEvents: EvalEvents = {
  info: () => {},
  warn: () => {},
  progress: () => {},
  metrics: () => {},
  epoch: () => {},
};

/** Top-1 and top-5 accuracy of logits [N, K] (first maxima, as torch.topk on ties). */
export function topK(logits: Float32Array, labels: Int32Array, K: number): TopK {
  const n = labels.length;
  let c1 = 0;
  let c5 = 0;
  for (let i = 0; i < n; i++) {
    const row = logits.subarray(i * K, (i + 1) * K);
    const y = labels[i];
    const v = row[y];
    let above = 0;
    for (let k = 0; k < K; k++) if (row[k] > v || (row[k] === v && k < y)) above++;
    if (above === 0) c1++;
    if (above < 5) c5++;
  }
  return K > 5 ? { top1: n ? c1 / n : 0, top5: n ? c5 / n : 0 } : { top1: n ? c1 / n : 0 };
}

const pct = (v?: number) => (v === undefined ? 'n/a' : `${(100 * v).toFixed(2)}%`);

/** One line per evaluated epoch, for text output. */
export function formatEpoch(e: EpochResult): string {
  const heads = Object.entries(e.val)
    .map(
      ([h, v]) =>
        `${e.protocol === 'linear' ? `block ${h}` : h} top-1 ${pct(v.top1)}${v.top5 !== undefined ? ` top-5 ${pct(v.top5)}` : ''}`,
    )
    .join(', ');
  return `${e.protocol} epoch ${e.epoch}: train loss ${e.train_loss.toFixed(4)}; val ${heads} (${e.seconds.toFixed(1)}s)`;
}

/** A protocol's result on the pretrained student and on its random-init twin (pretrain --eval). */
export interface ProtocolPair {
  pretrained?: TopK & { head: string };
  random_init?: TopK & { head: string };
}

export type FinalEvaluations = Partial<Record<'linear' | 'finetune', ProtocolPair>>;
