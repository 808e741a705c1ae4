import { describe, expect, it } from 'vitest';

import { lrAt, peakLr, weightDecayAt, type ScheduleConfig } from '../../lib/train/schedule.js';

const c: ScheduleConfig = {
  baseLr: 1.5e-3,
  lrBatchRef: 2048,
  batchSize: 1024,
  warmupSteps: 100,
  totalSteps: 1100,
  warmupLr: 1e-5,
  minLr: 1e-5,
  weightDecay: 0.05,
  weightDecayEnd: 0,
};

describe('schedules', () => {
  it('scales the peak lr linearly with batch', () => {
    expect(peakLr(c)).toBeCloseTo(7.5e-4, 12);
    expect(peakLr({ ...c, batchSize: 256 })).toBeCloseTo(1.875e-4, 12);
  });

  it('warms up linearly from warmupLr, peaks, then follows a cosine down to minLr', () => {
    expect(lrAt(c, 0)).toBeCloseTo(1e-5, 12);
    expect(lrAt(c, 50)).toBeCloseTo(1e-5 + (7.5e-4 - 1e-5) / 2, 12);
    expect(lrAt(c, 100)).toBeCloseTo(7.5e-4, 12);
    expect(lrAt(c, 600)).toBeCloseTo((7.5e-4 + 1e-5) / 2, 12); // half-way through the cosine
    expect(lrAt(c, 1100)).toBeCloseTo(1e-5, 12);
    for (let s = 101; s < 1100; s++) expect(lrAt(c, s)).toBeLessThanOrEqual(lrAt(c, s - 1));
  });

  it('decays weight decay by a cosine from its start to its end value', () => {
    expect(weightDecayAt(c, 0)).toBeCloseTo(0.05, 12);
    expect(weightDecayAt(c, 550)).toBeCloseTo(0.025, 12);
    expect(weightDecayAt(c, 1100)).toBeCloseTo(0, 12);
  });
});
