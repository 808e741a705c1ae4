// spellDuration: the end-of-run line's and the report's durations, as a person says them.
import { describe, expect, it } from 'vitest';

import { spellDuration } from '../../lib/util/duration.js';

describe('spellDuration', () => {
  it('tenths under 10 s, whole seconds under a minute, then minutes and seconds, then hours and minutes', () => {
    expect(spellDuration(0.84)).toBe('0.8 s');
    expect(spellDuration(9.94)).toBe('9.9 s');
    expect(spellDuration(9.96)).toBe('10 s');
    expect(spellDuration(45.4)).toBe('45 s');
    expect(spellDuration(59.6)).toBe('1 min 0 s');
    expect(spellDuration(142)).toBe('2 min 22 s');
    expect(spellDuration(3725)).toBe('1 h 02 min');
    expect(spellDuration(NaN)).toBe('unknown time');
    expect(spellDuration(-1)).toBe('unknown time');
  });
});
