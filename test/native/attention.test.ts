// attention, attention_bwd, softmax, softmax_bwd (native/cpu/attention.cpp) against PyTorch float64
// references (test/fixtures/gen/attention.py), finite differences, acc semantics and bad calls.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { Engine } from '../../lib/engine/index.js';
import { cpuEngine, dot, finiteDiff, loadFixture, poisoned, randomF32, relErr } from '../helpers/parity.js';
import { attentionCases, attentionErrors, runAttention, softmaxErrors } from './attention.parity.js';

const fx = loadFixture('attention');
const engine = cpuEngine();
afterAll(() => engine.dispose());

// fp32 kernels against float64 references: the observed errors are ~1e-7 (a few ulp of accumulated
// rounding over T <= 197 keys), so 1e-5 leaves room for other compilers without hiding a real bug.
const TOL = 1e-5;

describe('attention parity (float64 PyTorch)', () => {
  const errs = attentionErrors(engine, fx);
  for (const c of attentionCases(fx)) {
    it(`${c.name}: B=${c.B} T=${c.T} H=${c.H} Hd=${c.Hd}${c.attrs.scale !== undefined ? ` scale=${c.attrs.scale}` : ''}`, () => {
      // outputs were NaN-poisoned: relErr is Infinity if any element was left unwritten
      expect(errs[c.name].o).toBeLessThan(TOL);
      expect(errs[c.name].lse).toBeLessThan(TOL);
      expect(errs[c.name].dqkv).toBeLessThan(TOL);
    });
  }

  it('covers T = 1, 7, 119, 197 and Hd = 32, 64 and odd head dims', () => {
    const cs = attentionCases(fx);
    for (const T of [1, 7, 119, 197]) expect(cs.some((c) => c.T === T)).toBe(true);
    for (const Hd of [8, 32, 48, 64]) expect(cs.some((c) => c.Hd === Hd)).toBe(true);
  });

  it('backward agrees when a head is split over threads (G > 1) and when it is not', () => {
    const c = attentionCases(fx).find((x) => x.name === 't197')!;
    const qkv = fx.f32('t197.qkv');
    const dout = fx.f32('t197.dout');
    for (const threads of [1, 4]) {
      const e = Engine.create({ device: 'cpu', threads });
      try {
        const r = runAttention(e, c, qkv, dout);
        expect(relErr(r.o, fx.f64('t197.o'))).toBeLessThan(TOL);
        expect(relErr(r.dqkv, fx.f64('t197.dqkv'))).toBeLessThan(TOL);
      } finally {
        e.dispose();
      }
    }
  });
});

describe('attention_bwd acc semantics', () => {
  it('acc=1 adds to dqkv, acc=0 overwrites it', () => {
    const c = attentionCases(fx).find((x) => x.name === 't7')!;
    const { B, T, H, Hd } = c;
    const ref = fx.f64('t7.dqkv');
    const base = randomF32(B * T * 3 * H * Hd, 11);
    const qkv = engine.tensor([B, T, 3 * H * Hd], 'f32', fx.f32('t7.qkv'));
    const dout = engine.tensor([B, T, H * Hd], 'f32', fx.f32('t7.dout'));
    const o = poisoned(engine, [B, T, H * Hd]);
    const lse = poisoned(engine, [B, H, T]);
    const dqkv = engine.tensor([B, T, 3 * H * Hd], 'f32', base);
    try {
      engine.op('attention', [qkv], [o, lse], c.attrs);
      engine.op('attention_bwd', [dout, qkv, o, lse], [dqkv], { ...c.attrs, acc: 1 });
      const got = dqkv.read();
      const expected = Float64Array.from(ref, (r, i) => r + base[i]);
      expect(relErr(got, expected)).toBeLessThan(TOL);
      expect(relErr(Float64Array.from(got, (g, i) => g - base[i]), ref)).toBeLessThan(1e-4); // the added part itself
      engine.op('attention_bwd', [dout, qkv, o, lse], [dqkv], { ...c.attrs, acc: 0 });
      expect(relErr(dqkv.read(), ref)).toBeLessThan(TOL);
    } finally {
      for (const t of [qkv, dout, o, lse, dqkv]) t.dispose();
    }
  });

  it('acc=1 with a head split over threads adds the dQ partials once', () => {
    const c = attentionCases(fx).find((x) => x.name === 't197')!;
    const { B, T, H, Hd } = c;
    const e = Engine.create({ device: 'cpu', threads: 4 });
    try {
      const base = randomF32(B * T * 3 * H * Hd, 5);
      const qkv = e.tensor([B, T, 3 * H * Hd], 'f32', fx.f32('t197.qkv'));
      const dout = e.tensor([B, T, H * Hd], 'f32', fx.f32('t197.dout'));
      const o = poisoned(e, [B, T, H * Hd]);
      const lse = poisoned(e, [B, H, T]);
      const dqkv = e.tensor([B, T, 3 * H * Hd], 'f32', base);
      e.op('attention', [qkv], [o, lse], c.attrs);
      e.op('attention_bwd', [dout, qkv, o, lse], [dqkv], { ...c.attrs, acc: 1 });
      const expected = Float64Array.from(fx.f64('t197.dqkv'), (r, i) => r + base[i]);
      expect(relErr(dqkv.read(), expected)).toBeLessThan(TOL);
    } finally {
      e.dispose();
    }
  });
});

