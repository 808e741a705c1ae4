// init_normal (truncated normal by inverse CDF) and init_uniform from the counter-based RNG: the exact
// (seed, stream, index) -> value mapping (recomputed here from rng.h with BigInt), distribution
// statistics, truncation bounds, determinism across thread counts and bad calls.
import { afterAll, describe, expect, it } from 'vitest';

import { Engine, type Attrs } from '../../lib/engine/index.js';
import { cpuEngine, poisoned } from '../helpers/parity.js';

const engine = cpuEngine();
afterAll(() => engine.dispose());

// --- rng.h in BigInt -------------------------------------------------------------------------
const MASK = (1n << 64n) - 1n;
function mix64(z: bigint): bigint {
  z = (z + 0x9e3779b97f4a7c15n) & MASK;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
  return z ^ (z >> 31n);
}
function rngBits(seed: number, stream: number, index: number): bigint {
  const s = BigInt(seed) ^ mix64((BigInt(stream) + 0x632be59bd9b4e019n) & MASK);
  return mix64((mix64(s) + BigInt(index)) & MASK);
}
const uniformOpen = (seed: number, stream: number, i: number) => (Number(rngBits(seed, stream, i) >> 11n) + 0.5) / 2 ** 53;
const uniform24 = (seed: number, stream: number, i: number) => Number(rngBits(seed, stream, i) >> 40n) / 2 ** 24;

