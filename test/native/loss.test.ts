// medic_loss (MEDiC's token + CLS + pixel loss, values and gradients in one op) and cross_entropy:
// parity with PyTorch float64 autograd (test/fixtures/gen/loss.py), finite differences, zero-weight
// branches, thread-count determinism and bad calls.
import { afterAll, describe, expect, it } from 'vitest';

import { Engine, type Attrs } from '../../lib/engine/index.js';
import { cpuEngine, finiteDiff, loadFixture, poisoned, randomF32, relErr } from '../helpers/parity.js';

const fx = loadFixture('loss');
const engine = cpuEngine();
afterAll(() => engine.dispose());

interface LossOut {
  losses: Float32Array;
  ds: Float32Array;
  dpred: Float32Array | null;
}

/** One medic_loss call on fresh tensors (outputs poisoned with NaN first). */
function runLoss(
  e: Engine,
  sShape: number[],
  s: Float32Array,
  t: Float32Array,
  pShape: number[] | null,
  pred: Float32Array | null,
  target: Float32Array | null,
  attrs: Attrs,
): LossOut {
  using S = e.tensor(sShape, 'f32', s);
  using T = e.tensor(sShape, 'f32', t);
  using losses = poisoned(e, [4]);
  using ds = poisoned(e, sShape);
  const P = pShape && pred ? e.tensor(pShape, 'f32', pred) : null;
  const Q = pShape && target ? e.tensor(pShape, 'f32', target) : null;
  const dP = pShape ? poisoned(e, pShape) : null;
  try {
    e.op('medic_loss', [S, T, P, Q], [losses, ds, dP], attrs);
    return { losses: losses.read(), ds: ds.read(), dpred: dP ? dP.read() : null };
  } finally {
    P?.dispose();
    Q?.dispose();
    dP?.dispose();
  }
}

function fixtureLoss(name: string, e: Engine = engine): LossOut {
  return runLoss(
    e,
    fx.shape(`${name}.s`),
    fx.f32(`${name}.s`),
    fx.f32(`${name}.t`),
    fx.shape(`${name}.pred`),
    fx.f32(`${name}.pred`),
    fx.f32(`${name}.target`),
    fx.cases[name],
  );
}

const mlCases = Object.keys(fx.cases).filter((c) => c.startsWith('ml_'));
const ceCases = Object.keys(fx.cases).filter((c) => c.startsWith('ce_'));

