// A run's checkpoint: parameters, AdamW moments, the step and the data position (atomic, see
// lib/io/checkpoint.ts), so that a resumed run reproduces the uninterrupted one.
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

/** A copy of the run's state now (step, data position, bookkeeping, parameters, AdamW moments). */
export function takeCheckpoint(run: TrainRun, reason: string): TakenCheckpoint {
  const { c, state, progress: p } = run;
  const extra = JSON.parse(JSON.stringify({ ...p.extra, balance: run.balancer.state() })) as Record<string, unknown>;
  const st: TrainState = { step: p.step, epoch: p.position.epoch, dataPosition: { ...p.position }, seed: c.seed, config: { ...c }, paramTable: run.table, extra };
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
  writeCheckpoint(run, takeCheckpoint(run, reason));
}
