// A MEDiC training step ready to run on any engine: config presets, random masks, state, feeds.
// Shared by bench/gpu_step.ts (ViT-B/16 at batch B on CUDA) and test/gpu/medic-step.test.ts (a small
// model on CUDA and on the CPU from the same parameters).
import type { Engine } from '../lib/engine/index.js';
import { GraphState, compile, type CompiledGraph } from '../lib/graph/index.js';
import { buildMedic, type MedicConfig, type MedicGraph } from '../lib/models/index.js';
import { maskInputs } from '../lib/train/masking.js';

/** ViT-B/16 student (sparse, mask 0.4 -> 1 + 118 tokens), CLIP ViT-B/16 teacher, 8 x 512 decoder. */
export function vitB16Config(batch: number): MedicConfig {
  return {
    batch,
    img: 224,
    patch: 16,
    student: { dim: 768, depth: 12, heads: 12, dropPath: 0.1 },
    teacher: { patch: 16, width: 768, layers: 12, heads: 12 },
    decoder: { dim: 512, depth: 8, heads: 16 },
    encoding: 'sparse',
    maskRatio: 0.4,
    weights: { w_tok: 1, w_cls: 0.4, w_pix: 1, tau: 0.1, beta: 1 },
    optimizer: { maxNorm: 3.0 },
  };
}

/** The same structure at test size (head dims 64 and 32 as in ViT-B and its decoder). */
export function smallConfig(batch = 4): MedicConfig {
  return {
    batch,
    img: 64,
    patch: 8,
    student: { dim: 128, depth: 2, heads: 2, dropPath: 0.1 },
    teacher: { patch: 8, width: 128, layers: 2, heads: 2 },
    decoder: { dim: 64, depth: 1, heads: 2 },
    encoding: 'sparse',
    maskRatio: 0.4,
    weights: { w_tok: 1, w_cls: 0.4, w_pix: 1, tau: 0.1, beta: 1 },
    optimizer: { maxNorm: 3.0 },
  };
}

export interface MedicStep {
  m: MedicGraph;
  cg: CompiledGraph;
  /** Program inputs for step s (1-based): the same images and masks each step, new DropPath seed. */
  feed(step: number): Record<string, Float32Array | Int32Array | Uint8Array>;
}

function lcg(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

export function buildStep(cfg: MedicConfig, seed = 1): MedicStep {
  const m = buildMedic(cfg);
  const cg = compile(m.graph);
  const rand = lcg(seed);
  const { batch: B } = cfg;
  const N = m.N;
  const images = new Float32Array(B * 3 * cfg.img * cfg.img);
  for (let i = 0; i < images.length; i++) images[i] = 2 * rand() - 1;
  const mask = new Uint8Array(B * N);
  for (let b = 0; b < B; b++) {
    const perm = Array.from({ length: N }, (_, i) => i);
    for (let i = N - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    for (let k = 0; k < m.M; k++) mask[b * N + perm[k]] = 1;
  }
  const fixed = { images, ...maskInputs(mask, B, N, m.scored) };
  const feed = (step: number) => {
    const all: Record<string, Float32Array | Int32Array | Uint8Array> = {
      ...fixed,
      seed: Int32Array.from([step, 7]),
      hyper: Float32Array.from([1.5e-4, 0.05, step]),
    };
    return Object.fromEntries(cg.inputs.map((i) => [i.name, all[i.name]]));
  };
  return { m, cg, feed };
}

/** State on `engine`, initialised by the native init ops (seeded), or copied from `from`. */
export async function makeState(
  engine: Engine,
  cg: CompiledGraph,
  init: { seed: number } | { from: GraphState },
): Promise<GraphState> {
  const state = new GraphState(engine, cg);
  if ('seed' in init) {
    await state.initNative(init.seed);
  } else {
    for (const name of ['params', 'frozen'] as const) {
      if (init.from.tensors.has(name)) state.get(name).write(init.from.get(name).read() as Float32Array);
    }
  }
  return state;
}