// --- the standard normal in double: erf by its Taylor series (|x| < 4: ~1e-13), +-1 beyond --------
function erf(x: number): number {
  if (x > 4) return 1; // 1 - erf(4) < 2e-8: below every tolerance used here
  if (x < -4) return -1;
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (-x * x) / n;
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
const Phi = (z: number) => 0.5 * (1 + erf(z / Math.SQRT2));
const phi = (z: number) => Math.exp(-0.5 * z * z) / Math.sqrt(2 * Math.PI);

/** Mean and std of normal(mean, std) truncated to [lo, hi]. */
function truncStats(mean: number, std: number, lo: number, hi: number): { mean: number; std: number } {
  const a = (lo - mean) / std;
  const b = (hi - mean) / std;
  const Z = Phi(b) - Phi(a);
  const pa = Math.abs(a) > 30 ? 0 : phi(a);
  const pb = Math.abs(b) > 30 ? 0 : phi(b);
  const r = (pa - pb) / Z;
  const v = 1 + ((Math.abs(a) > 30 ? 0 : a * pa) - (Math.abs(b) > 30 ? 0 : b * pb)) / Z - r * r;
  return { mean: mean + std * r, std: std * Math.sqrt(v) };
}

function stats(x: Float32Array): { mean: number; std: number; min: number; max: number } {
  let s = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const v of x) {
    s += v;
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  const mean = s / x.length;
  let q = 0;
  for (const v of x) q += (v - mean) ** 2;
  return { mean, std: Math.sqrt(q / (x.length - 1)), min, max };
}

/** Kolmogorov-Smirnov distance between a sample and a CDF. */
function ksDistance(x: Float32Array, cdf: (v: number) => number): number {
  const s = Float64Array.from(x).sort();
  let d = 0;
  for (let i = 0; i < s.length; i++) {
    const F = cdf(s[i]);
    d = Math.max(d, Math.abs(F - i / s.length), Math.abs(F - (i + 1) / s.length));
  }
  return d;
}

function init(e: Engine, op: 'init_normal' | 'init_uniform', n: number, attrs: Attrs): Float32Array {
  using x = poisoned(e, [n]);
  e.op(op, [], [x], attrs);
  return x.read();
}

const N = 100_003;
// KS critical value at 0.1% for n = 1e5 is 1.95 / sqrt(n) = 0.0062; the draws are fixed, so no flakes.
const KS = 0.0062;

describe('init_normal', () => {
  const cases: [string, Attrs][] = [
    ['standard, bounds +-2', { seed: 1 }],
    ['timm ViT std 0.02, bounds +-2 (100 sigma)', { seed: 2, std: 0.02 }],
    ['asymmetric mean 0.5, [0, 3]', { seed: 3, stream: 5, mean: 0.5, std: 1, lo: 0, hi: 3 }],
    ['narrow: std 2, [-0.5, 0.25]', { seed: 4, std: 2, lo: -0.5, hi: 0.25 }],
  ];
  for (const [label, attrs] of cases) {
    it(`has the truncated-normal distribution: ${label}`, () => {
      const mean = (attrs.mean as number) ?? 0;
      const std = (attrs.std as number) ?? 1;
      const lo = (attrs.lo as number) ?? -2;
      const hi = (attrs.hi as number) ?? 2;
      const x = init(engine, 'init_normal', N, attrs);
      const st = stats(x);
      const ref = truncStats(mean, std, lo, hi);
      expect(Math.abs(st.mean - ref.mean)).toBeLessThan(0.015 * ref.std);
      expect(Math.abs(st.std - ref.std) / ref.std).toBeLessThan(0.01);
      expect(st.min).toBeGreaterThanOrEqual(Math.fround(lo));
      expect(st.max).toBeLessThanOrEqual(Math.fround(hi));
      const Fa = Phi((lo - mean) / std);
      const Fb = Phi((hi - mean) / std);
      const d = ksDistance(x, (v) => (Phi((v - mean) / std) - Fa) / (Fb - Fa));
      expect(d).toBeLessThan(KS);
    });
  }

  it('maps (seed, stream, i) to mean + std * Phi^-1(u_i) exactly as rng.h defines u_i', () => {
    const attrs = { seed: 2 ** 40 + 12345, stream: 17, mean: 0.25, std: 0.5, lo: -0.5, hi: 1.5 };
    const x = init(engine, 'init_normal', 3001, attrs);
    const Fa = Phi((attrs.lo - attrs.mean) / attrs.std);
    const Fb = Phi((attrs.hi - attrs.mean) / attrs.std);
    let worst = 0;
    for (let i = 0; i < x.length; i++) {
      const u = Fa + (Fb - Fa) * uniformOpen(attrs.seed, attrs.stream, i);
      // f32 rounding of x moves Phi by at most phi * ulp / std ~ 5e-8 (measured worst: 2e-8)
      worst = Math.max(worst, Math.abs(Phi((x[i] - attrs.mean) / attrs.std) - u));
    }
    expect(worst).toBeLessThan(1e-7);
  });

  it('is a pure function of the index: a prefix, any thread count, same seed -> the same bits', () => {
    const big = init(engine, 'init_normal', 50_001, { seed: 9, stream: 2 });
    const small = init(engine, 'init_normal', 197, { seed: 9, stream: 2 });
    expect(Array.from(small)).toEqual(Array.from(big.subarray(0, 197)));
    using e1 = Engine.create({ device: 'cpu', threads: 1 });
    using e2 = Engine.create({ device: 'cpu', threads: 2 });
    const a = init(e1, 'init_normal', 50_001, { seed: 9, stream: 2 });
    const b = init(e2, 'init_normal', 50_001, { seed: 9, stream: 2 });
    expect(Buffer.from(a.buffer).equals(Buffer.from(big.buffer))).toBe(true);
    expect(Buffer.from(b.buffer).equals(Buffer.from(big.buffer))).toBe(true);
  });

  it('differs between streams and between seeds', () => {
    const a = init(engine, 'init_normal', 1000, { seed: 9, stream: 0 });
    const b = init(engine, 'init_normal', 1000, { seed: 9, stream: 1 });
    const c = init(engine, 'init_normal', 1000, { seed: 10, stream: 0 });
    const same = (p: Float32Array, q: Float32Array) => p.filter((v, i) => v === q[i]).length;
    expect(same(a, b)).toBeLessThan(5);
    expect(same(a, c)).toBeLessThan(5);
  });

  it('writes every element of odd sizes (1, 7, 197)', () => {
    for (const n of [1, 7, 197]) {
      const x = init(engine, 'init_normal', n, { seed: 1 });
      expect(x.every((v) => Number.isFinite(v) && v >= -2 && v <= 2)).toBe(true);
    }
  });

  it('rejects bad calls with clear errors', () => {
    using x = engine.tensor([4]);
    using xi = engine.tensor([4], 'i32');
    expect(() => engine.op('init_normal', [], [x], {})).toThrow(/init_normal: attr seed is required/);
    expect(() => engine.op('init_normal', [], [x], { seed: 1, std: 0 })).toThrow(/attr std must be positive/);
    expect(() => engine.op('init_normal', [], [x], { seed: 1, lo: 1, hi: 1 })).toThrow(/attr lo must be below hi/);
    expect(() => engine.op('init_normal', [], [xi], { seed: 1 })).toThrow(/init_normal: output 0 must be f32/);
    expect(() => engine.op('init_normal', [], [x], { seed: -1 })).toThrow(/init_normal: attr seed must be an integer in \[0, 2\^53\)/);
    expect(() => engine.op('init_normal', [], [x], { seed: 1.5 })).toThrow(/attr seed must be an integer/);
    expect(() => engine.op('init_normal', [], [x], { seed: 1, stream: 2 ** 53 })).toThrow(/attr stream must be an integer/);
  });
});

describe('init_uniform', () => {
  it('maps (seed, stream, i) to lo + (hi - lo) u_i exactly (24-bit u_i of rng.h)', () => {
    const attrs = { seed: 77, stream: 3, lo: -0.3, hi: 0.7 };
    const x = init(engine, 'init_uniform', 2003, attrs);
    for (let i = 0; i < x.length; i++) expect(x[i]).toBe(Math.fround(attrs.lo + (attrs.hi - attrs.lo) * uniform24(attrs.seed, attrs.stream, i)));
  });

  it('is uniform on [lo, hi) (Xavier bounds)', () => {
    const hi = Math.sqrt(6 / (192 + 576));
    const x = init(engine, 'init_uniform', N, { seed: 5, lo: -hi, hi });
    const st = stats(x);
    expect(Math.abs(st.mean)).toBeLessThan(0.01 * hi);
    expect(Math.abs(st.std - (2 * hi) / Math.sqrt(12)) / ((2 * hi) / Math.sqrt(12))).toBeLessThan(0.01);
    expect(st.min).toBeGreaterThanOrEqual(Math.fround(-hi));
    expect(st.max).toBeLessThan(Math.fround(hi));
    expect(ksDistance(x, (v) => Math.min(1, Math.max(0, (v + hi) / (2 * hi))))).toBeLessThan(KS);
  });

  it('defaults to [0, 1), never reaches hi, and is the same for 1 and 2 threads', () => {
    using e1 = Engine.create({ device: 'cpu', threads: 1 });
    using e2 = Engine.create({ device: 'cpu', threads: 2 });
    const a = init(e1, 'init_uniform', 40_009, { seed: 8 });
    const b = init(e2, 'init_uniform', 40_009, { seed: 8 });
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    expect(a.every((v) => v >= 0 && v < 1)).toBe(true);
    // a range so narrow that lo + (hi - lo) u rounds to hi in f32 for many u: still below hi
    const c = init(engine, 'init_uniform', 1000, { seed: 8, lo: 1, hi: 1 + 2 ** -22 });
    expect(c.every((v) => v >= 1 && v < Math.fround(1 + 2 ** -22))).toBe(true);
  });

  it('rejects bad calls with clear errors', () => {
    using x = engine.tensor([4]);
    expect(() => engine.op('init_uniform', [], [x], { lo: 0, hi: 1 })).toThrow(/init_uniform: attr seed is required/);
    expect(() => engine.op('init_uniform', [], [x], { seed: 1, lo: 1, hi: 0 })).toThrow(/attr lo must be below hi/);
  });
});
