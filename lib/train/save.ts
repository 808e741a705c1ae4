// A run's checkpoint: parameters, AdamW moments, the step and the data position (atomic, see
// lib/io/checkpoint.ts), so that a resumed run reproduces the uninterrupted one. Written by rank 0 of
// a data-parallel run; any world size with the same global batch resumes from it.
import { saveCheckpoint, type TrainState } from '../io/checkpoint.js';
import type { TrainRun } from './setup.js';

export function saveRunCheckpoint(run: TrainRun, reason: string): void {
  const { c, state, progress: p } = run;
  // Every rank holds the same parameters and moments; rank 0 alone writes them.
  p.extra.globalBatch = run.plan.globalBatch;
  if (!run.world.isRoot) return;
  const st: TrainState = { step: p.step, epoch: p.position.epoch, dataPosition: p.position, seed: c.seed, config: { ...c }, paramTable: run.table, extra: p.extra };
  p.lastCheckpoint = saveCheckpoint(run.ckptDir, {
    state: st,
    params: state.get('params').read() as Float32Array,
    m: state.get('adam_m').read() as Float32Array,
    v: state.get('adam_v').read() as Float32Array,
  });
  run.ev.info(`checkpoint (${reason}): ${p.lastCheckpoint}`);
}
