// grad_norm and adamw: parity with PyTorch (torch.optim.AdamW + clip_grad_norm_, float64) over several
// steps, weight-decay masking, clipping, thread-count determinism and bad calls.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

import { Engine, type Attrs } from '../../lib/engine/index.js';
import { cpuEngine, loadFixture, poisoned, randomF32, relErr } from '../helpers/parity.js';

const fx = loadFixture('optim');
const engine = cpuEngine();
afterAll(() => engine.dispose());

function gradNorm(e: Engine, g: Float32Array): number {
  using G = e.tensor([g.length], 'f32', g);
  using out = poisoned(e, [1]);
  e.op('grad_norm', [G], [out]);
  return out.read()[0];
}

describe('grad_norm', () => {
  for (const name of Object.keys(fx.cases).filter((c) => c.startsWith('gn_'))) {
    it(`matches torch.norm in float64: ${name}`, () => {
      const out = gradNorm(engine, fx.f32(`${name}.g`));
      const ref = fx.f64(`${name}.norm`)[0];
      expect(Math.abs(out - ref) / ref).toBeLessThan(1e-6);
    });
  }

  it('is exact to f32 rounding on 3M elements across many chunks, and the same bits for 1 and 2 threads', () => {
    const n = 3_000_017;
    const g = randomF32(n, 5, 0.01);
    let ref = 0;
    for (let i = 0; i < n; i++) ref += g[i] * g[i];
    ref = Math.sqrt(ref);
    using e1 = Engine.create({ device: 'cpu', threads: 1 });
    using e2 = Engine.create({ device: 'cpu', threads: 2 });
    const a = gradNorm(e1, g);
    const b = gradNorm(e2, g);
    expect(Math.abs(a - ref) / ref).toBeLessThan(1e-7);
    expect(a).toBe(b);
  });

  it('takes any shape, and an empty tensor gives 0', () => {
    using G = engine.tensor([3, 2, 2], 'f32', new Float32Array([3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12]));
    using E = engine.tensor([0]);
    using out = poisoned(engine, [1]);
    engine.op('grad_norm', [G], [out]);
    expect(out.read()[0]).toBe(13);
    engine.op('grad_norm', [E], [out]);
    expect(out.read()[0]).toBe(0);
  });
});

