// Shared by the op tests: fixtures, error norms, eager op runs and finite-difference checks.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, expect } from 'vitest';

import {
  Engine,
  type AnyTypedArray,
  type Attrs,
  type DType,
  type OpName,
  type Tensor,
} from '../../lib/engine/index.js';
import { SafetensorsFile } from '../../lib/io/safetensors.js';

const fixturesDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');

export interface Fixture {
  names: string[];
  shape(name: string): number[];
  f64(name: string): Float64Array;
  f32(name: string): Float32Array;
  i32(name: string): Int32Array;
  u8(name: string): Uint8Array;
  has(name: string): boolean;
  cases: Record<string, Record<string, number>>;
}

/** test/fixtures/<family>.safetensors, written by test/fixtures/generate.py. */
export function loadFixture(family: string): Fixture {
  const path = join(fixturesDir, `${family}.safetensors`);
  const f = new SafetensorsFile(path);
  const cases = JSON.parse(f.metadata.cases ?? '{}') as Record<string, Record<string, number>>;
  const cache = new Map<string, unknown>();
  const get = <T>(name: string): T => {
    if (!cache.has(name)) cache.set(name, f.read(name));
    return cache.get(name) as T;
  };
  return {
    names: f.names(),
    cases,
    has: (n) => f.tensors.has(n),
    shape: (n) => f.info(n).shape,
    f64: (n) => get<Float64Array>(n),
    f32: (n) => {
      const info = f.info(n);
      if (info.dtype === 'F64') return Float32Array.from(get<Float64Array>(n));
      return f.readF32(n);
    },
    i32: (n) => get<Int32Array>(n),
    u8: (n) => get<Uint8Array>(n),
  };
}

/** ||out - ref|| / ||ref|| in float64; Infinity when out holds a NaN or infinity. */
export function relErr(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (out.length !== ref.length) throw new Error(`relErr: lengths differ (${out.length} vs ${ref.length})`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < out.length; i++) {
    const o = out[i];
    if (!Number.isFinite(o)) return Infinity;
    const d = o - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  if (den === 0) return Math.sqrt(num);
  return Math.sqrt(num / den);
}

/** Largest |out - ref|. */
export function maxAbsErr(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) return Infinity;
    m = Math.max(m, Math.abs(out[i] - ref[i]));
  }
  return m;
}

let shared: Engine | undefined;
/** One CPU engine per test file (threads default to the cores). */
export function cpuEngine(): Engine {
  if (!shared || (shared as unknown as { native: unknown }).native === null) shared = Engine.create({ device: 'cpu' });
  return shared;
}

/**
 * For a test file that needs engines of given thread counts: returns a factory; after the file, the
 * engines are disposed and the shared engine must hold as many live tensors as at the start (no leak).
 */
export function useEngines(): (threads: number) => Engine {
  const engines: Engine[] = [];
  const liveAtStart = cpuEngine().memory().liveTensors;
  afterAll(() => {
    expect(cpuEngine().memory().liveTensors).toBe(liveAtStart);
    for (const e of engines) e.dispose();
  });
  return (threads: number) => {
    const e = Engine.create({ device: 'cpu', threads });
    engines.push(e);
    return e;
  };
}

/** Deterministic pseudo-random f32 data (xorshift), for inputs that need no reference. */
export function randomF32(n: number, seed = 1, scale = 1): Float32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    const u1 = (s + 1) / 4294967297;
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    const u2 = s / 4294967296;
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = scale * r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = scale * r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

/** Poison value written into outputs before a kernel runs, so an unwritten element shows up. */
export const POISON = NaN;
export function poisoned(engine: Engine, shape: number[]): Tensor<'f32'> {
  const n = shape.reduce((a, b) => a * b, 1);
  return engine.tensor(shape, 'f32', new Float32Array(n).fill(POISON));
}

/**
 * Central finite differences of a scalar function against an analytic gradient, on `samples`
 * coordinates of x. f32 kernels: use h around 1e-2 and compare with a relative tolerance of ~1e-2.
 * Returns the worst relative error max|fd - g| / max(|fd|, |g|, floor).
 */
export function finiteDiff(
  x: Float32Array,
  grad: ArrayLike<number>,
  f: (x: Float32Array) => number,
  opts: { h?: number; samples?: number; seed?: number; floor?: number } = {},
): number {
  const h = opts.h ?? 1e-2;
  const samples = Math.min(opts.samples ?? 24, x.length);
  const floor = opts.floor ?? 1e-3;
  let worst = 0;
  let s = (opts.seed ?? 7) >>> 0;
  const picked = new Set<number>();
  while (picked.size < samples) {
    s = (s * 1664525 + 1013904223) >>> 0;
    picked.add(s % x.length);
  }
  for (const i of picked) {
    const keep = x[i];
    x[i] = keep + h;
    const fp = f(x);
    x[i] = keep - h;
    const fm = f(x);
    x[i] = keep;
    const fd = (fp - fm) / (2 * h);
    const err = Math.abs(fd - grad[i]) / Math.max(Math.abs(fd), Math.abs(grad[i]), floor);
    worst = Math.max(worst, err);
  }
  return worst;
}

/** sum(w * y) in float64: the scalar whose gradient wrt y is w. */
export function dot(w: ArrayLike<number>, y: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < w.length; i++) s += w[i] * y[i];
  return s;
}

/** A tensor to create for one eager op call: shape, dtype (default f32) and optional data. */
export interface OpSpec {
  shape: number[];
  dtype?: DType;
  data?: ArrayLike<number>;
}
export const f32 = (shape: number[], data?: ArrayLike<number>): OpSpec => ({ shape, data });
export const i32 = (shape: number[], data: ArrayLike<number>): OpSpec => ({ shape, dtype: 'i32', data });
export const u8 = (shape: number[], data: ArrayLike<number>): OpSpec => ({ shape, dtype: 'u8', data });

/**
 * Runs one op on fresh tensors and returns the outputs. Outputs given without data are poisoned
 * (NaN for f32 and bf16), so an element the kernel does not write shows up.
 */
export function runOp(
  op: OpName,
  ins: (OpSpec | null)[],
  outs: (OpSpec | null)[],
  attrs: Attrs = {},
  engine: Engine = cpuEngine(),
): AnyTypedArray[] {
  const made: Tensor[] = [];
  const mk = (s: OpSpec | null, out: boolean): Tensor | null => {
    if (!s) return null;
    const n = s.shape.reduce((a, b) => a * b, 1);
    const dt = s.dtype ?? 'f32';
    let data = s.data;
    if (data === undefined && out && dt === 'f32') data = new Float32Array(n).fill(NaN);
    if (data === undefined && out && dt === 'bf16') data = new Uint16Array(n).fill(0x7fc0);
    const t = engine.tensor(s.shape, dt, data as never);
    made.push(t);
    return t;
  };
  try {
    const ti = ins.map((s) => mk(s, false));
    const to = outs.map((s) => mk(s, true));
    engine.op(op, ti, to, attrs);
    return to.map((t) => (t ? t.read() : new Float32Array(0)));
  } finally {
    for (const t of made) t.dispose();
  }
}
