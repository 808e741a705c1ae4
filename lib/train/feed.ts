// The training batches. One loader serves consecutive epochs; it is reopened only where the next
// batch it holds is not the one the run needs: at the start, and after an epoch capped by
// --steps-per-epoch. The feed keeps its own cursor (the end of the last batch it gave), so a caller
// may fetch the next step's batch before this step has moved the run's position (evolved masking's
// lookahead, lib/train/lookahead.ts).
import { DataLoader, type Batch, type Position } from '../data/index.js';
import { normalizationOf } from './config.js';
import type { TrainRun } from './setup.js';

export class BatchFeed {
  private loader: DataLoader | null = null;
  /** Where the next batch starts: the run's position at first, then the end of the last batch given. */
  private cursor: Position;

  constructor(private readonly run: TrainRun) {
    this.cursor = run.progress.position;
  }

  /** The next batch, which must belong to `epoch` (a new epoch starts at its first sample). */
  async next(epoch: number): Promise<Batch> {
    if (this.cursor.epoch !== epoch) this.cursor = { epoch, index: 0 }; // a capped epoch ended mid-data
    if (!this.loader || !samePosition(this.loader.position, this.cursor)) {
      await this.loader?.close();
      this.loader = this.open(this.cursor);
    }
    const next = await this.loader.next();
    if (next.done)
      throw new Error(
        `pretrain: the data loader ended at epoch ${epoch}, sample ${this.cursor.index}, before the run's ${this.run.plan.totalSteps} steps`,
      );
    this.cursor = next.value.next;
    return next.value;
  }

  async close(): Promise<void> {
    await this.loader?.close();
  }

  private open(start: Position): DataLoader {
    const { c, world, plan } = this.run;
    return new DataLoader(this.run.data.train, {
      batchSize: plan.globalBatch,
      shard: { rank: world.rank, size: world.size },
      imageSize: c.imgSize,
      train: true,
      seed: c.seed,
      workers: c.workers,
      prefetch: c.prefetch,
      start,
      epochs: c.epochs,
      transform: { scale: [c.cropScale, 1], hflip: c.hflip, colorJitter: c.colorJitter, normalize: normalizationOf(c) },
      ...this.run.dataReport,
    });
  }
}

function samePosition(a: Position, b: Position): boolean {
  return a.epoch === b.epoch && a.index === b.index;
}
