// What a pretraining run reports and returns: the events the CLI renders (text or JSON lines), one
// record per logged step and per evaluation, and the result.
import type { FinalEvaluations } from '../eval/protocols.js';
import type { Precision } from './precision.js';

/** What the loop tells the outside world; the CLI renders it (text or JSON lines). */
export interface PretrainEvents {
  info(line: string): void;
  warn(line: string): void;
  progress(p: {
    epoch: number;
    epochs: number;
    step: number;
    steps: number;
    loss: number;
    imagesPerSec: number;
    etaSec: number;
  }): void;
  metrics(m: StepMetrics): void;
  eval(e: EvalRecord): void;
  /** Progress of work other than steps (the images an evaluation has embedded so far). */
  activity?(a: { what: string; done: number; total: number }): void;
}

export interface StepMetrics {
  step: number;
  epoch: number;
  loss: number;
  l_tok: number;
  l_cls: number;
  l_pix: number;
  grad_norm: number;
  lr: number;
  wd: number;
  step_ms: number;
  wait_ms: number;
  /** Images per second over all ranks (the global batch). */
  img_s: number;
  /**
   * Evolved masking only (not in step_ms): the teacher program on this step's batch (run before the
   * previous step), the clustering + masks (overlapped with the previous step), and the part of them
   * the loop still waited for after that step.
   */
  teacher_ms?: number;
  mask_ms?: number;
  mask_wait_ms?: number;
  /** The balancing scales of the three terms in this step (ema, uncertainty). */
  loss_scale?: number[];
  /** Data parallel: ms of the step spent in gradient all-reduce calls, starting buckets and waiting for them. */
  comm_ms?: number;
}

/** Times of one step's evolved masks, for the metrics (ms). */
export interface EvolvedTimes {
  /** The teacher program on this step's batch (run before the previous step). */
  teacher: number;
  /** The clustering and masks, from the teacher's end to their completion (overlapped with a step). */
  mask: number;
  /** How long the loop waited for them after the previous step (what the masks still cost). */
  maskWait: number;
}

export interface EvalRecord {
  step: number;
  epoch: number;
  which: 'random-init' | 'pretrained';
  knn: Record<number, number>;
  n_train: number;
  n_val: number;
  seconds: number;
}

export type RunStatus = 'done' | 'stopped' | 'interrupted' | 'diverged';

export interface PretrainResult {
  status: RunStatus;
  steps: number;
  /** The precision the steps ran in (--precision resolved: 'auto' becomes what the device took). */
  precision: Precision;
  /** This invocation's training loop (a resumed run: since the resume): its steps and wall seconds,
   * epoch-end evaluations and checkpoints included. */
  trained: { steps: number; seconds: number };
  knn?: Record<number, number>;
  knnRandom?: Record<number, number>;
  /** linear / finetune top-1 (and top-5) of the student and of its random-init twin (pretrain --eval). */
  evals?: FinalEvaluations;
  outDir: string;
}

export interface PretrainOptions {
  events: PretrainEvents;
  /** Resume from a checkpoint file or run folder. */
  resume?: string;
  /** Set by the CLI on SIGINT: the loop finishes the step, checkpoints, and returns 'interrupted'. */
  interrupted?: () => boolean;
  /** Replace the run in config.out (only this program's files are removed); else such a folder is refused. */
  overwrite?: boolean;
  /** The teacher checkpoint's attention heads, when the caller knows them (--teacher-heads). */
  teacherHeads?: number;
}
