// kNN evaluation during pretraining: the random-init baseline before the first step (fresh runs
// only), every --eval-every epochs, and at the end. The feature extractor is built on the first
// evaluation and reused; a run without a val split evaluates nothing (and says so once).
import { FeatureExtractor } from '../eval/features.js';
import { knnBatch, knnEvaluate } from '../eval/knn.js';
import type { EvalRecord } from './events.js';
import type { TrainRun } from './setup.js';

export class TrainEvaluator {
  readonly canEval: boolean;
  private fx: FeatureExtractor | null = null;

  constructor(private readonly run: TrainRun) {
    // kNN votes among classes: with one class every query is right, and 100 % would mean nothing.
    this.canEval = !!run.data.val && run.data.val.length > 0 && run.data.classNames.length >= 2;
  }

  /** The random-init baseline (stored in checkpoints, so a resumed run keeps its baseline). */
  async baseline(): Promise<Record<number, number> | undefined> {
    const { progress: p } = this.run;
    const classes = this.run.data.classNames.length;
    if (classes < 2)
      this.run.ev.warn(
        `kNN needs at least two classes; the data has ${classes} (${this.run.c.data}): kNN is not applicable and is skipped`,
      );
    else if (!this.canEval) this.run.ev.warn('no val split: kNN evaluation is skipped');
    let knnRandom = p.extra.knnRandom as Record<number, number> | undefined;
    if (!this.run.resumed && this.canEval) knnRandom = await this.evaluate('random-init', 0);
    p.extra.knnRandom = knnRandom;
    return knnRandom;
  }

  /** kNN accuracy of the current student weights; undefined without a val split. */
  async evaluate(which: EvalRecord['which'], epoch: number): Promise<Record<number, number> | undefined> {
    if (!this.canEval) return undefined;
    const { c, data, state } = this.run;
    const fx = (this.fx ??= new FeatureExtractor(
      this.run.engine,
      c,
      knnBatch(c.imgSize, c.knnLimit || data.train.length),
    ));
    fx.load(state.get('params').read() as Float32Array, this.run.table);
    const t0 = performance.now();
    const onEmbedded = (done: number, total: number) =>
      this.run.ev.activity?.({ what: `kNN ${which}: embedding ${total} images`, done, total });
    const r = await knnEvaluate(
      fx,
      data.train,
      data.val!,
      c,
      data.classNames.length,
      { ...this.run.dataReport, onEmbedded },
      this.run.world,
    );
    const seconds = (performance.now() - t0) / 1000;
    this.run.ev.eval({
      step: this.run.progress.step,
      epoch,
      which,
      knn: r.accuracy,
      n_train: r.nTrain,
      n_val: r.nTest,
      seconds,
    });
    return r.accuracy;
  }

  dispose(): void {
    this.fx?.dispose();
  }
}
