// `medic-native eval knn <checkpoint>`: kNN accuracy (DINO protocol) of a pretrained student.
import type { Command } from 'commander';

import { openData } from '../data/index.js';
import { Engine } from '../engine/index.js';
import { loadCheckpoint } from '../io/checkpoint.js';
import { FeatureExtractor } from '../eval/features.js';
import { knnEvaluate } from '../eval/knn.js';
import { checkConfigKeys, resolveConfig, type PretrainConfig } from '../train/config.js';

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
  const c = resolveConfig(saved, { data: o.data, device: o.device, threads: o.threads, workers: o.workers, knnK: o.knnK, knnLimit: o.knnLimit });
  const data = await openData(c.data);
  if (!data.val || data.val.length === 0) throw new Error(`eval knn: the data '${c.data}' has no val split to query`);
  const engine = Engine.create({ device: c.device, threads: c.threads });
  const batch = o.batchSize ? Number(o.batchSize) : Math.min(256, c.batchSize);
  if (!Number.isInteger(batch) || batch < 1) throw new Error(`--batch-size: expected a positive integer, got ${o.batchSize}`);
  const fx = new FeatureExtractor(engine, c, batch);
  try {
    fx.load(ck.params, ck.state.paramTable);
    const t0 = performance.now();
    const r = await knnEvaluate(fx, data.train, data.val, c, data.classNames.length);
    const secs = (performance.now() - t0) / 1000;
    if (o.json) console.log(JSON.stringify({ event: 'eval', checkpoint: ck.path, step: ck.state.step, knn: r.accuracy, n_train: r.nTrain, n_val: r.nTest, seconds: secs }));
    else {
      console.log(`${engine.device.reason}`);
      console.log(`checkpoint ${ck.path} (step ${ck.state.step}, student ${c.model}), data ${c.data}: ${r.nTrain} bank images, ${r.nTest} queries`);
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
    .description('kNN accuracy (DINO protocol: CLS after the final LN, cosine top-k, votes exp(sim/0.07)) on the val split')
    .option('--data <spec>', 'data to evaluate on (default: the data the checkpoint was trained on)')
    .option('--device <dev>', 'auto, cpu, cuda or cuda:N')
    .option('--threads <n>', 'CPU threads (0 = all cores)')
    .option('--workers <n>', 'data loader worker threads')
    .option('--knn-k <list>', 'k values, comma separated (default 10,20)')
    .option('--knn-limit <n>', 'embed at most N train images (0 = all)')
    .option('--batch-size <n>', 'images per forward (default min(256, training batch))')
    .option('--json', 'print one JSON line')
    .addHelpText('after', '\nExamples:\n  $ medic-native eval knn runs/latest\n  $ medic-native eval knn runs/latest/checkpoints/step-00000350.safetensors --data idx:./mnist --json')
    .action(async (checkpoint: string, o: EvalKnnOptions) => {
      await runEvalKnn(checkpoint, o);
    });
}
