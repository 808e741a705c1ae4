// `medic-native eval finetune <run or checkpoint>`: fine-tuning with labels (BEiT / MAE recipe;
// lib/eval/finetune.ts). Writes a classifier checkpoint and a timm export with the head.
import type { Command } from 'commander';

import { runFinetune, type FinetuneResult } from '../eval/finetune.js';
import { finetuneDefaults, type FinetuneConfig } from '../eval/protocols.js';
import { cliEvents, num, withInterrupt } from './eval-events.js';

export interface EvalFinetuneOptions {
  data?: string;
  device?: string;
  threads?: string;
  workers?: string;
  out?: string;
  resume?: boolean;
  fromScratch?: boolean;
  pool?: string;
  epochs?: string;
  batchSize?: string;
  lr?: string;
  layerDecay?: string;
  weightDecay?: string;
  dropPath?: string;
  smoothing?: string;
  mixup?: string;
  cutmix?: string;
  warmupEpochs?: string;
  cropScale?: string;
  clipGrad?: string;
  seed?: string;
  stopAfter?: string;
  json?: boolean;
}

export function finetuneFlags(o: EvalFinetuneOptions): Partial<FinetuneConfig> {
  if (o.pool !== undefined && o.pool !== 'avg' && o.pool !== 'cls')
    throw new Error(`--pool: expected avg or cls, got '${o.pool}'`);
  return {
    pool: o.pool as FinetuneConfig['pool'] | undefined,
    epochs: num('--epochs', o.epochs, { integer: true, min: 1 }),
    batchSize: num('--batch-size', o.batchSize, { integer: true, min: 1 }),
    lr: num('--lr', o.lr, { min: 0 }),
    layerDecay: num('--layer-decay', o.layerDecay, { min: 0 }),
    weightDecay: num('--weight-decay', o.weightDecay, { min: 0 }),
    dropPath: num('--drop-path', o.dropPath, { min: 0 }),
    smoothing: num('--smoothing', o.smoothing, { min: 0 }),
    mixup: num('--mixup', o.mixup, { min: 0 }),
    cutmix: num('--cutmix', o.cutmix, { min: 0 }),
    warmupEpochs: num('--warmup-epochs', o.warmupEpochs, { min: 0 }),
    cropScale: num('--crop-scale', o.cropScale, { min: 0 }),
    clipGrad: num('--clip-grad', o.clipGrad, { min: 0 }),
  };
}

export async function runEvalFinetune(
  checkpoint: string,
  o: EvalFinetuneOptions,
): Promise<{ code: number; result: FinetuneResult }> {
  const { events, progress } = cliEvents(!!o.json);
  const result = await withInterrupt(events, (interrupted) =>
    runFinetune({
      checkpoint,
      data: o.data,
      device: o.device,
      threads: o.threads,
      workers: o.workers,
      out: o.out,
      resume: o.resume,
      fromScratch: o.fromScratch,
      seed: num('--seed', o.seed, { integer: true, min: 0 }),
      stopAfter: num('--stop-after', o.stopAfter, { integer: true, min: 1 }),
      config: finetuneFlags(o),
      events,
      interrupted,
    }),
  );
  progress.clear();
  if (o.json)
    process.stdout.write(
      JSON.stringify({
        event: 'summary',
        protocol: 'finetune',
        status: result.status,
        out: result.out,
        val: result.val,
        timm: result.timm,
      }) + '\n',
    );
  else if (result.val)
    console.log(
      `fine-tune: top-1 ${(100 * result.val.top1).toFixed(2)}%; classifier: ${result.timm}; report: ${result.out}/report.html`,
    );
  return { code: result.status === 'interrupted' ? 130 : 0, result };
}

export function registerEvalFinetune(evalCmd: Command): void {
  const d = finetuneDefaults;
  evalCmd
    .command('finetune <checkpoint>')
    .description(
      'fine-tune the whole student with labels (BEiT/MAE recipe: AdamW, layer-wise lr decay, drop path, label smoothing, mixup/CutMix); writes a classifier and its timm export',
    )
    .option('--data <spec>', 'data to fine-tune on (default: the data the checkpoint was trained on)')
    .option('--device <dev>', 'auto, cpu, cuda or cuda:N')
    .option('--threads <n>', 'CPU threads (0 = all cores)')
    .option('--workers <n>', 'data loader worker threads')
    .option('--out <dir>', 'output folder (default <run>/eval/finetune, or finetune-scratch)')
    .option('--resume', 'continue the run in --out')
    .option('--from-scratch', 'train the random-init twin of the checkpoint with the same recipe (the baseline)')
    .option('--pool <kind>', `head input: avg (mean of the patch tokens + fc_norm) or cls (default ${d.pool})`)
    .option('--epochs <n>', 'epochs (default 100, or 20 with < 100k training images)')
    .option('--batch-size <n>', 'batch (default 1024, or 128 with < 100k training images)')
    .option('--lr <lr>', `base lr per 256 images (default ${d.lr})`)
    .option('--layer-decay <d>', `layer-wise lr decay (default ${d.layerDecay})`)
    .option('--weight-decay <wd>', `weight decay (default ${d.weightDecay})`)
    .option('--drop-path <p>', `stochastic depth of the last block (default ${d.dropPath})`)
    .option('--smoothing <e>', `label smoothing (default ${d.smoothing})`)
    .option('--mixup <alpha>', `mixup alpha, 0 = off (default ${d.mixup})`)
    .option('--cutmix <alpha>', `CutMix alpha, 0 = off (default ${d.cutmix})`)
    .option('--warmup-epochs <n>', `linear warmup epochs (default ${d.warmupEpochs})`)
    .option('--crop-scale <s>', 'RandomResizedCrop smallest area (default 0.08, or 0.5 at <= 32 px)')
    .option('--clip-grad <norm>', 'clip the global gradient norm (default 0 = off)')
    .option(
      '--seed <n>',
      "seed of the head init, data order, augmentation, mixup and drop path (default: the checkpoint run's)",
    )
    .option('--stop-after <n>', 'stop with a checkpoint after N steps (resume later)')
    .option('--json', 'print JSON lines instead of text')
    .addHelpText(
      'after',
      '\nExamples:\n  $ medic-native eval finetune runs/latest\n  $ medic-native eval finetune runs/latest --from-scratch\n  $ medic-native eval finetune runs/latest --epochs 100 --batch-size 1024 --lr 5e-4 --layer-decay 0.65',
    )
    .action(async (checkpoint: string, o: EvalFinetuneOptions) => {
      const { code } = await runEvalFinetune(checkpoint, o);
      if (code) process.exitCode = code;
    });
}
