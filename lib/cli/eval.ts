// `medic-native eval knn <checkpoint>`: kNN accuracy (DINO protocol) of a pretrained student.
import { Option, type Command } from 'commander';

import { openData } from '../data/index.js';
import { Engine } from '../engine/index.js';
import { loadCheckpoint } from '../io/checkpoint.js';
import { FeatureExtractor } from '../eval/features.js';
import { knnBatch, knnEvaluate } from '../eval/knn.js';
import { checkConfigKeys, resolveConfig, type PretrainConfig } from '../train/config.js';
import { registerEvalFinetune } from './eval-finetune.js';
import { registerEvalLinear } from './eval-linear.js';
import { givenOptions } from './options.js';

export interface EvalKnnOptions {
  data?: string;
  device?: string;
  threads?: string;
  workers?: string;
  knnK?: string;
  knnLimit?: string;
  batchSize?: string;
  json?: boolean;
}

export async function runEvalKnn(checkpoint: string, o: EvalKnnOptions): Promise<Record<number, number>> {
  const ck = loadCheckpoint(checkpoint);
  checkConfigKeys(ck.state.config, `checkpoint ${ck.path}`);
  const saved = ck.state.config as Partial<PretrainConfig>;
  // Evaluation never runs the teacher: a teacher file that has moved (or a run from another working
  // directory) must not stop it.
  const c = resolveConfig(
    { ...saved, teacher: 'random' },
    { data: o.data, device: o.device, threads: o.threads, workers: o.workers, knnK: o.knnK, knnLimit: o.knnLimit },
  );
  const data = await openData(c.data);
  if (!data.val || data.val.length === 0) throw new Error(`eval knn: the data '${c.data}' has no val split to query`);
  if (data.classNames.length < 2)
    throw new Error(
      `eval knn: kNN needs at least two classes; the data '${c.data}' has ${data.classNames.length}: kNN accuracy is not applicable`,
    );
  const engine = Engine.create({ device: c.device, threads: c.threads });
  const batch = o.batchSize ? Number(o.batchSize) : knnBatch(c.imgSize, c.knnLimit || data.train.length);
  if (!Number.isInteger(batch) || batch < 1)
    throw new Error(`--batch-size: expected a positive integer, got ${o.batchSize}`);
  const fx = new FeatureExtractor(engine, c, batch);
  try {
    fx.load(ck.params, ck.state.paramTable);
    const t0 = performance.now();
    const r = await knnEvaluate(fx, data.train, data.val, c, data.classNames.length);
    const secs = (performance.now() - t0) / 1000;
    if (o.json)
      console.log(
        JSON.stringify({
          event: 'eval',
          checkpoint: ck.path,
          step: ck.state.step,
          knn: r.accuracy,
          n_train: r.nTrain,
          n_val: r.nTest,
          seconds: secs,
          phases: r.seconds,
        }),
      );
    else {
      console.log(`${engine.device.reason}`);
      console.log(
        `checkpoint ${ck.path} (step ${ck.state.step}, student ${c.model}), data ${c.data}: ${r.nTrain} bank images, ${r.nTest} queries`,
      );
      for (const [k, v] of Object.entries(r.accuracy)) console.log(`kNN k=${k}: ${(100 * v).toFixed(2)}%`);
    }
    return r.accuracy;
  } finally {
    fx.dispose();
    engine.dispose();
  }
}

export function registerEval(program: Command): void {
  const evalCmd = program.command('eval').description('evaluate a pretrained student');
  evalCmd
    .command('knn <checkpoint>')
    .description(
      'kNN accuracy (DINO protocol: CLS after the final LN, cosine top-k, votes exp(sim/0.07)) on the val split',
    )
    // Defaults come from the run; shown as commander's "(default: ...)", and dropped before the merge
    // (givenOptions) so that the run's settings apply.
    .addOption(new Option('--data <spec>', 'data to evaluate on').default('', "the run's data"))
    .addOption(new Option('--device <dev>', 'auto, cpu, cuda or cuda:N').default('', "the run's --device"))
    .addOption(new Option('--threads <n>', 'CPU threads (0 = all cores)').default('', "the run's --threads"))
    .addOption(new Option('--workers <n>', 'data loader worker threads').default('', "the run's --workers"))
    .addOption(
      new Option('--knn-k <list>', 'k values, comma separated').default('', "the run's --knn-k; 10,20 unless set"),
    )
    .addOption(
      new Option('--knn-limit <n>', 'embed at most N train images (0 = all)').default(
        '',
        "the run's --knn-limit; 0 unless set",
      ),
    )
    .addOption(new Option('--batch-size <n>', 'images per forward').default('', '512 up to 64 px, 128 above'))
    .option('--json', 'print one JSON line')
    .showHelpAfterError('(medic-native eval knn --help lists the flags)')
    .addHelpText(
      'after',
      '\nExamples:\n  $ medic-native eval knn runs/latest\n  $ medic-native eval knn runs/latest/checkpoints/step-00000350.safetensors --data idx:./mnist --json',
    )
    .action(async (checkpoint: string, o: EvalKnnOptions, cmd: Command) => {
      await runEvalKnn(checkpoint, givenOptions(cmd, o));
    });
  registerEvalLinear(evalCmd);
  registerEvalFinetune(evalCmd);
}
