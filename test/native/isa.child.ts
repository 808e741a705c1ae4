// Child process of the layernorm, elementwise, bf16-ops and optim tests: runs the kernels that have ISA variants on
// their fixture cases under the cap in MEDIC_CPU_ISA (scalar | avx2 | avx512, read once by cpu_features()) and
// prints the engine description and the worst error (optim: a digest of the results' bits) as JSON.
//   tsx test/native/isa.child.ts layernorm     layernorm, layernorm_bwd, pixel_norm: worst relErr
//   tsx test/native/isa.child.ts elementwise   gelu, quick_gelu (+ bwd) on the sweep: worst maxAbsErr
//   tsx test/native/isa.child.ts attention-bf16  bf16 attention (+ bwd) against the fp32 kernel on the
//                                                same bf16 values: worst = number of differing elements
//   tsx test/native/isa.child.ts optim         three AdamW steps (clipped, then with a per-element lr
//                                                scale): digest = sha256 of the bits of p, m and v
import { createHash } from 'node:crypto';

import { Engine } from '../../lib/engine/index.js';
import { bf16ToF32, f32ToBf16 } from '../../lib/io/safetensors.js';
import { loadFixture, maxAbsErr, randomF32, relErr } from '../helpers/parity.js';

const family = process.argv[2];
const e = Engine.create({ device: 'cpu', threads: 2 });
let worst = 0;
let digest: string | undefined;

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

// bf16 attention and attention_bwd (T = 197: a 5-token tail block; Hd = 64) on bf16 tensors, then on
// f32 copies of the same values with the outputs rounded to bf16: elements whose bits differ.
function attentionBf16(): void {
  const [B, T, H, Hd] = [2, 197, 2, 64];
  const D = H * Hd;
  const qkv16 = f32ToBf16(randomF32(B * T * 3 * D, 31)), dout16 = f32ToBf16(randomF32(B * T * D, 32));
  const run = (bf16: boolean) => {
    const make = (shape: number[], v?: Uint16Array) =>
      bf16 ? e.tensor(shape, 'bf16', v) : e.tensor(shape, 'f32', v && bf16ToF32(v));
    const qkv = make([B, T, 3 * D], qkv16), dout = make([B, T, D], dout16);
    const o = make([B, T, D]), lse = e.tensor([B, H, T]), dqkv = make([B, T, 3 * D]);
    e.op('attention', [qkv], [o, lse], { heads: H });
    const oBits = bf16 ? (o.read() as Uint16Array) : f32ToBf16(o.read() as Float32Array);
    // the backward of both runs reads the same (bf16-valued) o
    const oIn = make([B, T, D], oBits);
    e.op('attention_bwd', [dout, qkv, oIn, lse], [dqkv], { heads: H });
    const dBits = bf16 ? (dqkv.read() as Uint16Array) : f32ToBf16(dqkv.read() as Float32Array);
    const lseOut = lse.read() as Float32Array;
    for (const t of [qkv, dout, o, lse, dqkv, oIn]) t.dispose();
    return { oBits, dBits, lseOut };
  };
  const a = run(true), b = run(false);
  const differ = (x: ArrayLike<number>, y: ArrayLike<number>) => Array.from(x).filter((v, i) => !Object.is(v, y[i])).length;
  worst = differ(a.oBits, b.oBits) + differ(a.dBits, b.dBits) + differ(a.lseOut, b.lseOut);
}

// n = 100,003: a tail past every vector width, and more than one thread's share.
function optim(): void {
  const n = 100_003;
  const p = e.tensor([n], 'f32', randomF32(n, 41)), m = e.tensor([n]), v = e.tensor([n]);
  const g = e.tensor([n]), norm = e.tensor([1]), hyper = e.tensor([3]);
  const mask = e.tensor([n], 'u8', Uint8Array.from(randomF32(n, 42), (x) => (x > 0 ? 1 : 0)));
  const scale = e.tensor([n], 'f32', Float32Array.from(randomF32(n, 43), (x) => 0.5 + Math.abs(x)));
  for (let k = 0; k < 3; k++) {
    g.write(randomF32(n, 44 + k, 0.1));
    e.op('grad_norm', [g], [norm]);
    hyper.write(new Float32Array([1e-3, 0.05, k + 1]));
    if (k < 2) e.op('adamw', [g, mask, hyper, norm], [p, m, v], { max_norm: 1 });
    else e.op('adamw', [g, mask, hyper, null, scale], [p, m, v]);
  }
  const h = createHash('sha256');
  for (const t of [p, m, v]) h.update(new Uint8Array((t.read() as Float32Array).buffer));
  digest = h.digest('hex');
  for (const t of [p, m, v, g, norm, hyper, mask, scale]) t.dispose();
}

try {
  if (family === 'layernorm') layernorm();
  else if (family === 'optim') optim();
  else if (family === 'attention-bf16') attentionBf16();
  else if (family === 'elementwise') elementwise();
  else throw new Error(`isa.child.ts: unknown family '${family}'`);
  console.log(JSON.stringify({ describe: e.describe(), worst, digest }));
} finally {
  e.dispose();
}
