// `medic-native eval linear <run or checkpoint>`: the linear probe (MAE protocol; lib/eval/linear.ts).
import type { Command } from 'commander';

import { runLinearProbe, type LinearResult } from '../eval/linear.js';
import { linearDefaults, type LinearConfig } from '../eval/protocols.js';
import { cliEvents, num, withInterrupt } from './eval-events.js';

export interface EvalLinearOptions {
  data?: string;
  device?: string;
  threads?: string;
  workers?: string;
  out?: string;
  resume?: boolean;
  fromScratch?: boolean;
  pool?: string;
  layers?: string;
  optimizer?: string;
  epochs?: string;
  batchSize?: string;
  lr?: string;
  warmupEpochs?: string;
  weightDecay?: string;
  featureBatch?: string;
  seed?: string;
  stopAfter?: string;
  json?: boolean;
}

export function linearFlags(o: EvalLinearOptions): Partial<LinearConfig> {
  if (o.pool !== undefined && !['cls', 'mean', 'cls+mean'].includes(o.pool))
    throw new Error(`--pool: expected cls, mean or cls+mean, got '${o.pool}'`);
  if (o.optimizer !== undefined && !['lars', 'sgd', 'auto'].includes(o.optimizer))
    throw new Error(`--optimizer: expected lars, sgd or auto, got '${o.optimizer}'`);
  return {
    pool: o.pool as LinearConfig['pool'] | undefined,
    layers:
      o.layers === undefined
        ? undefined
        : o.layers.split(',').map((s) => num('--layers', s.trim(), { integer: true, min: 1 })!),
    optimizer: o.optimizer as LinearConfig['optimizer'] | undefined,
    epochs: num('--epochs', o.epochs, { integer: true, min: 1 }),
    batchSize: num('--batch-size', o.batchSize, { integer: true, min: 1 }),
    lr: num('--lr', o.lr, { min: 0 }),
    warmupEpochs: num('--warmup-epochs', o.warmupEpochs, { min: 0 }),
    weightDecay: num('--weight-decay', o.weightDecay, { min: 0 }),
    featureBatch: num('--feature-batch', o.featureBatch, { integer: true, min: 1 }),
  };
}

export async function runEvalLinear(
  checkpoint: string,
  o: EvalLinearOptions,
): Promise<{ code: number; result: LinearResult }> {
  const { events, progress } = cliEvents(!!o.json);
  const result = await withInterrupt(events, (interrupted) =>
    runLinearProbe({
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
      config: linearFlags(o),
      events,
      interrupted,
    }),
  );
  progress.clear();
  if (o.json)
    process.stdout.write(
      JSON.stringify({
        event: 'summary',
        protocol: 'linear',
        status: result.status,
        out: result.out,
        val: result.val,
        best: result.best,
      }) + '\n',
    );
  else if (result.best)
    console.log(
      `linear probe: best top-1 ${(100 * result.best.top1).toFixed(2)}% (block ${result.best.block}); report: ${result.out}/report.html`,
    );
  return { code: result.status === 'interrupted' ? 130 : 0, result };
}

export function registerEvalLinear(evalCmd: Command): void {
  const d = linearDefaults;
  evalCmd
    .command('linear <checkpoint>')
    .description(
      'linear probe on frozen features (MAE protocol: BatchNorm without affine + linear, LARS or SGD momentum 0.9, no weight decay, warmup + cosine)',
    )
    .option('--data <spec>', 'data to evaluate on (default: the data the checkpoint was trained on)')
    .option('--device <dev>', 'auto, cpu, cuda or cuda:N')
    .option('--threads <n>', 'CPU threads (0 = all cores)')
    .option('--workers <n>', 'data loader worker threads')
    .option('--out <dir>', 'output folder (default <run>/eval/linear, or linear-scratch)')
    .option('--resume', 'continue the run in --out')
    .option('--from-scratch', 'probe the random-init twin of the checkpoint (the baseline)')
    .option(
      '--pool <kind>',
      `features: cls (after the final norm), mean (of the patch tokens) or cls+mean (default ${d.pool})`,
    )
    .option(
      '--layers <list>',
      'blocks to probe, 1-based, comma separated: one classifier each, the best reported (default: the last)',
    )
    .option('--optimizer <kind>', 'lars, sgd or auto (LARS with >= 100k training images, else SGD; default auto)')
    .option('--epochs <n>', `epochs (default ${d.epochs})`)
    .option('--batch-size <n>', 'batch (default 16384, or 256 with < 100k training images)')
    .option('--lr <lr>', `base lr per 256 images (default ${d.lr})`)
    .option('--warmup-epochs <n>', `linear warmup epochs (default ${d.warmupEpochs})`)
    .option('--weight-decay <wd>', `weight decay (default ${d.weightDecay})`)
    .option(
      '--feature-batch <n>',
      'images per forward when extracting the features (default 512 up to 64 px, 128 above)',
    )
    .option('--seed <n>', "seed of the head init and the batch order (default: the checkpoint run's)")
    .option('--stop-after <n>', 'stop with a checkpoint after N steps (resume later)')
    .option('--json', 'print JSON lines instead of text')
    .addHelpText(
      'after',
      '\nExamples:\n  $ medic-native eval linear runs/latest\n  $ medic-native eval linear runs/latest --from-scratch\n  $ medic-native eval linear runs/latest --layers 4,5,6 --pool cls+mean --json',
    )
    .action(async (checkpoint: string, o: EvalLinearOptions) => {
      const { code } = await runEvalLinear(checkpoint, o);
      if (code) process.exitCode = code;
    });
}
