// Child process of layernorm.test.ts: runs layernorm, layernorm_bwd and pixel_norm on the fixture cases
// under the ISA cap in MEDIC_CPU_ISA (scalar | avx2, read once by cpu_features()) and prints the
// engine description and the worst relative errors as JSON.
import { Engine } from '../../lib/engine/index.js';
import { loadFixture, relErr } from '../helpers/parity.js';

const fx = loadFixture('layernorm');
const e = Engine.create({ device: 'cpu', threads: 2 });
let worst = 0;
try {
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
  console.log(JSON.stringify({ describe: e.describe(), worst }));
} finally {
  e.dispose();
}