describe('attention finite differences', () => {
  it('dqkv matches central differences of sum(w * o) on a tiny case (B=1, T=5, H=2, Hd=4)', () => {
    const B = 1, T = 5, H = 2, Hd = 4;
    const attrs = { heads: H };
    const x = randomF32(B * T * 3 * H * Hd, 3);
    const w = randomF32(B * T * H * Hd, 4);
    const qkv = engine.tensor([B, T, 3 * H * Hd], 'f32', x);
    const dout = engine.tensor([B, T, H * Hd], 'f32', w);
    const o = poisoned(engine, [B, T, H * Hd]);
    const lse = poisoned(engine, [B, H, T]);
    const dqkv = poisoned(engine, [B, T, 3 * H * Hd]);
    try {
      engine.op('attention', [qkv], [o, lse], attrs);
      engine.op('attention_bwd', [dout, qkv, o, lse], [dqkv], attrs);
      const grad = dqkv.read();
      const f = (xs: Float32Array): number => {
        qkv.write(xs);
        engine.op('attention', [qkv], [o, lse], attrs);
        return dot(w, o.read());
      };
      const worst = finiteDiff(x, grad, f, { h: 1e-2, samples: 40 });
      expect(worst).toBeLessThan(1e-2);
      // the gradient is not trivially zero: q, k and v parts all carry signal
      const part = (p: number) => {
        let s = 0;
        for (let t = 0; t < T; t++) for (let i = 0; i < H * Hd; i++) s += Math.abs(grad[t * 3 * H * Hd + p * H * Hd + i]);
        return s;
      };
      for (const p of [0, 1, 2]) expect(part(p)).toBeGreaterThan(1e-3);
    } finally {
      for (const t of [qkv, dout, o, lse, dqkv]) t.dispose();
    }
  });
});

describe('attention bad calls', () => {
  const B = 1, T = 3, H = 2, Hd = 4;
  const make = () => ({
    qkv: engine.tensor([B, T, 3 * H * Hd]),
    o: engine.tensor([B, T, H * Hd]),
    lse: engine.tensor([B, H, T]),
    dout: engine.tensor([B, T, H * Hd]),
    dqkv: engine.tensor([B, T, 3 * H * Hd]),
  });
  const withTensors = (fn: (t: ReturnType<typeof make>) => void) => {
    const t = make();
    try {
      fn(t);
    } finally {
      for (const x of Object.values(t)) if (!x.disposed) x.dispose();
    }
  };

  it('needs the heads attr', () =>
    withTensors((t) => expect(() => engine.op('attention', [t.qkv], [t.o, t.lse], {})).toThrow(/attention: attr heads is required/)));
  it('rejects a qkv width that is not 3 * heads * Hd', () =>
    withTensors((t) => expect(() => engine.op('attention', [t.qkv], [t.o, t.lse], { heads: 5 })).toThrow(/not 3 \* heads \* head_dim/)));
  it('rejects a wrong o or lse shape', () =>
    withTensors((t) => {
      const bad = engine.tensor([B, T, H * Hd + 1]);
      const badLse = engine.tensor([B, T, H]);
      try {
        expect(() => engine.op('attention', [t.qkv], [bad, t.lse], { heads: H })).toThrow(/output 0 must have shape \[1, 3, 8\]/);
        expect(() => engine.op('attention', [t.qkv], [t.o, badLse], { heads: H })).toThrow(/output 1 must have shape \[1, 2, 3\]/);
        expect(() => engine.op('attention_bwd', [t.dout, t.qkv, t.o, badLse], [t.dqkv], { heads: H })).toThrow(/input 3 must have shape/);
      } finally {
        bad.dispose();
        badLse.dispose();
      }
    }));
  it('rejects a non-f32 qkv', () =>
    withTensors((t) => {
      const q32 = engine.tensor([B, T, 3 * H * Hd], 'i32');
      try {
        expect(() => engine.op('attention', [q32], [t.o, t.lse], { heads: H })).toThrow(/input 0 must be f32/);
      } finally {
        q32.dispose();
      }
    }));
  it('rejects acc other than 0 or 1 and a dqkv of the wrong shape', () =>
    withTensors((t) => {
      expect(() => engine.op('attention_bwd', [t.dout, t.qkv, t.o, t.lse], [t.dqkv], { heads: H, acc: 2 })).toThrow(/acc must be 0 or 1/);
      expect(() => engine.op('attention_bwd', [t.dout, t.qkv, t.o, t.lse], [t.o], { heads: H })).toThrow(/output 0 must have the shape of input 1/);
    }));
  it('rejects a disposed tensor', () =>
    withTensors((t) => {
      t.qkv.dispose();
      expect(() => engine.op('attention', [t.qkv], [t.o, t.lse], { heads: H })).toThrow(/dispos/i);
    }));
});

