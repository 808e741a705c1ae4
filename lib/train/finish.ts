// The end of a run: a completed run gets its final kNN evaluation, the final checkpoint and the
// student exported with timm names; every run (also a stopped, interrupted or diverged one) gets its
// report.
import { join } from 'node:path';

import { resolveNormalization } from '../data/transforms.js';
import { exportStudentTimm, flatParamSource } from '../io/export.js';
import { writeReport } from '../report/html.js';
import { studentVitConfig } from './build.js';
import { normalizationOf } from './config.js';
import type { TrainEvaluator } from './evaluation.js';
import type { PretrainResult, RunStatus } from './events.js';
import type { FinalEvaluations } from '../eval/protocols.js';
import { runFinalEvaluations } from './final-evals.js';
import { saveRunCheckpoint } from './save.js';
import type { TrainRun } from './setup.js';

export async function finishRun(run: TrainRun, evaluator: TrainEvaluator, status: RunStatus): Promise<PretrainResult> {
  const { c, progress: p } = run;
  const knnRandom = p.extra.knnRandom as Record<number, number> | undefined;
  let knn: Record<number, number> | undefined;
  let evals: FinalEvaluations | undefined;
  if (status === 'done') {
    knn = await evaluator.evaluate('pretrained', c.epochs);
    p.extra.knn = knn;
    saveRunCheckpoint(run, 'final');
    if (run.world.isRoot) exportStudent(run);
    // The linear probe and fine-tune read the final checkpoint from the run folder, which rank 0 alone
    // writes: rank 0 runs them, as one process (they do not use the other ranks).
    if (run.world.isRoot) evals = await runFinalEvaluations(run);
  }
  const trained = run.trained ?? { steps: 0, seconds: 0 };
  const precision = run.precision;
  if (run.world.isRoot) writeReport(c.out, c, { knn, knnRandom, evals, precision, trained });
  return { status, steps: p.step, precision, trained, knn, knnRandom, evals, outDir: c.out };
}

function exportStudent(run: TrainRun): void {
  const { c, table } = run;
  const exportPath = join(c.out, 'student-timm.safetensors');
  exportStudentTimm(
    exportPath,
    flatParamSource(run.state.get('params').read() as Float32Array, table),
    studentVitConfig(c),
    {
      names: table.map((p) => p.name),
      metadata: { source: 'medic-native pretrain', step: String(run.progress.step) },
      normalization: resolveNormalization(normalizationOf(c)),
    },
  );
  run.ev.info(`student exported with timm ViT names: ${exportPath}`);
}
