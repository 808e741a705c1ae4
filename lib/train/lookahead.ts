// Evolved masking with one batch of lookahead. A step's masks need the teacher's attention on that
// step's own batch, so made in line they would sit between the teacher program and the step. Instead,
// before step t starts, the teacher runs on batch t+1 (the engine runs one program at a time) and the
// clustering of batch t+1 starts on a native worker thread, running while step t does:
//
//   teacher(t+1) | step(t) ............ | teacher(t+2) | step(t+1) ...
//                | cluster(t+1) ...    |              | cluster(t+2) ...
//
// The masks are the same as in line (a pure function of seed, step and the teacher's map), so the
// lookahead changes no number, and a resumed run starts it afresh from its first batch. On a GPU the
// clustering then costs nothing while it is shorter than the step; on the CPU it shares the cores.
import type { Batch } from '../data/index.js';
import type { Program } from '../engine/index.js';
import { availableParallelism } from 'node:os';

import { evolvedConfigOf, evolvedMasksAsync } from './evolved.js';
import type { EvolvedTimes } from './events.js';
import type { BatchFeed } from './feed.js';
import { maskInputs } from './masking.js';
import type { TrainRun } from './setup.js';

type StepInputs = Record<string, Uint8Array | Int32Array | Float32Array>;

/** A batch whose teacher pass is done and whose masks are being made. */
interface Prepared {
  step: number;
  batch: Batch;
  targets: Float32Array;
  teacherMs: number;
  masks: Promise<{ mask: Uint8Array; ms: number }>;
}

export class EvolvedLookahead {
  private ahead: Prepared | null = null;

  constructor(
    private readonly run: TrainRun,
    private readonly teacher: Program,
    private readonly feed: BatchFeed,
  ) {}

  /** Step `step`'s batch and inputs (masks, teacher targets), waiting for its clustering if it still runs. */
  async take(step: number): Promise<{ batch: Batch; inputs: StepInputs; times: EvolvedTimes }> {
    const prep = this.ahead ?? (await this.prepare(step));
    this.ahead = null;
    // the held batch was taken from the feed for its step: any other step would train on the wrong batch
    if (prep.step !== step)
      throw new Error(`evolved masking: step ${step} was asked for, the lookahead holds step ${prep.step}`);
    const t0 = performance.now();
    const { mask, ms } = await prep.masks;
    const { c, medic } = this.run;
    return {
      batch: prep.batch,
      inputs: { ...maskInputs(mask, c.batchSize, medic.N, medic.scored), teacher_targets: prep.targets },
      times: { teacher: prep.teacherMs, mask: ms, maskWait: performance.now() - t0 },
    };
  }

  /**
   * Runs the teacher on step `step`'s batch and starts its clustering. Call it before starting step
   * `step - 1` (the engine would refuse a second program meanwhile); past the last step it does nothing.
   */
  async prepareAhead(step: number): Promise<void> {
    if (step < this.run.plan.totalSteps) this.ahead = await this.prepare(step);
  }

  /** Waits for a clustering that a stop or a divergence left unused. */
  async close(): Promise<void> {
    await this.ahead?.masks.catch(() => undefined);
    this.ahead = null;
  }

  private async prepare(step: number): Promise<Prepared> {
    const { c, plan, world } = this.run;
    const epoch = Math.floor(step / plan.stepsPerEpoch);
    const batch = await this.feed.next(epoch);
    const t0 = performance.now();
    const t = await this.teacher.run({ images: batch.images });
    const t1 = performance.now();
    const input =
      c.maskCluster === 'hc' ? { gram: t.outputs.gram as Float32Array } : { attn: t.outputs.attn as Float32Array };
    // data parallel: rows are drawn by their index in the global batch
    const masks = evolvedMasksAsync(
      evolvedConfigOf(c, c.threads || availableParallelism()),
      input,
      c.batchSize,
      c.seed,
      step,
      epoch,
      world.rank * c.batchSize,
    ).then((r) => ({ mask: r.mask, ms: performance.now() - t1 }));
    masks.catch(() => undefined); // a clustering error surfaces in take(); unused (a stop), it is dropped
    return { step, batch, targets: t.outputs.targets as Float32Array, teacherMs: t1 - t0, masks };
  }
}