describe('softmax', () => {
  const errs = softmaxErrors(engine, fx);
  for (const [name, c] of Object.entries(fx.cases).filter(([n]) => n.startsWith('sm_'))) {
    it(`${name}: [${c.R}, ${c.C}] scale=${c.scale} forward and backward`, () => {
      expect(errs[name].y).toBeLessThan(TOL);
      expect(errs[name].dx).toBeLessThan(TOL);
    });
  }

  it('softmax_bwd acc=1 adds to dx', () => {
    const name = 'sm_c197';
    const { R, C, scale } = fx.cases[name];
    const base = randomF32(R * C, 9);
    const y = engine.tensor([R, C], 'f32', fx.f32(`${name}.y`));
    const dy = engine.tensor([R, C], 'f32', fx.f32(`${name}.dy`));
    const dx = engine.tensor([R, C], 'f32', base);
    try {
      engine.op('softmax_bwd', [y, dy], [dx], { scale, acc: 1 });
      expect(relErr(dx.read(), Float64Array.from(fx.f64(`${name}.dx`), (r, i) => r + base[i]))).toBeLessThan(TOL);
    } finally {
      for (const t of [y, dy, dx]) t.dispose();
    }
  });

  it('finite differences of sum(w * softmax(scale * x)) on [3, 10], scale 0.7', () => {
    const R = 3, C = 10, scale = 0.7;
    const x0 = randomF32(R * C, 21, 2);
    const w = randomF32(R * C, 22);
    const x = engine.tensor([R, C], 'f32', x0);
    const y = poisoned(engine, [R, C]);
    const dy = engine.tensor([R, C], 'f32', w);
    const dx = poisoned(engine, [R, C]);
    try {
      engine.op('softmax', [x], [y], { scale });
      engine.op('softmax_bwd', [y, dy], [dx], { scale });
      const grad = dx.read();
      const worst = finiteDiff(x0, grad, (xs) => {
        x.write(xs);
        engine.op('softmax', [x], [y], { scale });
        return dot(w, y.read());
      }, { h: 1e-2, samples: 30 });
      expect(worst).toBeLessThan(1e-2);
    } finally {
      for (const t of [x, y, dy, dx]) t.dispose();
    }
  });

  it('rows of a 3-D input are normalised over the last dim', () => {
    const x = engine.tensor([2, 3, 5], 'f32', randomF32(30, 31));
    const y = poisoned(engine, [2, 3, 5]);
    try {
      engine.op('softmax', [x], [y]);
      const v = y.read();
      for (let r = 0; r < 6; r++) {
        let s = 0;
        for (let j = 0; j < 5; j++) s += v[r * 5 + j];
        expect(Math.abs(s - 1)).toBeLessThan(1e-6);
      }
    } finally {
      x.dispose();
      y.dispose();
    }
  });

  it('rejects mismatched shapes, non-f32 and a bad acc', () => {
    const x = engine.tensor([2, 5]);
    const y = engine.tensor([2, 4]);
    const xi = engine.tensor([2, 5], 'i32');
    try {
      expect(() => engine.op('softmax', [x], [y])).toThrow(/softmax: output 0 must have the shape of input 0/);
      expect(() => engine.op('softmax', [xi], [x])).toThrow(/input 0 must be f32/);
      expect(() => engine.op('softmax_bwd', [x, y], [x])).toThrow(/softmax_bwd: input 1 must have the shape of input 0/);
      expect(() => engine.op('softmax_bwd', [x, x], [x], { acc: 3 })).toThrow(/acc must be 0 or 1/);
    } finally {
      for (const t of [x, y, xi]) t.dispose();
    }
  });
});

describe('narrower ISA variants (MEDIC_CPU_ISA caps dispatch in a child process)', () => {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'attention.parity.ts');
  for (const isa of ['avx2', 'scalar']) {
    it(`${isa}: every attention and softmax case within ${TOL}`, () => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', script], {
        env: { ...process.env, MEDIC_CPU_ISA: isa },
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(r.status, r.stderr).toBe(0);
      const rep = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
        describe: string;
        attention: Record<string, Record<string, number>>;
        softmax: Record<string, Record<string, number>>;
      };
      expect(rep.describe).not.toMatch(/avx512f/);
      if (isa === 'scalar') expect(rep.describe).not.toMatch(/avx2/);
      expect(Object.keys(rep.attention).length).toBe(attentionCases(fx).length);
      for (const [name, e] of Object.entries({ ...rep.attention, ...rep.softmax }))
        for (const [k, v] of Object.entries(e)) expect(v, `${isa} ${name}.${k}`).toBeLessThan(TOL);
    });
  }
});
