// The divergence guard's rule (lib/train/spike-guard.ts): NaN/inf, or a loss or grad norm above
// factor x the median of the last 50 healthy steps, once two steps are known.
import { describe, expect, it } from 'vitest';

import { SPIKE_WINDOW, SpikeGuard } from '../../lib/train/spike-guard.js';

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

describe('spike guard', () => {
  it('lets healthy training through: a falling, noisy loss and a grad norm that rises 10x in warmup', () => {
    const g = new SpikeGuard(100);
    const rnd = lcg(7);
    for (let s = 0; s < 2000; s++) {
      const loss = 5 * Math.exp(-s / 400) * (0.5 + 1.5 * rnd()) + 0.05;
      const grad = (s < 100 ? 3 + s * 0.3 : 33) * (0.3 + 3 * rnd());
      expect(g.check(loss, grad), `step ${s}`).toBeNull();
    }
  });

  it('stops at a finite spike of the loss or of the grad norm, naming value, median and factor', () => {
    const g = new SpikeGuard(100);
    expect(g.check(5.2, 32)).toBeNull();
    expect(g.check(5.3, 31)).toBeNull();
    expect(g.check(6.5e6, 4e6)).toMatch(
      /^the loss 6\.50e\+6 is 1\.24e\+6x the median 5\.25 of the last 2 steps \(--spike-factor 100\)$/,
    );
    // a rejected step does not join the window: the next normal step passes
    expect(g.check(5.1, 30)).toBeNull();
    expect(g.check(5, 3300)).toMatch(/^the grad norm 3\.30e\+3 is 106x the median 31\.0/);
  });

  it('judges nothing before two healthy steps, and NaN/inf always', () => {
    const g = new SpikeGuard(100);
    expect(g.check(1e6, 1e9)).toBeNull();
    expect(g.check(NaN, 1)).toMatch(/the loss is NaN/);
    expect(g.check(1, Infinity)).toMatch(/grad norm Infinity/);
    const off = new SpikeGuard(0);
    for (const v of [1, 1, 1e30]) expect(off.check(v, v)).toBeNull();
    expect(off.check(NaN, 1)).not.toBeNull();
  });

  it('resumes from its saved window with the same decisions, keeping the last 50 values', () => {
    const a = new SpikeGuard(10);
    for (let s = 1; s <= 80; s++) a.check(s, 1);
    const st = a.state();
    expect(st.loss).toHaveLength(SPIKE_WINDOW);
    expect(st.loss[0]).toBe(31);
    const b = new SpikeGuard(10, JSON.parse(JSON.stringify(st)));
    // median of 31..80 is 55.5: 555 passes, 556 is a spike, for both
    for (const v of [555, 556]) expect(b.check(v, 1)).toBe(a.check(v, 1));
    expect(new SpikeGuard(10, st).check(556, 1)).toMatch(/556 is 10\.0x the median 55\.5/);
    // a damaged saved window is ignored rather than trusted
    expect(new SpikeGuard(10, { loss: ['x'], gradNorm: null }).state()).toEqual({ loss: [], gradNorm: [] });
  });
});
