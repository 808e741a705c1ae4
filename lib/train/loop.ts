// The step loop: for each step, the next batch, its masks and schedule values go into one
// Program.run (teacher, student, decoder, fused losses, backward, grad norm, AdamW all native); the
// losses come back as metrics and progress; epoch ends bring evaluations and checkpoints.
//
// Everything random is keyed by (seed, step) or (seed, epoch, sample), so a resumed run reproduces
// the uninterrupted one. Data parallel: each rank decodes its share of the global batch, masks and
// drop path are drawn by the sample's place in the global batch, the step averages gradients and
// losses over ranks (lib/train/distributed.ts), and rank 0 alone writes metrics and checkpoints.
import { closeSync, existsSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

import type { Batch } from '../data/index.js';
import type { Program } from '../engine/index.js';
import type { TrainEvaluator } from './evaluation.js';
import type { RunStatus, StepMetrics } from './events.js';

import { teacherProgram } from './build.js';
import { BatchFeed } from './feed.js';
import { EvolvedLookahead } from './lookahead.js';
import { stepMasks } from './masking.js';
import { saveRunCheckpoint, takeCheckpoint, writeCheckpoint, type TakenCheckpoint } from './save.js';
import { SpikeGuard } from './spike-guard.js';
import { lrAt, weightDecayAt } from './schedule.js';
import type { TrainRun } from './setup.js';

const SEED_STREAM_DROP_PATH = 0x64726f70; // 'drop'

type StepInputs = Record<string, Uint8Array | Int32Array | Float32Array>;

/** What one native step returned. */
interface StepOutcome {
  losses: Float32Array;
  gradNorm: number;
  /** The balancing scales this step used (ema: fed in; uncertainty: read back), else undefined. */
  lossScale?: Float32Array;
  hyper: Float32Array;
  stepMs: number;
  /** Data parallel: time this step spent in its all-reduce calls (starting buckets, waiting for them). */
  commMs?: number;
}

/** Runs steps until the end of training, a stop, an interrupt or a divergence. */
export async function runSteps(
  run: TrainRun,
  evaluator: TrainEvaluator,
  interrupted?: () => boolean,
): Promise<RunStatus> {
  const { c, progress: p, plan } = run;
  const program = run.state.program();
  // Evolved masking: the teacher's attention decides the masks, so the teacher runs as its own program,
  // one batch ahead, and the masks are clustered while the previous step runs (lookahead.ts).
  const teacher = c.mask === 'evolved' ? teacherProgram(c, run.state) : null;
  const metricsPath = join(c.out, 'metrics.jsonl');
  // A resumed run continues metrics.jsonl from its checkpoint: records past it (logged before a crash,
  // a second Ctrl-C or a divergence) are dropped so that no step appears twice.
  if (run.world.isRoot) keepMetricsUpTo(metricsPath, run.resumed ? p.step : 0);
  const metricsFd = run.world.isRoot ? openSync(metricsPath, 'a') : -1;
  const feed = new BatchFeed(run);
  const lookahead = teacher ? new EvolvedLookahead(run, teacher, feed) : null;
  const fault = faultInjection(run);
  const clock = { stepsThisRun: 0, start: performance.now() };
  // The guard's window travels in checkpoints, so a resumed run judges its steps as the uninterrupted one.
  const guard = new SpikeGuard(c.spikeFactor, p.extra.guard);
  const pending: { ck: TakenCheckpoint | null } = { ck: null };
  try {
    let masks: StepInputs = lookahead ? {} : maskInputsAt(run, p.step);
    while (p.step < plan.totalSteps) {
      const epoch = Math.floor(p.step / plan.stepsPerEpoch);
      let batch: Batch;
      if (lookahead) {
        const cur = await lookahead.take(p.step);
        ({ batch, inputs: masks } = cur);
        run.evolvedMs = cur.times;
        await lookahead.prepareAhead(p.step + 1); // the next batch's teacher, then its clustering during this step
      } else batch = await feed.next(epoch);
      const running = runStep(run, program, batch, masks);
      if (!lookahead) masks = maskInputsAt(run, p.step + 1); // the next step's masks, made while this step runs natively
      const out = await running;
      fault?.(p.step + 1);
      // Data parallel: every rank decides alike (the losses are averaged over the ranks and the grad norm
      // is that of the all-reduced gradient), so no rank stops alone.
      const why = guard.check(out.losses[0], out.gradNorm);
      if (why) {
        reportDivergence(run, out, why, pending.ck);
        return 'diverged';
      }
      // this step's loss was computed from the pending checkpoint's weights: they are healthy
      if (pending.ck) writeCheckpoint(run, pending.ck);
      pending.ck = null;
      p.extra.guard = guard.state();
      run.balancer.observe(out.losses);
      p.step += 1;
      clock.stepsThisRun += 1;
      p.position = batch.next;
      const epochDone = p.step - epoch * plan.stepsPerEpoch === plan.stepsPerEpoch;
      report(run, metricsFd, clock, epoch, epochDone, batch, out);
      const status = stopRequest(run, clock.stepsThisRun, interrupted);
      if (epochDone) pending.ck = await endEpoch(run, evaluator, epoch + 1, status);
      if (status !== 'done') {
        saveRunCheckpoint(run, status === 'interrupted' ? 'interrupted' : `stop after ${c.stopAfter} steps`);
        return status;
      }
    }
    return 'done';
  } finally {
    run.trained = { steps: clock.stepsThisRun, seconds: (performance.now() - clock.start) / 1000 };
    if (metricsFd >= 0) closeSync(metricsFd);
    await lookahead?.close();
    await feed.close();
    program.dispose();
    teacher?.dispose();
  }
}

function maskInputsAt(run: TrainRun, step: number): Record<string, Uint8Array | Int32Array> {
  const { c } = run;
  const grid = c.imgSize / c.patchSize;
  if (c.mask === 'evolved') throw new Error('maskInputsAt: evolved masks come from the teacher program');
  // Data parallel: rows are drawn by their index in the global batch, as in one process.
  const row0 = run.world.rank * c.batchSize;
  return stepMasks(
    { kind: c.mask, ratio: c.maskRatio, gridH: grid, gridW: grid },
    run.medic,
    c.batchSize,
    c.seed,
    step,
    row0,
  );
}

/** Starts one native step (the Promise resolves when it is done). */
async function runStep(run: TrainRun, program: Program, batch: Batch, masks: StepInputs): Promise<StepOutcome> {
  const { c, plan, progress: p } = run;
  const t0 = performance.now();
  const hyper = Float32Array.from([lrAt(plan.sched, p.step), weightDecayAt(plan.sched, p.step), p.step + 1]);
  const seed = Int32Array.from([c.seed ^ SEED_STREAM_DROP_PATH, p.step]);
  const inputNames = run.cg.inputs.map((i) => i.name);
  const balance = run.balancer.inputs();
  const before = run.engine.commStats();
  const r = await program.run(pick({ images: batch.images, ...masks, hyper, seed, ...balance }, inputNames));
  const gradNorm = (r.outputs.grad_norm as Float32Array)[0];
  const after = run.engine.commStats();
  const commMs = before && after ? after.startMs + after.waitMs - before.startMs - before.waitMs : undefined;
  const lossScale = balance.loss_scale ?? (r.outputs.loss_scale as Float32Array | undefined);
  return {
    losses: r.outputs.losses as Float32Array,
    gradNorm,
    lossScale,
    hyper,
    stepMs: performance.now() - t0,
    commMs,
  };
}

/**
 * A non-finite or spiking loss or gradient norm (SpikeGuard) ends the run. The checkpoint taken at the
 * epoch end before it is dropped (this step measured its weights), the last good one is kept.
 */
function reportDivergence(run: TrainRun, out: StepOutcome, why: string, dropped: TakenCheckpoint | null): void {
  const last = run.progress.lastCheckpoint;
  run.ev.warn(
    `step ${run.progress.step + 1}: ${why}: training diverged. ` +
      (dropped ? `The state at step ${dropped.state.step} (${dropped.reason}) was not checkpointed. ` : '') +
      (last ? `The last good checkpoint is kept: ${last}; ` : 'No checkpoint was written before it; ') +
      `lower --lr (now ${run.c.lr}) or raise --warmup-epochs${last ? `, then --resume ${run.c.out}` : ''}.`,
  );
}

/** Metrics (every --log-every steps and at epoch ends) and progress (every step). */
function report(
  run: TrainRun,
  metricsFd: number,
  clock: { stepsThisRun: number; start: number },
  epoch: number,
  epochDone: boolean,
  batch: Batch,
  out: StepOutcome,
): void {
  const { c, plan, ev } = run;
  const step = run.progress.step;
  const B = plan.globalBatch;
  const { losses, hyper, stepMs } = out;
  const m: StepMetrics = {
    step,
    epoch,
    loss: losses[0],
    l_tok: losses[1],
    l_cls: losses[2],
    l_pix: losses[3],
    grad_norm: out.gradNorm,
    lr: hyper[0],
    wd: hyper[1],
    step_ms: stepMs,
    wait_ms: batch.waitMs,
    img_s: (B * 1000) / (stepMs + batch.waitMs + (run.evolvedMs ? run.evolvedMs.teacher + run.evolvedMs.maskWait : 0)),
  };
  const e = run.evolvedMs;
  if (e) Object.assign(m, { teacher_ms: e.teacher, mask_ms: e.mask, mask_wait_ms: e.maskWait });
  if (out.lossScale) m.loss_scale = Array.from(out.lossScale);
  if (out.commMs !== undefined) m.comm_ms = out.commMs;
  if (c.logEvery === 0 || step % c.logEvery === 0 || epochDone) {
    if (metricsFd >= 0) writeSync(metricsFd, JSON.stringify(m) + '\n');
    ev.metrics(m);
  }
  const rate = (clock.stepsThisRun * B) / Math.max((performance.now() - clock.start) / 1000, 1e-9);
  const epochSteps = step - epoch * plan.stepsPerEpoch;
  ev.progress({
    epoch,
    epochs: c.epochs,
    step: epochSteps,
    steps: plan.stepsPerEpoch,
    loss: losses[0],
    imagesPerSec: rate,
    etaSec: ((plan.totalSteps - step) * B) / rate,
  });
}

/**
 * 'interrupted' after Ctrl-C, 'stopped' after --stop-after steps (unless the run just ended), else
 * 'done'. Data parallel: a Ctrl-C seen by any rank stops every rank after the same step.
 */
function stopRequest(run: TrainRun, stepsThisRun: number, interrupted?: () => boolean): RunStatus {
  const stop = !!interrupted?.();
  if (run.world.distributed ? run.world.any(stop) : stop) return 'interrupted';
  const { c } = run;
  if (c.stopAfter > 0 && stepsThisRun >= c.stopAfter && run.progress.step < run.plan.totalSteps) return 'stopped';
  return 'done';
}

/**
 * The end of epoch `done` (counted from 1): the data position moves to the next epoch, then the
 * epoch's evaluation and checkpoint (returned, to be written after the next step). A --stop-after run still does its epoch's evaluation, so that
 * stopping and resuming yields the records of an uninterrupted run; Ctrl-C skips it. The final epoch
 * is handled by finishRun.
 */
async function endEpoch(
  run: TrainRun,
  evaluator: TrainEvaluator,
  done: number,
  status: RunStatus,
): Promise<TakenCheckpoint | null> {
  const { c, progress: p } = run;
  p.position = { epoch: done, index: 0 };
  if (p.step >= run.plan.totalSteps || status === 'interrupted') return null;
  if (c.evalEvery > 0 && done % c.evalEvery === 0) await evaluator.evaluate('pretrained', done);
  // taken now, written once the next step has shown these weights healthy (see save.ts)
  if (status === 'done' && c.checkpointEvery > 0 && done % c.checkpointEvery === 0)
    return takeCheckpoint(run, `epoch ${done}`);
  return null;
}

/**
 * A test hook for fault handling (docs/DISTRIBUTED.md): MEDIC_FAULT=kill:<rank>:<step> makes that rank
 * kill itself (SIGKILL) right after that step, as a crashed or preempted process would;
 * MEDIC_FAULT=stall:<rank>:<step> stops it (SIGSTOP), as a hung process would.
 */
function faultInjection(run: TrainRun): ((step: number) => void) | null {
  const m = /^(kill|stall):(\d+):(\d+)$/.exec(process.env.MEDIC_FAULT ?? '');
  if (!m || Number(m[2]) !== run.world.rank) return null;
  const at = Number(m[3]);
  return (step) => {
    if (step === at) process.kill(process.pid, m[1] === 'kill' ? 'SIGKILL' : 'SIGSTOP');
  };
}

function pick(o: StepInputs, keys: string[]): StepInputs {
  const out: StepInputs = {};
  for (const k of keys) {
    if (!(k in o)) throw new Error(`pretrain: the step needs input '${k}', which the loop does not produce`);
    out[k] = o[k];
  }
  return out;
}

/** Truncates metrics.jsonl to the records of steps <= `step` (0: empties it). */
function keepMetricsUpTo(path: string, step: number): void {
  if (!existsSync(path)) return;
  const stepOf = (line: string): number => {
    try {
      return (JSON.parse(line) as StepMetrics).step;
    } catch {
      return Infinity; // a line cut short by a kill
    }
  };
  const kept =
    step === 0
      ? []
      : readFileSync(path, 'utf8')
          .split('\n')
          .filter((l) => l && stepOf(l) <= step);
  writeFileSync(path, kept.map((l) => l + '\n').join(''));
}