describe('adamw', () => {
  for (const name of Object.keys(fx.cases).filter((c) => c.startsWith('aw_'))) {
    it(`matches torch.optim.AdamW over several steps: ${name} ${JSON.stringify(fx.cases[name])}`, () => {
      const { weight_decay: wd, ...attrs } = fx.cases[name];
      const [K, n] = fx.shape(`${name}.grads`);
      const grads = fx.f32(`${name}.grads`);
      const lr = fx.f32(`${name}.lr`);
      const refP = fx.f64(`${name}.p`);
      const refM = fx.f64(`${name}.m`);
      const refV = fx.f64(`${name}.v`);
      const refNorm = fx.f64(`${name}.norm`);
      using p = engine.tensor([n], 'f32', fx.f32(`${name}.p0`));
      using m = engine.tensor([n]);
      using v = engine.tensor([n]);
      using mask = engine.tensor([n], 'u8', fx.u8(`${name}.mask`));
      using g = engine.tensor([n]);
      using norm = poisoned(engine, [1]);
      using hyper = engine.tensor([3]);
      let prev = Float64Array.from(fx.f32(`${name}.p0`));
      for (let k = 0; k < K; k++) {
        g.write(grads.slice(k * n, (k + 1) * n));
        engine.op('grad_norm', [g], [norm]);
        expect(Math.abs(norm.read()[0] - refNorm[k]) / refNorm[k]).toBeLessThan(1e-6);
        hyper.write(new Float32Array([lr[k], wd, k + 1]));
        engine.op('adamw', [g, mask, hyper, norm], [p, m, v], attrs as Attrs);
        const pk = p.read();
        const sl = (a: Float64Array) => a.subarray(k * n, (k + 1) * n);
        expect(relErr(m.read(), sl(refM))).toBeLessThan(1e-5);
        expect(relErr(v.read(), sl(refV))).toBeLessThan(1e-5);
        expect(relErr(pk, sl(refP))).toBeLessThan(1e-6);
        // The update itself (~1e-3 of p) can only be as exact as f32 p allows: ulp(0.5) / 1e-3 ~ 6e-5.
        const du = Float64Array.from(pk, (x, i) => x - prev[i]);
        const dr = Float64Array.from(sl(refP), (x, i) => x - (k === 0 ? prev[i] : refP[(k - 1) * n + i]));
        expect(relErr(du, dr)).toBeLessThan(2e-4);
        prev = Float64Array.from(pk);
      }
    });
  }

  it('decays exactly the masked elements (zero gradient: the Adam step is exactly 0)', () => {
    const n = 37;
    const p0 = randomF32(n, 3);
    const maskData = Uint8Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 0 : 1));
    using p = engine.tensor([n], 'f32', p0);
    using m = engine.tensor([n]);
    using v = engine.tensor([n]);
    using g = engine.tensor([n]);
    using mask = engine.tensor([n], 'u8', maskData);
    using hyper = engine.tensor([3], 'f32', new Float32Array([0.5, 0.1, 3]));
    engine.op('adamw', [g, mask, hyper], [p, m, v]);
    const out = p.read();
    const decay = Math.fround(1 - 0.5 * Math.fround(0.1));
    for (let i = 0; i < n; i++) expect(out[i]).toBe(maskData[i] ? Math.fround(p0[i] * decay) : p0[i]);
    expect(m.read().every((x) => x === 0)).toBe(true);
    expect(v.read().every((x) => x === 0)).toBe(true);
  });

  it('clips only when the norm exceeds max_norm, and ignores the norm when max_norm = 0', () => {
    const n = 64;
    const gData = randomF32(n, 9);
    const run = (normValue: number, attrs: Attrs) => {
      using p = engine.tensor([n]);
      using m = engine.tensor([n]);
      using v = engine.tensor([n]);
      using g = engine.tensor([n], 'f32', gData);
      using mask = engine.tensor([n], 'u8');
      using hyper = engine.tensor([3], 'f32', new Float32Array([1e-3, 0, 1]));
      using norm = engine.tensor([1], 'f32', new Float32Array([normValue]));
      engine.op('adamw', [g, mask, hyper, norm], [p, m, v], attrs);
      return m.read();
    };
    const plain = run(10, {});
    const clipped = run(10, { max_norm: 2 }); // scale 2 / (10 + 1e-6)
    const under = run(1, { max_norm: 2 }); // no clipping
    const scale = 2 / (10 + 1e-6);
    expect(relErr(clipped, Float64Array.from(plain, (x) => x * scale))).toBeLessThan(1e-6);
    expect(Array.from(under)).toEqual(Array.from(plain));
  });

  it('gives the same bits with 1 and 2 threads', () => {
    const n = 1_000_003;
    const p0 = randomF32(n, 1);
    const g0 = randomF32(n, 2);
    const maskData = Uint8Array.from({ length: n }, (_, i) => i & 1);
    const once = (e: Engine) => {
      using p = e.tensor([n], 'f32', p0);
      using m = e.tensor([n]);
      using v = e.tensor([n]);
      using g = e.tensor([n], 'f32', g0);
      using mask = e.tensor([n], 'u8', maskData);
      using hyper = e.tensor([3], 'f32', new Float32Array([1e-3, 0.05, 7]));
      using norm = e.tensor([1], 'f32', new Float32Array([1500]));
      e.op('adamw', [g, mask, hyper, norm], [p, m, v], { max_norm: 1 });
      e.op('adamw', [g, mask, hyper, norm], [p, m, v], { max_norm: 1 });
      return p.read();
    };
    using e1 = Engine.create({ device: 'cpu', threads: 1 });
    using e2 = Engine.create({ device: 'cpu', threads: 2 });
    expect(Buffer.from(once(e1).buffer).equals(Buffer.from(once(e2).buffer))).toBe(true);
  });

  it('rejects bad calls with clear errors', () => {
    using p = engine.tensor([8]);
    using m = engine.tensor([8]);
    using v = engine.tensor([8]);
    using v7 = engine.tensor([7]);
    using g = engine.tensor([8]);
    using mask = engine.tensor([8], 'u8');
    using maskF = engine.tensor([8], 'f32');
    using hyper = engine.tensor([3], 'f32', new Float32Array([1e-3, 0.05, 1]));
    using hyper0 = engine.tensor([3], 'f32', new Float32Array([1e-3, 0.05, 0]));
    using hyper2 = engine.tensor([2]);
    expect(() => engine.op('adamw', [g, maskF, hyper], [p, m, v])).toThrow(/adamw: input 1 must be u8/);
    expect(() => engine.op('adamw', [g, mask, hyper2], [p, m, v])).toThrow(/adamw: input 2 must have 3 elements/);
    expect(() => engine.op('adamw', [g, mask, hyper], [p, m, v7])).toThrow(/adamw: output 2 must have 8 elements/);
    expect(() => engine.op('adamw', [g, mask, hyper0], [p, m, v])).toThrow(/adamw: hyper\[2\] \(the step count\) must be an integer >= 1/);
    expect(() => engine.op('adamw', [g, mask, hyper], [p, m, v], { max_norm: 1 })).toThrow(/adamw: attr max_norm > 0 needs the global gradient norm as input 3/);
    expect(() => engine.op('grad_norm', [mask], [p])).toThrow(/grad_norm: input 0 must be f32/);
  });
});

// adamw has a baseline, an AVX2 and an AVX-512 body (optim.cpp): each must give the update's bits.
// MEDIC_CPU_ISA caps the path a child process takes; the uncapped child takes the widest this CPU has.
describe('adamw code paths', () => {
  const here = dirname(fileURLToPath(import.meta.url));
  const tsx = join(here, '..', '..', 'node_modules', '.bin', 'tsx');
  const child = (isa?: string) => {
    const env = { ...process.env };
    if (isa) env.MEDIC_CPU_ISA = isa;
    else delete env.MEDIC_CPU_ISA;
    const r = spawnSync(tsx, [join(here, 'isa.child.ts'), 'optim'], { env, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { describe: string; digest: string };
  };

  it('the baseline, AVX2 and widest paths give the same bits over three steps (clipped, lr-scaled)', () => {
    const scalar = child('scalar'), avx2 = child('avx2'), widest = child();
    expect(scalar.describe).toMatch(/scalar/);
    expect(avx2.describe).not.toMatch(/avx512/);
    expect(scalar.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(avx2.digest).toBe(scalar.digest);
    expect(widest.digest).toBe(scalar.digest);
  });
});