describe('medic_loss', () => {
  it('has the fixture cases', () => {
    expect(mlCases.length).toBeGreaterThanOrEqual(8);
  });

  for (const name of mlCases) {
    it(`matches PyTorch float64: ${name} ${JSON.stringify(fx.cases[name])} s ${JSON.stringify(fx.shape(`${name}.s`))}`, () => {
      const out = fixtureLoss(name);
      const ref = fx.f64(`${name}.losses`);
      // each component on its own (a zeroed component must be exactly 0)
      for (let k = 0; k < 4; k++) {
        if (ref[k] === 0) expect(out.losses[k]).toBe(0);
        else expect(Math.abs(out.losses[k] - ref[k]) / Math.abs(ref[k])).toBeLessThan(1e-5);
      }
      expect(relErr(out.ds, fx.f64(`${name}.ds`))).toBeLessThan(1e-5);
      expect(relErr(out.dpred!, fx.f64(`${name}.dpred`))).toBeLessThan(1e-5);
    });
  }

  it('zero weights skip their branch: component 0, gradient rows exactly 0', () => {
    const [B, R, Dt] = fx.shape('ml_tok0.s');
    const tok0 = fixtureLoss('ml_tok0');
    const cls0 = fixtureLoss('ml_cls0');
    const pix0 = fixtureLoss('ml_pix0');
    for (let b = 0; b < B; b++) {
      for (let r = 0; r < R; r++) {
        const row = (o: LossOut) => Array.from(o.ds.subarray((b * R + r) * Dt, (b * R + r + 1) * Dt));
        if (r === 0) {
          expect(row(cls0).every((x) => x === 0)).toBe(true);
          expect(row(tok0).some((x) => x !== 0)).toBe(true); // the CLS branch still runs
        } else {
          expect(row(tok0).every((x) => x === 0)).toBe(true);
          expect(row(cls0).some((x) => x !== 0)).toBe(true);
        }
      }
    }
    expect(tok0.losses[1]).toBe(0);
    expect(cls0.losses[2]).toBe(0);
    expect(pix0.losses[3]).toBe(0);
    expect(pix0.dpred!.every((x) => x === 0)).toBe(true);
    // total = w_tok L_tok + w_cls L_cls + w_pix L_pix with the defaults (1, 0.4, 1)
    const d = fixtureLoss('ml_default').losses;
    expect(d[0]).toBeCloseTo(d[1] + 0.4 * d[2] + d[3], 6);
  });

  it('runs without pred/target/dpred when w_pix = 0', () => {
    const name = 'ml_pix0';
    const out = runLoss(engine, fx.shape(`${name}.s`), fx.f32(`${name}.s`), fx.f32(`${name}.t`), null, null, null, { w_pix: 0 });
    const ref = fx.f64(`${name}.losses`);
    expect(Math.abs(out.losses[0] - ref[0]) / ref[0]).toBeLessThan(1e-5);
    expect(out.losses[3]).toBe(0);
    expect(relErr(out.ds, fx.f64(`${name}.ds`))).toBeLessThan(1e-5);
  });

  it('gradients agree with finite differences of the total (ds and dpred)', () => {
    const sShape = [2, 6, 9];
    const pShape = [2, 3, 7];
    const t = randomF32(2 * 6 * 9, 11);
    const s = randomF32(2 * 6 * 9, 12, 1.2).map((x, i) => x + t[i]);
    const pred = randomF32(2 * 3 * 7, 13);
    const target = randomF32(2 * 3 * 7, 14);
    for (const attrs of [{}, { w_cls: 1.0, beta: 0.5, tau: 0.2 }, { w_tok: 2, w_cls: 0.3, w_pix: 0.5 }] as Attrs[]) {
      const g = runLoss(engine, sShape, s, t, pShape, pred, target, attrs);
      const fS = (x: Float32Array) => runLoss(engine, sShape, x, t, pShape, pred, target, attrs).losses[0];
      const fP = (x: Float32Array) => runLoss(engine, sShape, s, t, pShape, x, target, attrs).losses[0];
      expect(finiteDiff(s, g.ds, fS, { h: 1e-2, samples: 30, floor: 1e-3 })).toBeLessThan(2e-2);
      // the CLS row on its own (row 0 of each image): 9 + 9 coordinates
      const rowIdx = [...Array(9).keys(), ...[...Array(9).keys()].map((i) => 6 * 9 + i)];
      let worst = 0;
      for (const i of rowIdx) {
        const keep = s[i];
        s[i] = keep + 1e-2;
        const fp = fS(s);
        s[i] = keep - 1e-2;
        const fm = fS(s);
        s[i] = keep;
        const fd = (fp - fm) / 2e-2;
        worst = Math.max(worst, Math.abs(fd - g.ds[i]) / Math.max(Math.abs(fd), Math.abs(g.ds[i]), 1e-3));
      }
      expect(worst).toBeLessThan(2e-2);
      expect(finiteDiff(pred, g.dpred!, fP, { h: 1e-2, samples: 30, floor: 1e-3 })).toBeLessThan(2e-2);
    }
  });

  it('gives the same bits with 1 and 2 threads (ViT-Tiny-sized step)', () => {
    const sShape = [8, 119, 768];
    const pShape = [8, 78, 768];
    const n = 8 * 119 * 768;
    const t = randomF32(n, 21);
    const s = randomF32(n, 22);
    const pred = randomF32(8 * 78 * 768, 23);
    const target = randomF32(8 * 78 * 768, 24);
    using e1 = Engine.create({ device: 'cpu', threads: 1 });
    using e2 = Engine.create({ device: 'cpu', threads: 2 });
    const a = runLoss(e1, sShape, s, t, pShape, pred, target, {});
    const b = runLoss(e2, sShape, s, t, pShape, pred, target, {});
    expect(Array.from(a.losses)).toEqual(Array.from(b.losses));
    expect(Buffer.from(a.ds.buffer).equals(Buffer.from(b.ds.buffer))).toBe(true);
    expect(Buffer.from(a.dpred!.buffer).equals(Buffer.from(b.dpred!.buffer))).toBe(true);
    expect(a.losses.every(Number.isFinite)).toBe(true);
  });

  it('rejects bad calls with clear errors', () => {
    using s = engine.tensor([2, 4, 8]);
    using t = engine.tensor([2, 4, 8]);
    using t2 = engine.tensor([2, 5, 8]);
    using pred = engine.tensor([2, 3, 6]);
    using target = engine.tensor([2, 3, 6]);
    using badTarget = engine.tensor([2, 3, 5]);
    using losses = engine.tensor([4]);
    using losses3 = engine.tensor([3]);
    using ds = engine.tensor([2, 4, 8]);
    using dpred = engine.tensor([2, 3, 6]);
    expect(() => engine.op('medic_loss', [s, t2], [losses, ds], { w_pix: 0 })).toThrow(/medic_loss: input 1 must have the shape of input 0 \[2, 4, 8\], got \[2, 5, 8\]/);
    expect(() => engine.op('medic_loss', [s, t], [losses, ds])).toThrow(/medic_loss: w_pix != 0 needs pred/);
    expect(() => engine.op('medic_loss', [s, t, pred, badTarget], [losses, ds, dpred])).toThrow(/medic_loss: input 3 must have the shape of input 2/);
    expect(() => engine.op('medic_loss', [s, t, pred, target], [losses, ds])).toThrow(/needs dpred/);
    expect(() => engine.op('medic_loss', [s, t, pred, target], [losses3, ds, dpred])).toThrow(/output 0 must have 4 elements/);
    expect(() => engine.op('medic_loss', [s, t, pred, target], [losses, ds, dpred], { tau: 0 })).toThrow(/tau must be positive/);
    const gone = engine.tensor([2, 4, 8]);
    gone.dispose();
    expect(() => engine.op('medic_loss', [s, gone], [losses, ds], { w_pix: 0 })).toThrow(/disposed/);
  });
});

