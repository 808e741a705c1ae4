// The cost evolved masking adds to a step (docs/TEACHER.md, Evolved masking):
//   1. attention_probs on the teacher's target block, beside the fused attention forward of the same
//      block (the op the teacher runs anyway), same engine, threads and shapes;
//   2. hc's Gram matrices attn^T attn: the batched gemm the teacher program runs (engine, --threads);
//   3. the masks of one step: clustering (em on the maps, hc on their Gram matrices) + noise + argsort
//      for B images of N patches, on 1 and 2 host threads (evolvedMasks, which calls the native
//      clusterParts).
// Usage: npx tsx bench/evolved_masks.ts [--threads 2] [--reps 3] [--batch 32] [--grids 4,7,14]
//        [--clusters em,hc] [--probs 0]  (--probs 0 skips part 1)
import { Engine } from '../lib/engine/index.js';
import { evolvedMasks } from '../lib/train/evolved.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const threads = arg('threads', 2);
const reps = arg('reps', 3);
const B = arg('batch', 32);
const list = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return (i > 0 ? process.argv[i + 1] : def).split(',');
};
const grids = list('grids', '4,7,14').map(Number);
const clusters = list('clusters', 'em,hc') as ('em' | 'hc')[];

function best(fn: () => void): number {
  fn(); // warm-up
  let t = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    fn();
    t = Math.min(t, performance.now() - t0);
  }
  return t;
}

const randn = (n: number, seed: number) => {
  const a = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 4294967296 - 0.5) * 3;
  }
  return a;
};

const engine = Engine.create({ device: 'cpu', threads });
console.log(`# evolved masking cost: ${engine.describe()}, best of ${reps}`);
if (arg('probs', 1)) console.log('\n## attention_probs beside the fused attention forward (teacher block)');
for (const [Bt, T, H, Hd] of arg('probs', 1)
  ? [
      [8, 197, 12, 64],
      [32, 50, 4, 32],
      [32, 17, 4, 32],
    ]
  : []) {
  const qkv = engine.tensor([Bt, T, 3 * H * Hd], 'f32', randn(Bt * T * 3 * H * Hd, 1));
  const o = engine.tensor([Bt, T, H * Hd], 'f32'),
    lse = engine.tensor([Bt, H, T], 'f32'),
    p = engine.tensor([Bt, T - 1, T - 1], 'f32');
  const ta = best(() => engine.op('attention', [qkv], [o, lse], { heads: H }));
  const tp = best(() => engine.op('attention_probs', [qkv], [p], { heads: H }));
  console.log(
    `B=${Bt} T=${T} H=${H} Hd=${Hd}: attention ${ta.toFixed(2)} ms, attention_probs ${tp.toFixed(2)} ms (${(tp / ta).toFixed(2)}x)`,
  );
  for (const t of [qkv, o, lse, p]) t.dispose();
}
console.log(`\n## masks of one step (${B} images): clustering + noise + argsort (hc: after its Gram in the engine)`);
for (const g of grids) {
  const N = g * g;
  // softmax rows of random scores: attention-like maps
  const attn = randn(B * N * N, 7);
  for (let r = 0; r < B * N; r++) {
    let m = -Infinity,
      s = 0;
    for (let j = 0; j < N; j++) m = Math.max(m, attn[r * N + j]);
    for (let j = 0; j < N; j++) s += attn[r * N + j] = Math.exp(attn[r * N + j] - m);
    for (let j = 0; j < N; j++) attn[r * N + j] /= s;
  }
  // hc's input: one batched gemm attn^T attn on the engine, as the teacher program computes it
  const ta = engine.tensor([B, N, N], 'f32', attn);
  const tg = engine.tensor([B, N, N], 'f32');
  const tgram = best(() => engine.op('gemm', [ta, ta], [tg], { trans_a: 1 }));
  const gram = tg.read() as Float32Array;
  ta.dispose();
  tg.dispose();
  if (clusters.includes('hc'))
    console.log(
      `N=${N} hc's Gram (gemm, ${threads} threads): ${tgram.toFixed(1)} ms per step, ${(tgram / B).toFixed(2)} ms per image`,
    );
  for (const cluster of clusters)
    for (const th of [1, threads]) {
      // epoch 0 of 10 draws K near 40 (at most N)
      const cfg = { cluster, ratio: 0.75, gridH: g, gridW: g, evolveEpochs: 10, gamma: 0.2, lambda: 0, threads: th };
      const t = best(() => evolvedMasks(cfg, cluster === 'hc' ? { gram } : { attn }, B, 0, 0, 0));
      console.log(`N=${N} ${cluster} threads=${th}: ${t.toFixed(1)} ms per step, ${(t / B).toFixed(2)} ms per image`);
    }
}
engine.dispose();
