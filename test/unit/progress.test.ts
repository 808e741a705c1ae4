import { afterEach, describe, expect, it, vi } from 'vitest';

import { formatDuration, Progress } from '../../lib/cli/progress.js';

function sink(isTTY: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  let out = '';
  const stream = { isTTY, write: (s: string) => ((out += s), true) } as unknown as NodeJS.WriteStream;
  return { stream, text: () => out };
}
const at = (step: number, steps = 50) => ({
  epoch: 0,
  epochs: 2,
  step,
  steps,
  loss: 0.5,
  imagesPerSec: 100,
  etaSec: 75,
});

describe('progress display', () => {
  afterEach(() => vi.unstubAllEnvs());

  it('redraws the bar at most every 100 ms, and always at the end of an epoch', () => {
    vi.stubEnv('CI', '');
    const s = sink(true);
    const p = new Progress(s.stream);
    for (let i = 1; i <= 50; i++) p.update(at(i));
    const draws = s.text().split('\r').slice(1);
    expect(draws).toHaveLength(2); // the first step, then the epoch's last (all within 100 ms)
    expect(draws[1]).toContain('[########################] epoch 1/2 step 50/50 loss 0.5000 100.0 img/s ETA 1:15');
    p.clear();
    expect(s.text().endsWith('\n')).toBe(true);
  });

  it('prints plain lines at its interval when not a terminal (or under CI), whatever the step', () => {
    vi.stubEnv('CI', '1');
    const s = sink(true);
    const p = new Progress(s.stream, 10_000);
    for (let i = 1; i <= 50; i++) p.update(at(i));
    p.update(at(50), true);
    expect(s.text()).toBe(
      'epoch 1/2 step 1/50 loss 0.5000 100.0 img/s ETA 1:15\n' +
        'epoch 1/2 step 50/50 loss 0.5000 100.0 img/s ETA 1:15\n',
    );
  });

  it('formats durations', () => {
    expect(formatDuration(75)).toBe('1:15');
    expect(formatDuration(3725)).toBe('1:02:05');
    expect(formatDuration(NaN)).toBe('--:--');
  });
});
