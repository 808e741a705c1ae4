// The op extensions of the evaluation suite against PyTorch float64 references (test/fixtures/gen/
// eval_ops.py): cross_entropy with soft (mixup) targets, batchnorm (the linear probe's BatchNorm
// without affine), sgd with momentum and LARS (MAE's linear probe), and adamw with a per-element lr
// scale (layer-wise lr decay). Plus finite differences, thread determinism and bad calls.
import { afterAll, describe, expect, it } from 'vitest';

import { Engine, type Attrs } from '../../lib/engine/index.js';
import { cpuEngine, f32, finiteDiff, loadFixture, randomF32, relErr, runOp } from '../helpers/parity.js';

const fx = loadFixture('eval_ops');
const engine = cpuEngine();
afterAll(() => engine.dispose());
const casesOf = (prefix: string) => Object.keys(fx.cases).filter((c) => c.startsWith(prefix));

function softCe(z: Float32Array, t: Float32Array, R: number, C: number, e: Engine = engine) {
  const [loss, dz, correct] = runOp('cross_entropy', [f32([R, C], z), f32([R, C], t)], [f32([1]), f32([R, C]), f32([1])], {}, e);
  return { loss: loss[0], dlogits: dz as Float32Array, correct: correct[0] };
}

describe('cross_entropy with soft targets', () => {
  for (const name of casesOf('ces_')) {
    it(`matches sum(-t * log_softmax(z)).mean() in float64: ${name}`, () => {
      const [R, C] = fx.shape(`${name}.logits`);
      const out = softCe(fx.f32(`${name}.logits`), fx.f32(`${name}.targets`), R, C);
      const ref = fx.f64(`${name}.loss`)[0];
      expect(Math.abs(out.loss - ref) / Math.abs(ref)).toBeLessThan(1e-5);
      expect(relErr(out.dlogits, fx.f64(`${name}.dlogits`))).toBeLessThan(1e-5);
      expect(out.correct).toBe(fx.f64(`${name}.correct`)[0]);
    });
  }

  it('equals the label form for one-hot smoothed targets, and agrees with finite differences', () => {
    const R = 4;
    const C = 6;
    const z = randomF32(R * C, 5, 2);
    const labels = [2, 0, 5, 5];
    const e = 0.1;
    const t = new Float32Array(R * C).fill(e / C);
    labels.forEach((y, r) => (t[r * C + y] = 1 - e + e / C));
    const soft = softCe(z, t, R, C);
    const [loss, dz] = runOp('cross_entropy', [f32([R, C], z), { shape: [R], dtype: 'i32', data: labels }], [f32([1]), f32([R, C])], { smoothing: e });
    expect(Math.abs(soft.loss - loss[0]) / loss[0]).toBeLessThan(1e-6);
    expect(relErr(soft.dlogits, dz)).toBeLessThan(1e-6);
    // targets that do not sum to 1 (the general form dlogits = softmax * sum(t) - t)
    const t2 = Float32Array.from(randomF32(R * C, 8), (x) => Math.abs(x) * 0.3);
    const g = softCe(z, t2, R, C);
    expect(finiteDiff(z, g.dlogits, (x) => softCe(x, t2, R, C).loss, { h: 1e-2, samples: 24, floor: 5e-3 })).toBeLessThan(1e-2);
  });

  it('refuses smoothing with soft targets and targets of another shape', () => {
    expect(() => runOp('cross_entropy', [f32([2, 3], new Float32Array(6)), f32([2, 3], new Float32Array(6))], [f32([1]), f32([2, 3])], { smoothing: 0.1 })).toThrow(
      /cross_entropy: attr smoothing must be 0 with soft targets/,
    );
    expect(() => runOp('cross_entropy', [f32([2, 3], new Float32Array(6)), f32([3, 2], new Float32Array(6))], [f32([1]), f32([2, 3])])).toThrow(
      /cross_entropy: input 1 must have the shape of input 0 \[2, 3\]/,
    );
    expect(() => runOp('cross_entropy', [f32([2, 3], new Float32Array(6)), { shape: [2], dtype: 'u8', data: [0, 1] }], [f32([1]), f32([2, 3])])).toThrow(
      /cross_entropy: input 1 must be i32 labels \[R\] or f32 targets \[R, C\]/,
    );
  });
});

