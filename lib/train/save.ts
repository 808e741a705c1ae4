// A run's checkpoint: parameters, AdamW moments, the step and the data position (atomic, see
// lib/io/checkpoint.ts), so that a resumed run reproduces the uninterrupted one. Written by rank 0 of
// a data-parallel run; any world size with the same global batch resumes from it.
//
// A checkpoint is taken (copied off the engine) and written separately: the loop writes an epoch's
// checkpoint only after the next step's loss, computed from those very weights, passed the spike
// guard (a diverging run is often still finite at the step that wrecks its weights).
import { saveCheckpoint, type TrainState } from '../io/checkpoint.js';
import type { TrainRun } from './setup.js';

export interface TakenCheckpoint {
  reason: string;
  state: TrainState;
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

/**
 * A copy of the run's state now (step, data position, bookkeeping with the spike guard's window and the
 * balancer's state, parameters, AdamW moments); null on the ranks other than 0, which write no checkpoint
 * (every rank holds the same parameters, moments, guard and balancer: they all see the averaged losses).
 */
export function takeCheckpoint(run: TrainRun, reason: string): TakenCheckpoint | null {
  const { c, state, progress: p } = run;
  p.extra.globalBatch = run.plan.globalBatch;
  if (!run.world.isRoot) return null;
  const extra = JSON.parse(JSON.stringify({ ...p.extra, balance: run.balancer.state() })) as Record<string, unknown>;
  const st: TrainState = {
    step: p.step,
    epoch: p.position.epoch,
    dataPosition: { ...p.position },
    seed: c.seed,
    config: { ...c },
    paramTable: run.table,
    extra,
  };
  return {
    reason,
    state: st,
    params: state.get('params').read() as Float32Array,
    m: state.get('adam_m').read() as Float32Array,
    v: state.get('adam_v').read() as Float32Array,
  };
}

export function writeCheckpoint(run: TrainRun, ck: TakenCheckpoint): void {
  const p = run.progress;
  p.lastCheckpoint = saveCheckpoint(run.ckptDir, ck);
  run.ev.info(`checkpoint (${ck.reason}): ${p.lastCheckpoint}`);
}

export function saveRunCheckpoint(run: TrainRun, reason: string): void {
  const ck = takeCheckpoint(run, reason);
  if (ck) writeCheckpoint(run, ck);
}
