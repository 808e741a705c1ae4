// The AMX path of the bf16 gemm (native/cpu/gemm_amx.inc), run by gemm-bf16.test.ts in a child process
// with MEDIC_CPU_AMX=emulate: TDPBF16PS emulated in C++ per the SDM, so that the tiling, the padding of
// K to whole 16-pair tiles and the packing of A as rows of k-pairs are checked on CPUs without AMX.
//
// Printed (one JSON line):
//   fixtures   the PyTorch bf16 fixtures' errors (the same tolerances as the vdpbf16ps kernel);
//   exact      per odd shape and transpose, whether C equals a model of TDPBF16PS's order (one K slice:
//              the fp32 sum of the exact products in k order, lo then hi of each pair, from zero);
//   threads    whether 1 and 2 threads give the same bits (the 2-thread run packs B together).
// (The path is taken only after a first small product on the emulated tiles agrees with the vdpbf16ps
// kernel, amx_agrees; were it not, the products would be vdpbf16ps's and `exact` false.)
import { Engine } from '../../lib/engine/index.js';
import { bf16ToF32, f32ToBf16 } from '../../lib/io/safetensors.js';
import { randomF32 } from '../helpers/parity.js';
import { bf16FixtureResults } from './gemm_bf16_cases.js';

/** C = op(A) op(B) summed as TDPBF16PS does within one K slice (operands already bf16-rounded). */
export function tileOrderGemm(a: Float32Array, b: Float32Array, M: number, N: number, K: number, ta: boolean, tb: boolean): Float32Array {
  const c = new Float32Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s = Math.fround(s + a[ta ? k * M + i : i * K + k] * b[tb ? j * K + k : k * N + j]);
      c[i * N + j] = s;
    }
  return c;
}

function run(e: Engine, a: Float32Array, b: Float32Array, M: number, N: number, K: number, ta: boolean, tb: boolean): Float32Array {
  const A = e.tensor(ta ? [K, M] : [M, K], 'bf16', f32ToBf16(a));
  const B = e.tensor(tb ? [N, K] : [K, N], 'bf16', f32ToBf16(b));
  const C = e.tensor([M, N], 'f32', new Float32Array(M * N).fill(NaN));
  try {
    e.op('gemm', [A, B], [C], { trans_a: +ta, trans_b: +tb });
    return C.read() as Float32Array;
  } finally {
    [A, B, C].forEach((t) => t.dispose());
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const one = Engine.create({ device: 'cpu', threads: 1 });
  const two = Engine.create({ device: 'cpu', threads: 2 });
  try {
    const exact: { name: string; same: boolean }[] = [];
    const threads: { name: string; same: boolean }[] = [];
    let seed = 70;
    // 197 rows: six whole 32-row blocks and 5 rows of a seventh (and 16-row panels of the rows form
    // ending mid-panel); 119 columns: 3 panels and 23 lanes; K 1001: 501 pairs padded to 512; K 64:
    // exactly two 16-pair steps, no padding; 50 x 40: one partial block, one partial second panel
    for (const [M, N, K] of [[197, 119, 1001], [50, 40, 64]] as const)
      for (const ta of [false, true])
        for (const tb of [false, true]) {
          const a = bf16ToF32(f32ToBf16(randomF32(M * K, seed++))), b = bf16ToF32(f32ToBf16(randomF32(K * N, seed++)));
          const name = `${M}x${N}x${K} ta=${+ta} tb=${+tb}`;
          const c1 = run(one, a, b, M, N, K, ta, tb), c2 = run(two, a, b, M, N, K, ta, tb);
          const model = tileOrderGemm(a, b, M, N, K, ta, tb);
          exact.push({ name, same: Buffer.from(c1.buffer).equals(Buffer.from(model.buffer)) });
          threads.push({ name, same: Buffer.from(c1.buffer).equals(Buffer.from(c2.buffer)) });
        }
    console.log(JSON.stringify({ fixtures: bf16FixtureResults(one), exact, threads }));
  } finally {
    one.dispose();
    two.dispose();
  }
}
