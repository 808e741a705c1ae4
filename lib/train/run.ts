// pretrain(): a MEDiC pretraining run (facebookresearch/mae's main + engine roles), in four phases:
//   setupRun (setup.ts)        run folder, resume, data, engine, graph, parameters, plan
//   baseline (evaluation.ts)   kNN of the random-init student (fresh runs)
//   runSteps (loop.ts)         data -> masks -> Program.run -> metrics, epoch evaluations, checkpoints
//   finishRun (finish.ts)      final kNN, checkpoint, timm export, report
import { TrainEvaluator } from './evaluation.js';
import type { PretrainOptions, PretrainResult } from './events.js';
import { finishRun } from './finish.js';
import { runSteps } from './loop.js';
import type { PretrainConfig } from './config.js';
import { disposeRun, setupRun } from './setup.js';

export type { EvalRecord, PretrainEvents, PretrainOptions, PretrainResult, RunStatus, StepMetrics } from './events.js';

export async function pretrain(config: PretrainConfig, opts: PretrainOptions): Promise<PretrainResult> {
  const run = await setupRun(config, opts);
  const evaluator = new TrainEvaluator(run);
  let result: PretrainResult;
  try {
    await evaluator.baseline();
    const status = await runSteps(run, evaluator, opts.interrupted);
    result = await finishRun(run, evaluator, status);
  } finally {
    evaluator.dispose();
    disposeRun(run);
  }
  // Data parallel: every rank got here (a failed rank throws above, and the CLI aborts the job).
  run.world.finalize();
  return result;
}
