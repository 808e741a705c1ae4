// Child process of the layernorm and elementwise tests: runs the kernels that have ISA variants on their
// fixture cases under the cap in MEDIC_CPU_ISA (scalar | avx2, read once by cpu_features()) and prints
// the engine description and the worst error as JSON.
//   tsx test/native/isa.child.ts layernorm     layernorm, layernorm_bwd, pixel_norm: worst relErr
//   tsx test/native/isa.child.ts elementwise   gelu, quick_gelu (+ bwd) on the sweep: worst maxAbsErr
import { Engine } from '../../lib/engine/index.js';
import { loadFixture, maxAbsErr, relErr } from '../helpers/parity.js';

const family = process.argv[2];
const e = Engine.create({ device: 'cpu', threads: 2 });
let worst = 0;

function elementwise(): void {
  const fx = loadFixture('elementwise');
  const x = fx.f32('sweep.x');
  const n = x.length;
  const X = e.tensor([n], 'f32', x), O = e.tensor([n], 'f32', new Float32Array(n).fill(1)), Y = e.tensor([n]);
  for (const [op, key, bwd] of [['gelu', 'gelu', false], ['gelu_bwd', 'gelu_dx', true], ['quick_gelu', 'quick', false], ['quick_gelu_bwd', 'quick_dx', true]] as const) {
    e.op(op, bwd ? [X, O] : [X], [Y]);
    worst = Math.max(worst, maxAbsErr(Y.read(), fx.f64(`sweep.${key}`)));
  }
  for (const t of [X, O, Y]) t.dispose();
}

function layernorm(): void {
  const fx = loadFixture('layernorm');
  for (const [name, cs] of Object.entries(fx.cases)) {
    if (name.startsWith('ln_')) {
      const { R, C, affine, eps } = cs;
      const x = e.tensor([R, C], 'f32', fx.f32(`${name}.x`));
      const w = affine >= 1 ? e.tensor([C], 'f32', fx.f32(`${name}.w`)) : null;
      const b = affine === 2 ? e.tensor([C], 'f32', fx.f32(`${name}.b`)) : null;
      const y = e.tensor([R, C]), m = e.tensor([R]), r = e.tensor([R]);
      const dy = e.tensor([R, C], 'f32', fx.f32(`${name}.dy`)), dx = e.tensor([R, C]);
      const dw = w ? e.tensor([C]) : null, db = b ? e.tensor([C]) : null;
      e.op('layernorm', [x, w, b], [y, m, r], { eps });
      e.op('layernorm_bwd', [dy, x, m, r, w], [dx, dw, db]);
      worst = Math.max(worst, relErr(y.read(), fx.f64(`${name}.y`)), relErr(r.read(), fx.f64(`${name}.rstd`)), relErr(dx.read(), fx.f64(`${name}.dx`)));
      if (dw) worst = Math.max(worst, relErr(dw.read(), fx.f64(`${name}.dw`)));
      if (db) worst = Math.max(worst, relErr(db.read(), fx.f64(`${name}.db`)));
      for (const t of [x, w, b, y, m, r, dy, dx, dw, db]) t?.dispose();
    } else {
      const { R, P } = cs;
      const x = e.tensor([R, P], 'f32', fx.f32(`${name}.x`)), y = e.tensor([R, P]);
      e.op('pixel_norm', [x], [y]);
      worst = Math.max(worst, relErr(y.read(), fx.f64(`${name}.y`)));
      x.dispose();
      y.dispose();
    }
  }
}

try {
  if (family === 'layernorm') layernorm();
  else if (family === 'elementwise') elementwise();
  else throw new Error(`isa.child.ts: unknown family '${family}'`);
  console.log(JSON.stringify({ describe: e.describe(), worst }));
} finally {
  e.dispose();
}
