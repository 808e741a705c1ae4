// Learning-rate and weight-decay schedules of the MEDiC recipe (docs/METHOD.md, Recipe):
// linear warmup from warmupLr to the peak, then per-step cosine to minLr; weight decay cosine from
// its start value to its end value over the whole run. Peak lr = baseLr * batch / lrBatchRef
// (1.5e-3 per 2048 images).

export interface ScheduleConfig {
  baseLr: number;
  lrBatchRef: number;
  batchSize: number;
  warmupSteps: number;
  totalSteps: number;
  warmupLr: number;
  minLr: number;
  weightDecay: number;
  weightDecayEnd: number;
}

export function peakLr(c: ScheduleConfig): number {
  return (c.baseLr * c.batchSize) / c.lrBatchRef;
}

function cosine(from: number, to: number, t: number): number {
  return to + 0.5 * (from - to) * (1 + Math.cos(Math.PI * Math.min(1, Math.max(0, t))));
}

/** Learning rate for 0-based `step`. */
export function lrAt(c: ScheduleConfig, step: number): number {
  const peak = peakLr(c);
  if (step < c.warmupSteps) return c.warmupLr + ((peak - c.warmupLr) * step) / c.warmupSteps;
  const span = Math.max(1, c.totalSteps - c.warmupSteps);
  return cosine(peak, c.minLr, (step - c.warmupSteps) / span);
}

/** Weight decay for 0-based `step`. */
export function weightDecayAt(c: ScheduleConfig, step: number): number {
  return cosine(c.weightDecay, c.weightDecayEnd, step / Math.max(1, c.totalSteps));
}