interface CeOut {
  loss: number;
  dlogits: Float32Array;
  correct: number;
}

function runCe(e: Engine, R: number, C: number, z: Float32Array, y: Int32Array, attrs: Attrs): CeOut {
  using Z = e.tensor([R, C], 'f32', z);
  using Y = e.tensor([R], 'i32', y);
  using loss = poisoned(e, [1]);
  using dz = poisoned(e, [R, C]);
  using correct = poisoned(e, [1]);
  e.op('cross_entropy', [Z, Y], [loss, dz, correct], attrs);
  return { loss: loss.read()[0], dlogits: dz.read(), correct: correct.read()[0] };
}

describe('cross_entropy', () => {
  for (const name of ceCases) {
    it(`matches F.cross_entropy in float64: ${name} ${JSON.stringify(fx.cases[name])}`, () => {
      const [R, C] = fx.shape(`${name}.logits`);
      const out = runCe(engine, R, C, fx.f32(`${name}.logits`), fx.i32(`${name}.labels`), fx.cases[name]);
      const ref = fx.f64(`${name}.loss`)[0];
      expect(Math.abs(out.loss - ref) / Math.abs(ref)).toBeLessThan(1e-5);
      expect(relErr(out.dlogits, fx.f64(`${name}.dlogits`))).toBeLessThan(1e-5);
      expect(out.correct).toBe(fx.f64(`${name}.correct`)[0]);
    });
  }

  it('dlogits agree with finite differences, with and without smoothing', () => {
    const R = 5;
    const C = 7;
    const z = randomF32(R * C, 31, 2);
    const y = new Int32Array([0, 6, 3, 3, 1]);
    for (const attrs of [{}, { smoothing: 0.15 }] as Record<string, number>[]) {
      const g = runCe(engine, R, C, z, y, attrs);
      const f = (x: Float32Array) => runCe(engine, R, C, x, y, attrs).loss;
      // the loss is an f32 (~2, ulp 2.4e-7): a central difference carries ~1e-5 of rounding, hence the floor
      expect(finiteDiff(z, g.dlogits, f, { h: 1e-2, samples: 35, floor: 5e-3 })).toBeLessThan(1e-2);
    }
  });

  it('writes the optional correct count only when asked, and counts argmax hits', () => {
    using Z = engine.tensor([3, 3], 'f32', new Float32Array([1, 5, 2, 9, 0, 0, 0, 0, 4]));
    using Y = engine.tensor([3], 'i32', new Int32Array([1, 1, 2]));
    using loss = poisoned(engine, [1]);
    using dz = poisoned(engine, [3, 3]);
    using correct = poisoned(engine, [1]);
    engine.op('cross_entropy', [Z, Y], [loss, dz]);
    expect(Number.isFinite(loss.read()[0])).toBe(true);
    engine.op('cross_entropy', [Z, Y], [loss, dz, correct]);
    expect(correct.read()[0]).toBe(2);
  });

  it('gives the same bits with 1 and 2 threads', () => {
    const R = 512;
    const C = 1000;
    const z = randomF32(R * C, 41, 3);
    const y = Int32Array.from({ length: R }, (_, i) => (i * 7919) % C);
    using e1 = Engine.create({ device: 'cpu', threads: 1 });
    using e2 = Engine.create({ device: 'cpu', threads: 2 });
    const a = runCe(e1, R, C, z, y, { smoothing: 0.1 });
    const b = runCe(e2, R, C, z, y, { smoothing: 0.1 });
    expect(a.loss).toBe(b.loss);
    expect(Buffer.from(a.dlogits.buffer).equals(Buffer.from(b.dlogits.buffer))).toBe(true);
  });

  it('rejects labels out of range and bad shapes with clear errors', () => {
    using Z = engine.tensor([3, 5]);
    using Yhi = engine.tensor([3], 'i32', new Int32Array([0, 4, 5]));
    using Yneg = engine.tensor([3], 'i32', new Int32Array([-1, 0, 0]));
    using Yf = engine.tensor([3], 'f32');
    using Y2 = engine.tensor([2], 'i32');
    using loss = engine.tensor([1]);
    using dz = engine.tensor([3, 5]);
    using dzBad = engine.tensor([3, 4]);
    expect(() => engine.op('cross_entropy', [Z, Yhi], [loss, dz])).toThrow(/cross_entropy: label 5 at row 2 is outside \[0, 5\)/);
    expect(() => engine.op('cross_entropy', [Z, Yneg], [loss, dz])).toThrow(/cross_entropy: label -1 at row 0 is outside \[0, 5\)/);
    // f32 targets are soft targets [R, C] (mixup): a [R] f32 tensor is neither form
    expect(() => engine.op('cross_entropy', [Z, Yf], [loss, dz])).toThrow(/cross_entropy: input 1 must have the shape of input 0 \[3, 5\], got \[3\]/);
    expect(() => engine.op('cross_entropy', [Z, Y2], [loss, dz])).toThrow(/input 1 must have 3 elements/);
    expect(() => engine.op('cross_entropy', [Z, Yhi], [loss, dzBad])).toThrow(/output 1 must have the shape of input 0/);
    expect(() => engine.op('cross_entropy', [Z, Yhi], [loss, dz], { smoothing: 1 })).toThrow(/smoothing must be in \[0, 1\)/);
  });
});