describe('batchnorm', () => {
  for (const name of casesOf('bn_')) {
    it(`matches F.batch_norm (no affine) in float64: ${name} ${JSON.stringify(fx.cases[name])}`, () => {
      const [R, C] = fx.shape(`${name}.x`);
      const attrs = fx.cases[name] as Attrs;
      const [y, rm, rv] = runOp('batchnorm', [f32([R, C], fx.f32(`${name}.x`))], [f32([R, C]), f32([C], fx.f32(`${name}.run_mean0`)), f32([C], fx.f32(`${name}.run_var0`))], attrs);
      expect(relErr(y, fx.f64(`${name}.y`))).toBeLessThan(1e-6);
      expect(relErr(rm, fx.f64(`${name}.run_mean`))).toBeLessThan(1e-6);
      expect(relErr(rv, fx.f64(`${name}.run_var`))).toBeLessThan(1e-6);
    });
  }

  it('gives the same bits with 1 and 2 threads, and refuses one row in training', () => {
    const R = 300;
    const C = 200;
    const x = randomF32(R * C, 4, 3);
    const once = (threads: number) => {
      using e = Engine.create({ device: 'cpu', threads });
      return runOp('batchnorm', [f32([R, C], x)], [f32([R, C]), f32([C], new Float32Array(C)), f32([C], new Float32Array(C).fill(1))], {}, e);
    };
    const [a, b] = [once(1), once(2)];
    for (let i = 0; i < 3; i++) expect(Buffer.from(a[i].buffer).equals(Buffer.from(b[i].buffer))).toBe(true);
    expect(() => runOp('batchnorm', [f32([1, 4], new Float32Array(4))], [f32([1, 4]), f32([4]), f32([4])])).toThrow(/batchnorm: training needs at least 2 rows/);
  });
});

function runSgd(name: string, withNorms: boolean) {
  const { weight_decay: wd, momentum, trust } = fx.cases[name];
  const [K, n] = fx.shape(`${name}.grads`);
  const grads = fx.f32(`${name}.grads`);
  const lr = fx.f32(`${name}.lr`);
  using p = engine.tensor([n], 'f32', fx.f32(`${name}.p0`));
  using mu = engine.tensor([n]);
  using g = engine.tensor([n]);
  using hyper = engine.tensor([2]);
  using norms = engine.tensor([2]);
  const out: { p: Float32Array; mu: Float32Array; norms: Float32Array }[] = [];
  for (let k = 0; k < K; k++) {
    g.write(grads.slice(k * n, (k + 1) * n));
    hyper.write(new Float32Array([lr[k], wd]));
    engine.op('sgd', [g, hyper], withNorms ? [p, mu, norms] : [p, mu], { momentum, trust });
    out.push({ p: p.read(), mu: mu.read(), norms: norms.read() });
  }
  return { K, n, out };
}

