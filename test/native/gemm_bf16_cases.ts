// bf16 gemm parity runs shared by gemm-bf16.test.ts and its child process (MEDIC_CPU_ISA=avx512 takes
// the fp32 fallback on a CPU with AVX512-BF16; cpu_features() is read once per process).
//
// Errors per case, against test/fixtures/gemm_bf16.safetensors (see its generator):
//   errC / errPre: relErr against the float64 contract reference (bf16-rounded operands);
//   ulpC / ulpPre: for a bf16 output, the largest |ours - ref| in bf16 ulps of ref (<= 1: ours is one
//                  of the two bf16 neighbours of the exact value; 0 for an f32 output);
//   torchC / torchPre: relErr against PyTorch's own bf16 computation.
import { Engine, type Tensor } from '../../lib/engine/index.js';
import { bf16ToF32, f32ToBf16 } from '../../lib/io/safetensors.js';
import { loadFixture, randomF32, relErr, type Fixture } from '../helpers/parity.js';
import { SafetensorsFile } from '../../lib/io/safetensors.js';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Bf16CaseResult {
  name: string;
  c16: boolean;
  errC: number;
  ulpC: number;
  torchC: number;
  errPre?: number;
  ulpPre?: number;
  torchPre?: number;
}

const fixturePath = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'gemm_bf16.safetensors');

/**
 * Largest |out - ref| over the bf16 ulp at ref (2^(exponent - 7)); Infinity on a non-finite value.
 * Values under 2^-20 are judged on the ulp of 2^-20 (GELU's far negative tail underflows there).
 */
export function bf16Ulps(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) return Infinity;
    const r = Math.abs(ref[i]);
    const ulp = 2 ** (Math.max(-20, r === 0 ? -20 : Math.floor(Math.log2(r))) - 7);
    worst = Math.max(worst, Math.abs(out[i] - ref[i]) / ulp);
  }
  return worst;
}

function readF32(t: Tensor): Float32Array {
  const v = t.read();
  return v instanceof Uint16Array ? bf16ToF32(v) : (v as Float32Array);
}

/** A float tensor of the fixture in the dtype it was stored in (BF16 -> bf16 bits, else f32). */
function load(engine: Engine, fx: Fixture, raw: SafetensorsFile, name: string): Tensor {
  if (raw.info(name).dtype === 'BF16') return engine.tensor(fx.shape(name), 'bf16', raw.read(name) as Uint16Array);
  return engine.tensor(fx.shape(name), 'f32', fx.f32(name));
}

export function bf16FixtureResults(engine: Engine): Bf16CaseResult[] {
  const fx = loadFixture('gemm_bf16');
  const raw = new SafetensorsFile(fixturePath);
  const out: Bf16CaseResult[] = [];
  for (const [name, at] of Object.entries(fx.cases)) {
    const c16 = at.c16 === 1;
    const cShape = fx.shape(`${name}.C`);
    const n = cShape.reduce((a, b) => a * b, 1);
    const fresh = () => (c16 ? engine.tensor(cShape, 'bf16', new Uint16Array(n).fill(0x7fc0)) : engine.tensor(cShape, 'f32', new Float32Array(n).fill(NaN)));
    const A = load(engine, fx, raw, `${name}.A`), B = load(engine, fx, raw, `${name}.B`);
    const bias = at.bias ? load(engine, fx, raw, `${name}.bias`) : null;
    const C = at.acc ? load(engine, fx, raw, `${name}.C0`) : fresh();
    const P = at.act ? fresh() : null;
    try {
      engine.op('gemm', [A, B, bias], [C, P], { trans_a: at.trans_a, trans_b: at.trans_b, alpha: at.alpha, acc: at.acc, act: at.act });
      const c = readF32(C), ref = fx.f64(`${name}.C`);
      const r: Bf16CaseResult = { name, c16, errC: relErr(c, ref), ulpC: c16 ? bf16Ulps(c, ref) : 0, torchC: relErr(c, raw.readF32(`${name}.C_torch`)) };
      if (P) {
        const p = readF32(P), pref = fx.f64(`${name}.preact`);
        r.errPre = relErr(p, pref);
        r.ulpPre = c16 ? bf16Ulps(p, pref) : 0;
        r.torchPre = relErr(p, raw.readF32(`${name}.preact_torch`));
      }
      out.push(r);
    } finally {
      [A, B, bias, C, P].forEach((t) => t?.dispose());
    }
  }
  raw.close();
  return out;
}

export interface AttrResult {
  /** attr bf16=1 on f32 operands gave the bits of the same gemm on bf16 copies (C and the preactivation). */
  sameBits: boolean;
  /** Its preactivation's relErr against the plain fp32 gemm (the operands' bf16 rounding, ~2^-9). */
  relErrVsFp32: number;
}

/** The graph's mixed-precision compute (attr bf16=1, f32 operands, bias + GELU) against bf16 operand dtypes. */
export function attrAgainstDtype(e: Engine): AttrResult {
  const [M, N, K] = [97, 70, 900];
  const a = randomF32(M * K, 21), b = randomF32(N * K, 22), bias = randomF32(N, 23);
  const run = (A: Tensor, B: Tensor, attrs: Record<string, number>) => {
    const bt = e.tensor([N], 'f32', bias), C = e.tensor([M, N], 'f32'), P = e.tensor([M, N], 'f32');
    try {
      e.op('gemm', [A, B, bt], [C, P], { trans_b: 1, act: 1, ...attrs });
      return [C.read() as Float32Array, P.read() as Float32Array];
    } finally {
      [A, B, bt, C, P].forEach((t) => t.dispose());
    }
  };
  const viaAttr = run(e.tensor([M, K], 'f32', a), e.tensor([N, K], 'f32', b), { bf16: 1 });
  const viaDtype = run(e.tensor([M, K], 'bf16', f32ToBf16(a)), e.tensor([N, K], 'bf16', f32ToBf16(b)), {});
  const plain = run(e.tensor([M, K], 'f32', a), e.tensor([N, K], 'f32', b), {});
  const same = (x: Float32Array, y: Float32Array) => Buffer.from(x.buffer).equals(Buffer.from(y.buffer));
  return { sameBits: same(viaAttr[0], viaDtype[0]) && same(viaAttr[1], viaDtype[1]), relErrVsFp32: relErr(viaAttr[1], plain[1]) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const engine = Engine.create({ device: 'cpu' });
  try {
    console.log(JSON.stringify({ describe: engine.describe(), fixtures: bf16FixtureResults(engine), attr: attrAgainstDtype(engine) }));
  } finally {
    engine.dispose();
  }
}
