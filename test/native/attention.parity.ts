// Parity of attention / attention_bwd / softmax / softmax_bwd against test/fixtures/attention.safetensors.
// Used by attention.test.ts, and run directly (node --import tsx) by it under MEDIC_CPU_ISA=avx2 and
// =scalar so the narrower kernel variants are checked on a machine that would pick AVX-512:
//   MEDIC_CPU_ISA=scalar node --import tsx test/native/attention.parity.ts   -> JSON on stdout
import type { Engine } from '../../lib/engine/index.js';
import { cpuEngine, type Fixture, loadFixture, poisoned, relErr } from '../helpers/parity.js';

export interface AttnCase {
  name: string;
  B: number;
  T: number;
  H: number;
  Hd: number;
  attrs: Record<string, number>;
}

export function attentionCases(fx: Fixture): AttnCase[] {
  return Object.entries(fx.cases)
    .filter(([n]) => !n.startsWith('sm_'))
    .map(([name, c]) => ({
      name,
      B: c.B,
      T: c.T,
      H: c.H,
      Hd: c.Hd,
      attrs: (c.scale !== undefined ? { heads: c.H, scale: c.scale } : { heads: c.H }) as Record<string, number>,
    }));
}

/** Forward then backward of one case with NaN-poisoned outputs; returns what the engine wrote. */
export function runAttention(
  engine: Engine,
  c: AttnCase,
  qkvData: Float32Array,
  doutData: Float32Array,
): { o: Float32Array; lse: Float32Array; dqkv: Float32Array } {
  const { B, T, H, Hd } = c;
  const qkv = engine.tensor([B, T, 3 * H * Hd], 'f32', qkvData);
  const dout = engine.tensor([B, T, H * Hd], 'f32', doutData);
  const o = poisoned(engine, [B, T, H * Hd]);
  const lse = poisoned(engine, [B, H, T]);
  const dqkv = poisoned(engine, [B, T, 3 * H * Hd]);
  try {
    engine.op('attention', [qkv], [o, lse], c.attrs);
    engine.op('attention_bwd', [dout, qkv, o, lse], [dqkv], c.attrs);
    return { o: o.read(), lse: lse.read(), dqkv: dqkv.read() };
  } finally {
    for (const t of [qkv, dout, o, lse, dqkv]) t.dispose();
  }
}

export function attentionErrors(engine: Engine, fx: Fixture): Record<string, { o: number; lse: number; dqkv: number }> {
  const out: Record<string, { o: number; lse: number; dqkv: number }> = {};
  for (const c of attentionCases(fx)) {
    const r = runAttention(engine, c, fx.f32(`${c.name}.qkv`), fx.f32(`${c.name}.dout`));
    out[c.name] = {
      o: relErr(r.o, fx.f64(`${c.name}.o`)),
      lse: relErr(r.lse, fx.f64(`${c.name}.lse`)),
      dqkv: relErr(r.dqkv, fx.f64(`${c.name}.dqkv`)),
    };
  }
  return out;
}

export function softmaxErrors(engine: Engine, fx: Fixture): Record<string, { y: number; dx: number }> {
  const out: Record<string, { y: number; dx: number }> = {};
  for (const [name, c] of Object.entries(fx.cases)) {
    if (!name.startsWith('sm_')) continue;
    const shape = [c.R, c.C];
    const x = engine.tensor(shape, 'f32', fx.f32(`${name}.x`));
    const dy = engine.tensor(shape, 'f32', fx.f32(`${name}.dy`));
    const y = poisoned(engine, shape);
    const dx = poisoned(engine, shape);
    try {
      engine.op('softmax', [x], [y], { scale: c.scale });
      engine.op('softmax_bwd', [y, dy], [dx], { scale: c.scale });
      out[name] = { y: relErr(y.read(), fx.f64(`${name}.y`)), dx: relErr(dx.read(), fx.f64(`${name}.dx`)) };
    } finally {
      for (const t of [x, dy, y, dx]) t.dispose();
    }
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const engine = cpuEngine();
  try {
    const fx = loadFixture('attention');
    const report = { describe: engine.describe(), attention: attentionErrors(engine, fx), softmax: softmaxErrors(engine, fx) };
    console.log(JSON.stringify(report));
  } finally {
    engine.dispose();
  }
}