describe('sgd', () => {
  for (const name of casesOf('sgd_').concat(casesOf('lars_'))) {
    it(`matches ${name.startsWith('lars') ? "MAE's LARS" : 'torch.optim.SGD'} over several steps: ${name} ${JSON.stringify(fx.cases[name])}`, () => {
      const lars = fx.cases[name].trust > 0;
      const { K, n, out } = runSgd(name, lars);
      const sl = (a: Float64Array, k: number, m = n) => a.subarray(k * m, (k + 1) * m);
      for (let k = 0; k < K; k++) {
        expect(relErr(out[k].p, sl(fx.f64(`${name}.p`), k))).toBeLessThan(1e-6);
        expect(relErr(out[k].mu, sl(fx.f64(`${name}.mu`), k))).toBeLessThan(1e-5);
        if (lars) expect(relErr(out[k].norms, sl(fx.f64(`${name}.norms`), k, 2))).toBeLessThan(1e-6);
      }
    });
  }

  it('LARS needs the norms output; trust 0 with norms is plain SGD', () => {
    expect(() => runOp('sgd', [f32([3], [1, 2, 3]), f32([2], [0.1, 0])], [f32([3], [1, 1, 1]), f32([3], [0, 0, 0])], { trust: 0.001 })).toThrow(
      /sgd: attr trust > 0 \(LARS\) needs output 2, norms \[2\]/,
    );
    const [p, mu, norms] = runOp('sgd', [f32([2], [3, 4]), f32([2], [0.5, 0])], [f32([2], [1, 1]), f32([2], [1, 0]), f32([2])], { momentum: 0.5 });
    expect(Array.from(mu)).toEqual([3.5, 4]);
    expect(Array.from(p)).toEqual([1 - 0.5 * 3.5, 1 - 0.5 * 4]);
    expect(Array.from(norms)).toEqual([Math.fround(Math.SQRT2), 5]);
  });
});

describe('adamw with a per-element lr scale', () => {
  for (const name of casesOf('awls_')) {
    it(`matches torch.optim.AdamW with one group per (scale, decay): ${name}`, () => {
      const wd = fx.cases[name].weight_decay;
      const [K, n] = fx.shape(`${name}.grads`);
      const grads = fx.f32(`${name}.grads`);
      const lr = fx.f32(`${name}.lr`);
      using p = engine.tensor([n], 'f32', fx.f32(`${name}.p0`));
      using m = engine.tensor([n]);
      using v = engine.tensor([n]);
      using mask = engine.tensor([n], 'u8', fx.u8(`${name}.mask`));
      using scale = engine.tensor([n], 'f32', fx.f32(`${name}.scale`));
      using g = engine.tensor([n]);
      using hyper = engine.tensor([3]);
      const p0 = fx.f64(`${name}.p0`);
      for (let k = 0; k < K; k++) {
        g.write(grads.slice(k * n, (k + 1) * n));
        hyper.write(new Float32Array([lr[k], wd, k + 1]));
        engine.op('adamw', [g, mask, hyper, null, scale], [p, m, v]);
        const sl = (a: Float64Array) => a.subarray(k * n, (k + 1) * n);
        expect(relErr(m.read(), sl(fx.f64(`${name}.m`)))).toBeLessThan(1e-5);
        expect(relErr(v.read(), sl(fx.f64(`${name}.v`)))).toBeLessThan(1e-5);
        // the update p - p0 (~1e-3 of p): a wrong scale on any layer would be off by >= 35 %
        const ref = sl(fx.f64(`${name}.p`));
        const out = p.read();
        expect(relErr(Float64Array.from(out, (x, i) => x - p0[i]), Float64Array.from(ref, (x, i) => x - p0[i]))).toBeLessThan(2e-4);
      }
    });
  }

  it('with a scale of ones gives the unscaled update (to f32 rounding)', () => {
    const n = 1000;
    const run = (withScale: boolean) => {
      using p = engine.tensor([n], 'f32', randomF32(n, 1));
      using m = engine.tensor([n]);
      using v = engine.tensor([n]);
      using g = engine.tensor([n], 'f32', randomF32(n, 2, 0.1));
      using mask = engine.tensor([n], 'u8', Uint8Array.from({ length: n }, (_, i) => i & 1));
      using hyper = engine.tensor([3], 'f32', new Float32Array([1e-2, 0.05, 1]));
      using ones = engine.tensor([n], 'f32', new Float32Array(n).fill(1));
      engine.op('adamw', withScale ? [g, mask, hyper, null, ones] : [g, mask, hyper], [p, m, v]);
      return p.read();
    };
    expect(relErr(run(true), run(false))).toBeLessThan(1e-7);
  });
});
