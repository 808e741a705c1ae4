// attention_probs (the head-averaged attention map of one block, CLS row and column dropped) against
// the float64 PyTorch fixture (test/fixtures/gen/attention_probs.py); rows that keep the softmax mass
// when nothing is dropped; thread-count independence; bad calls.
import { describe, expect, it } from 'vitest';

import { f32, loadFixture, maxAbsErr, randomF32, relErr, runOp, useEngines } from '../helpers/parity.js';

const fx = loadFixture('attention_probs');
const engineOf = useEngines();

describe('attention_probs', () => {
  const names = Object.keys(fx.cases);
  it('the fixture has its cases', () => expect(names.length).toBeGreaterThanOrEqual(4));

  for (const name of names) {
    const { B, T, H, Hd, prefix, scale } = fx.cases[name];
    it(`${name}: matches torch (B=${B}, T=${T}, H=${H}, Hd=${Hd}, prefix=${prefix})`, () => {
      const N = T - prefix;
      const attrs = { heads: H, prefix, ...(scale !== undefined ? { scale } : {}) };
      const [p] = runOp('attention_probs', [f32([B, T, 3 * H * Hd], fx.f32(`${name}.qkv`))], [f32([B, N, N])], attrs);
      expect(relErr(p, fx.f64(`${name}.p`))).toBeLessThan(1e-5);
    });
  }

  it('with prefix 0 every row is a probability distribution; with the CLS dropped rows sum below 1', () => {
    const B = 2, T = 6, H = 2, Hd = 4;
    const qkv = randomF32(B * T * 3 * H * Hd, 3, 2);
    const [full] = runOp('attention_probs', [f32([B, T, 3 * H * Hd], qkv)], [f32([B, T, T])], { heads: H, prefix: 0 });
    const [cut] = runOp('attention_probs', [f32([B, T, 3 * H * Hd], qkv)], [f32([B, T - 1, T - 1])], { heads: H });
    for (let r = 0; r < B * T; r++) expect(Array.from(full.subarray(r * T, r * T + T)).reduce((a, v) => a + v, 0)).toBeCloseTo(1, 5);
    // The dropped-CLS map is the full map's lower-right block.
    for (let b = 0; b < B; b++)
      for (let i = 1; i < T; i++)
        for (let j = 1; j < T; j++) expect(cut[(b * (T - 1) + i - 1) * (T - 1) + j - 1]).toBeCloseTo(full[(b * T + i) * T + j], 6);
  });

  it('the same bits with 1 and 3 threads', () => {
    const B = 3, T = 50, H = 3, Hd = 16;
    const qkv = randomF32(B * T * 3 * H * Hd, 5);
    const run = (t: number) => runOp('attention_probs', [f32([B, T, 3 * H * Hd], qkv)], [f32([B, T - 1, T - 1])], { heads: H }, engineOf(t))[0];
    expect(maxAbsErr(run(1), run(3))).toBe(0);
  });

  it('bad calls name the op, the slot or attr, what was expected and found', () => {
    const qkv = f32([1, 5, 12], randomF32(60, 1));
    expect(() => runOp('attention_probs', [qkv], [f32([1, 4, 4])], {})).toThrow(/attention_probs: attr heads is required/);
    expect(() => runOp('attention_probs', [qkv], [f32([1, 5, 5])], { heads: 2 })).toThrow(/attention_probs: output 0 must have shape \[1, 4, 4\], got \[1, 5, 5\]/);
    expect(() => runOp('attention_probs', [qkv], [f32([1, 4, 4])], { heads: 5 })).toThrow(/qkv last dim 12 is not 3 \* heads \* head_dim with heads=5/);
    expect(() => runOp('attention_probs', [qkv], [f32([1, 0, 0])], { heads: 2, prefix: 5 })).toThrow(/attr prefix must be in \[0, T\) with T=5, got 5/);
  });
});
