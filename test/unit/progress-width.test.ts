// The progress bar fits the terminal (issue 10, item 13): a redraw longer than the terminal wraps, and
// every later \r redraw then leaves the wrapped part behind.
import { afterEach, describe, expect, it, vi } from 'vitest';

import { Progress } from '../../lib/cli/progress.js';

function terminal(columns: number): { stream: NodeJS.WriteStream; draws: () => string[] } {
  let out = '';
  const stream = { isTTY: true, columns, write: (s: string) => ((out += s), true) } as unknown as NodeJS.WriteStream;
  // what each redraw shows: the text after \r, without the erase-to-end-of-line sequence
  return {
    stream,
    draws: () =>
      out
        .split('\r')
        .slice(1)
        .map((d) => d.split('\x1b[K').join('').replace(/\n$/, '')),
  };
}

// the default run's line at its widest: 40 epochs of 70 steps, four-digit img/s, an ETA over ten minutes
const wide = { epoch: 39, epochs: 40, step: 70, steps: 70, loss: 0.123456, imagesPerSec: 1234.56, etaSec: 754 };

describe('progress bar width', () => {
  afterEach(() => vi.unstubAllEnvs());

  for (const columns of [80, 60]) {
    it(`fits a ${columns}-column terminal, keeping epoch, step, loss and ETA`, () => {
      vi.stubEnv('CI', '');
      const t = terminal(columns);
      const p = new Progress(t.stream);
      p.update(wide, true);
      p.update({ ...wide, step: 35 }, true);
      const draws = t.draws();
      expect(draws).toHaveLength(2);
      for (const d of draws) {
        // the last column stays free: some terminals wrap when it is written
        expect(d.length, d).toBeLessThan(columns);
        expect(d).toContain('epoch 40/40');
        expect(d).toMatch(/step (70|35)\/70/);
        expect(d).toContain('loss 0.1235');
        expect(d).toContain('12:34');
      }
      expect(draws[0]).toContain('#');
    });
  }

  it('keeps the essentials on a very narrow terminal', () => {
    vi.stubEnv('CI', '');
    const t = terminal(30);
    const p = new Progress(t.stream);
    p.update(wide, true);
    const [d] = t.draws();
    expect(d.length, d).toBeLessThan(30);
    expect(d).toContain('loss 0.1235');
  });
});
