// gemm parity runs shared by gemm.test.ts and its per-ISA child processes. cpu_features() is read
// once per process, so the AVX2 and scalar paths are checked by running this file as a script with
// MEDIC_CPU_ISA set (it prints one JSON line: the engine's description and every case's error).
//
// Two kinds of case: the committed PyTorch float64 fixtures (test/fixtures/gemm.safetensors), and
// larger random ones checked against a float64 product computed here (threaded path, all transpose
// combinations, sizes that are no multiple of any tile), which need no fixture bytes.
import { Engine } from '../../lib/engine/index.js';
import { loadFixture, poisoned, randomF32, relErr } from '../helpers/parity.js';

export interface CaseResult {
  name: string;
  errC: number;
  errPre?: number;
}

const isaOf = (describe: string) => (describe.includes('avx512f') ? 'avx512' : describe.includes('avx2') ? 'avx2' : 'scalar');
export { isaOf };

/** Every fixture case: C (and preact) poisoned with NaN before the call unless acc=1. */
export function fixtureResults(engine: Engine): CaseResult[] {
  const fx = loadFixture('gemm');
  const out: CaseResult[] = [];
  for (const [name, at] of Object.entries(fx.cases)) {
    const A = engine.tensor(fx.shape(`${name}.A`), 'f32', fx.f32(`${name}.A`));
    const B = engine.tensor(fx.shape(`${name}.B`), 'f32', fx.f32(`${name}.B`));
    const bias = at.bias ? engine.tensor(fx.shape(`${name}.bias`), 'f32', fx.f32(`${name}.bias`)) : null;
    const cShape = fx.shape(`${name}.C`);
    const C = at.acc ? engine.tensor(cShape, 'f32', fx.f32(`${name}.C0`)) : poisoned(engine, cShape);
    const P = at.act ? poisoned(engine, cShape) : null;
    try {
      engine.op('gemm', [A, B, bias], [C, P], { trans_a: at.trans_a, trans_b: at.trans_b, alpha: at.alpha, acc: at.acc, act: at.act });
      const r: CaseResult = { name, errC: relErr(C.read(), fx.f64(`${name}.C`)) };
      if (P) r.errPre = relErr(P.read(), fx.f64(`${name}.preact`));
      out.push(r);
    } finally {
      [A, B, bias, C, P].forEach((t) => t?.dispose());
    }
  }
  return out;
}

/** op(A) op(B) in float64; A stored [K, M] when ta, B stored [N, K] when tb. */
export function refGemm(A: Float32Array, B: Float32Array, M: number, N: number, K: number, ta: boolean, tb: boolean): Float64Array {
  const C = new Float64Array(M * N);
  const bt = new Float64Array(K * N); // op(B) row-major, so the inner loop is contiguous
  for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) bt[k * N + j] = tb ? B[j * K + k] : B[k * N + j];
  for (let i = 0; i < M; i++)
    for (let k = 0; k < K; k++) {
      const a = ta ? A[k * M + i] : A[i * K + k];
      const row = k * N;
      const base = i * N;
      for (let j = 0; j < N; j++) C[base + j] += a * bt[row + j];
    }
  return C;
}

export const randomShapes: [number, number, number][] = [
  [1, 1, 1],
  [1, 7, 119],
  [7, 1, 197],
  [7, 7, 7],
  [33, 17, 1],
  [197, 119, 1001], // threaded, K over several KC blocks
  [119, 200, 64],
  [13, 300, 257],
];

/** Random cases against refGemm, every transpose combination, with bias and acc on alternate ones. */
export function randomResults(engine: Engine): CaseResult[] {
  const out: CaseResult[] = [];
  let seed = 11;
  for (const [M, N, K] of randomShapes)
    for (const ta of [false, true])
      for (const tb of [false, true]) {
        const useBias = (seed & 1) === 1;
        const acc = (seed & 2) === 2;
        const a = randomF32(M * K, seed++), b = randomF32(K * N, seed++), bv = randomF32(N, seed++), c0 = randomF32(M * N, seed++);
        const A = engine.tensor(ta ? [K, M] : [M, K], 'f32', a);
        const B = engine.tensor(tb ? [N, K] : [K, N], 'f32', b);
        const bias = useBias ? engine.tensor([N], 'f32', bv) : null;
        const C = acc ? engine.tensor([M, N], 'f32', c0) : poisoned(engine, [M, N]);
        try {
          engine.op('gemm', [A, B, bias], [C], { trans_a: +ta, trans_b: +tb, acc: +acc, alpha: 0.75 });
          const ref = refGemm(a, b, M, N, K, ta, tb);
          for (let i = 0; i < M * N; i++) ref[i] = 0.75 * ref[i] + (useBias ? bv[i % N] : 0) + (acc ? c0[i] : 0);
          out.push({ name: `${M}x${N}x${K} ta=${+ta} tb=${+tb} bias=${+useBias} acc=${+acc}`, errC: relErr(C.read(), ref) });
        } finally {
          [A, B, bias, C].forEach((t) => t?.dispose());
        }
      }
  return out;
}

/** GELU epilogue element by element: worst |C - gelu(preact)| / max(|gelu|, 1e-6), preact reaching |x| ~ 9. */
export function geluTail(engine: Engine): { worst: number; maxAbsPre: number } {
  const [M, N, K] = [50, 70, 300];
  const A = engine.tensor([M, K], 'f32', randomF32(M * K, 8, 0.5)), B = engine.tensor([N, K], 'f32', randomF32(N * K, 9, 0.5));
  const C = poisoned(engine, [M, N]), P = poisoned(engine, [M, N]);
  try {
    engine.op('gemm', [A, B], [C, P], { trans_b: 1, act: 1 });
    const c = C.read(), p = P.read();
    let maxAbsPre = 0;
    let worst = 0;
    for (let i = 0; i < c.length; i++) {
      maxAbsPre = Math.max(maxAbsPre, Math.abs(p[i]));
      const g = 0.5 * p[i] * (1 + erf(p[i] / Math.SQRT2));
      const e = Math.abs(c[i] - g) / Math.max(Math.abs(g), 1e-6);
      worst = Number.isFinite(e) ? Math.max(worst, e) : Infinity;
    }
    return { worst, maxAbsPre };
  } finally {
    [A, B, C, P].forEach((t) => t.dispose());
  }
}

// erf to ~1e-15 (series / continued fraction), for the float64 GELU references above.
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let sum = ax, term = ax;
    for (let n = 1; n < 80; n++) {
      term *= (-ax * ax) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    const r = (2 / Math.sqrt(Math.PI)) * sum;
    return x < 0 ? -r : r;
  }
  // erfc by Lentz's continued fraction for large |x|
  let f = ax, C = ax, D = 0;
  for (let n = 1; n < 200; n++) {
    const an = n / 2;
    D = ax + an * D;
    D = 1 / D;
    C = ax + an / C;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return x < 0 ? erfc - 1 : 1 - erfc;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const engine = Engine.create({ device: 'cpu' });
  try {
    const describe = engine.describe();
    console.log(JSON.stringify({ describe, fixtures: fixtureResults(engine), random: randomResults(engine), geluTail: geluTail(engine) }));
  } finally {
    engine.dispose();
  }
}
