// Loss balancing ops: medic_loss's per-term scale input and the uncertainty weighting
// (loss_weights / loss_weights_bwd), against PyTorch float64 autograd (test/fixtures/gen/balance.py)
// and finite differences of the whole balanced objective.
import { describe, expect, it } from 'vitest';

import type { Attrs } from '../../lib/engine/index.js';
import { f32, finiteDiff, loadFixture, randomF32, relErr, runOp } from '../helpers/parity.js';

const fx = loadFixture('balance');
const names = (prefix: string) => Object.keys(fx.cases).filter((c) => c.startsWith(prefix));

/** medic_loss on a fixture case's inputs with an optional scale input; returns losses, ds, dpred. */
function loss(name: string, scale: ArrayLike<number> | null, attrs: Attrs = fx.cases[name]) {
  const sShape = fx.shape(`${name}.s`);
  const pShape = fx.shape(`${name}.pred`);
  const ins = [
    f32(sShape, fx.f32(`${name}.s`)),
    f32(sShape, fx.f32(`${name}.t`)),
    f32(pShape, fx.f32(`${name}.pred`)),
    f32(pShape, fx.f32(`${name}.target`)),
    scale ? f32([scale.length], Float32Array.from(scale)) : null,
  ];
  const [losses, ds, dpred] = runOp('medic_loss', ins, [f32([4]), f32(sShape), f32(pShape)], attrs);
  return { losses: losses as Float32Array, ds: ds as Float32Array, dpred: dpred as Float32Array };
}

const weightsOf = (a: Attrs): number[] => [Number(a.w_tok ?? 1), Number(a.w_cls ?? 0.4), Number(a.w_pix ?? 1)];

describe('medic_loss with a per-term scale', () => {
  it('has the fixture cases', () => expect(names('bal_scaled_').length).toBe(2));

  for (const name of names('bal_scaled_')) {
    it(`matches PyTorch float64 with the scales folded into the weights: ${name}`, () => {
      const out = loss(name, fx.f32(`${name}.scale`));
      const ref = fx.f64(`${name}.losses`);
      for (let k = 0; k < 4; k++) {
        if (ref[k] === 0) expect(out.losses[k]).toBe(0);
        else expect(Math.abs(out.losses[k] - ref[k]) / Math.abs(ref[k])).toBeLessThan(1e-5);
      }
      expect(relErr(out.ds, fx.f64(`${name}.ds`))).toBeLessThan(1e-5);
      expect(relErr(out.dpred, fx.f64(`${name}.dpred`))).toBeLessThan(1e-5);
    });
  }

  it('a scale of ones gives the unscaled op bit for bit', () => {
    const name = 'bal_scaled_a';
    const plain = loss(name, null);
    const ones = loss(name, [1, 1, 1]);
    expect(Array.from(ones.losses)).toEqual(Array.from(plain.losses));
    expect(Array.from(ones.ds)).toEqual(Array.from(plain.ds));
    expect(Array.from(ones.dpred)).toEqual(Array.from(plain.dpred));
  });

  it('rejects a scale that is not 3 values, naming the slot', () => {
    expect(() => loss('bal_scaled_a', [1, 1])).toThrow(/medic_loss.*input 4/);
  });
});

describe('uncertainty weighting (loss_weights, loss_weights_bwd)', () => {
  for (const name of names('bal_unc_')) {
    it(`matches PyTorch float64 through the whole objective: ${name}`, () => {
      const attrs = fx.cases[name];
      const [scale] = runOp('loss_weights', [f32([3], fx.f32(`${name}.logvar`))], [f32([3])]);
      expect(relErr(scale, fx.f64(`${name}.scale`))).toBeLessThan(1e-6);
      const out = loss(name, scale);
      expect(relErr(out.losses.subarray(1), fx.f64(`${name}.terms`))).toBeLessThan(1e-5);
      expect(relErr(out.ds, fx.f64(`${name}.ds`))).toBeLessThan(1e-5);
      expect(relErr(out.dpred, fx.f64(`${name}.dpred`))).toBeLessThan(1e-5);
      // dlogvar accumulates onto what is there.
      const [dlv] = runOp('loss_weights_bwd', [f32([3], fx.f32(`${name}.logvar`)), f32([4], out.losses)], [f32([3], [1, 1, 1])], attrs);
      const ref = Array.from(fx.f64(`${name}.dlogvar`), (g) => g + 1);
      expect(relErr(dlv, ref)).toBeLessThan(1e-5);
    });
  }

  it('dlogvar agrees with finite differences of the balanced objective', () => {
    const name = 'bal_unc_a';
    const w = weightsOf(fx.cases[name]);
    const objective = (lv: Float32Array) => {
      const [scale] = runOp('loss_weights', [f32([3], lv)], [f32([3])]);
      const total = loss(name, scale).losses[0];
      return total + w[0] * lv[0] + w[1] * lv[1] + w[2] * lv[2];
    };
    const lv = randomF32(3, 5, 0.7);
    const [scale] = runOp('loss_weights', [f32([3], lv)], [f32([3])]);
    const [dlv] = runOp('loss_weights_bwd', [f32([3], lv), f32([4], loss(name, scale).losses)], [f32([3], [0, 0, 0])], fx.cases[name]);
    expect(finiteDiff(lv, dlv, objective, { h: 1e-2, samples: 3 })).toBeLessThan(1e-3);
  });

  it('a zero weight leaves its log-variance without gradient', () => {
    const [dlv] = runOp('loss_weights_bwd', [f32([3], [0.3, -0.2, 0.5]), f32([4], [9, 2, 3, 4])], [f32([3], [0, 0, 0])], {
      w_tok: 1,
      w_cls: 0.4,
      w_pix: 0,
    });
    expect(dlv[2]).toBe(0);
    expect(dlv[0]).toBeCloseTo(1 - Math.exp(-0.3) * 2, 6);
    expect(dlv[1]).toBeCloseTo(0.4 * (1 - Math.exp(0.2) * 3), 6);
  });
});
