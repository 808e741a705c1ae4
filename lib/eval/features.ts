// Features of a student, for every evaluation (kNN, linear probe, fine-tune's starting point): the
// evaluation forward (no masking, no drop path) compiled as its own forward-only program, loaded with
// the training weights by parameter name (or left at the seeded random init: the random-init twin),
// and run over a dataset in order with the eval transform (resize + center crop at the model's size).
//
// Features per image: for each probed block l (default: the last), the block's output through the
// encoder's final LayerNorm, then the CLS token, the mean of the patch tokens, or both concatenated
// (CLS first). kNN reads the CLS of the last block (the DINO protocol).
import { DataLoader, type ImageDataset } from '../data/index.js';
import type { Engine, Program, World } from '../engine/index.js';
import { Graph, GraphState, compile, layerNorm, type CompiledGraph, type Value } from '../graph/index.js';
import { meanTokens } from '../graph/ops/classify.js';
import { VisionTransformer, studentPresets } from '../models/index.js';
import { normalizationOf, type PretrainConfig } from '../train/config.js';

export type FeaturePool = 'cls' | 'mean' | 'cls+mean';

export interface FeatureSpec {
  pool: FeaturePool;
  /** 1-based block indices to probe; empty = the last block. */
  layers: number[];
}

export const KNN_FEATURES: FeatureSpec = { pool: 'cls', layers: [] };

/** Rows of one image's features: per layer, one row per pooled vector (CLS, mean). */
export function featureRows(spec: FeatureSpec): number {
  return Math.max(1, spec.layers.length) * (spec.pool === 'cls+mean' ? 2 : 1);
}

/** The probed blocks (1-based), validated against the depth. */
export function probedLayers(spec: FeatureSpec, depth: number): number[] {
  const layers = spec.layers.length ? spec.layers : [depth];
  for (const l of layers)
    if (!Number.isInteger(l) || l < 1 || l > depth)
      throw new Error(`--layers: block ${l} does not exist (the student has blocks 1..${depth})`);
  return layers;
}

/**
 * The evaluation forward: images [B, 3, S, S] -> features [B, rows, D] (rows = layers x pooled
 * vectors; read as [B, layers, F] with F = D or 2D). Student parameters carry the training graph's names.
 */
export function buildFeatureModel(c: PretrainConfig, batch: number, spec: FeatureSpec = KNN_FEATURES): CompiledGraph {
  const g = new Graph();
  const s = studentPresets[c.model];
  const vit = new VisionTransformer(
    g,
    {
      img: c.imgSize,
      patch: c.patchSize,
      dim: s.dim,
      depth: s.depth,
      heads: s.heads,
      layerScale: c.layerScale,
      dropPath: 0,
    },
    { withMaskToken: c.encoding === 'dense' },
  );
  const layers = probedLayers(spec, s.depth);
  const images = g.input('images', [batch, 3, c.imgSize, c.imgSize], 'f32');
  const per = spec.pool === 'cls+mean' ? 2 : 1;
  g.noGrad(() => {
    const out = g.temp('features', [batch, layers.length * per, s.dim]);
    const tap = (i: number, x: Value): void => {
      const k = layers.indexOf(i + 1);
      if (k < 0) return;
      // Each tap reads the stream right after its block (the next block updates it in place).
      const norm = vit.norm!;
      const n = layerNorm(g, x, norm.weight, norm.bias, { eps: 1e-6, hint: `eval.norm${i + 1}` });
      let dst = k * per;
      if (spec.pool !== 'mean') g.emit('copy_rows', [n], [out], { src: 0, dst: dst++, count: 1 });
      if (spec.pool !== 'cls')
        g.emit('copy_rows', [meanTokens(g, n, 1, `eval.mean${i + 1}`)], [out], { src: 0, dst, count: 1 });
    };
    vit.encode(images, { onBlock: tap });
    g.markOutput(out, 'features');
  });
  return compile(g);
}

/** Copies every parameter of `to` from a flat buffer laid out by `fromTable` (by name). */
export function copyParamsByName(
  fromFlat: Float32Array,
  fromTable: { name: string; offset: number; shape: number[] }[],
  to: GraphState,
  group: 'train' | 'frozen' = 'train',
  opts: { skip?: (name: string) => boolean } = {},
): void {
  const byName = new Map(fromTable.map((p) => [p.name, p]));
  const values: Record<string, Float32Array> = {};
  for (const p of to.cg.params) {
    if (p.group !== group || opts.skip?.(p.name)) continue;
    const src = byName.get(p.name);
    if (!src) throw new Error(`parameters: '${p.name}' is missing from the source`);
    if (JSON.stringify(src.shape) !== JSON.stringify(p.shape))
      throw new Error(
        `parameters: '${p.name}' has shape ${JSON.stringify(src.shape)} in the source, ${JSON.stringify(p.shape)} here`,
      );
    values[p.name] = fromFlat.subarray(src.offset, src.offset + p.numel);
  }
  to.writeParams(values);
}

/** A feature extractor bound to its own state; load() weights (or initRandom()), then run(). */
export class FeatureExtractor {
  readonly cg: CompiledGraph;
  readonly state: GraphState;
  readonly spec: FeatureSpec;
  private readonly program: Program;

  constructor(
    engine: Engine,
    readonly config: PretrainConfig,
    readonly batch: number,
    spec: FeatureSpec = KNN_FEATURES,
  ) {
    this.spec = spec;
    this.cg = buildFeatureModel(config, batch, spec);
    this.state = new GraphState(engine, this.cg);
    this.program = this.state.program();
  }

  /** Width of one image's features: rows x D (layers x F). */
  get dim(): number {
    return studentPresets[this.config.model].dim * featureRows(this.spec);
  }

  load(flat: Float32Array, table: { name: string; offset: number; shape: number[] }[]): void {
    copyParamsByName(flat, table, this.state);
  }

  /** The random-init twin: the student as pretraining initialises it with this seed (init is keyed by name). */
  async initRandom(seed: number): Promise<void> {
    await this.state.initNative(seed, ['train']);
  }

  /** Features [B, dim] of one batch of B images. */
  async run(images: Float32Array): Promise<Float32Array> {
    const r = await this.program.run({ images });
    return r.outputs.features as Float32Array;
  }

  dispose(): void {
    this.program.dispose();
    this.state.dispose();
  }
}

export interface Embedded {
  features: Float32Array;
  labels: Int32Array;
}

/** Where data warnings go; `reported` holds the files already reported, so each is reported once per run. */
export interface DataReporting {
  onWarning?: (message: string) => void;
  reported?: Set<string>;
  /** Called after each batch with the images embedded so far and in all (progress display). */
  onEmbedded?: (images: number, total: number) => void;
}

/** The eval transform: resize + center crop at the model's size (no crop margin at <= 32 px). */
export function evalTransform(c: PretrainConfig): { normalize: string; cropPct: number } {
  return { normalize: normalizationOf(c), cropPct: c.imgSize <= 32 ? 1 : 0.875 };
}

/**
 * Features of a dataset, in dataset order. With a data-parallel world every rank embeds its
 * contiguous share of the dataset and the shares are gathered, so every rank ends with all of them.
 */
export async function embed(
  fx: FeatureExtractor,
  dataset: ImageDataset,
  c: PretrainConfig,
  report: DataReporting = {},
  world?: World,
): Promise<Embedded> {
  if (!world?.distributed) return embedAll(fx, dataset, c, report);
  const [start, end] = world.share(dataset.length);
  const mine = Array.from({ length: end - start }, (_, k) => start + k);
  const part = mine.length
    ? await embedAll(fx, dataset.subset(mine, dataset.split), c, report)
    : { features: new Float32Array(0), labels: new Int32Array(0) };
  const features = world.allgather(part.features);
  const labels = world.allgather(part.labels);
  if (labels.length !== dataset.length)
    throw new Error(`embed: gathered ${labels.length} of ${dataset.length} features from ${world.size} ranks`);
  return { features, labels };
}

async function embedAll(
  fx: FeatureExtractor,
  dataset: ImageDataset,
  c: PretrainConfig,
  report: DataReporting,
): Promise<Embedded> {
  const loader = new DataLoader(dataset, {
    batchSize: fx.batch,
    imageSize: c.imgSize,
    train: false,
    workers: c.workers,
    padLast: true,
    onWarning: report.onWarning,
    reported: report.reported,
    transform: evalTransform(c),
  });
  const total = dataset.length;
  const D = fx.dim;
  const features = new Float32Array(total * D);
  const labels = new Int32Array(total);
  let n = 0;
  try {
    for await (const b of loader) {
      const f = await fx.run(b.images);
      const take = b.size;
      features.set(f.subarray(0, take * D), n * D);
      labels.set(b.labels.subarray(0, take), n);
      n += take;
      report.onEmbedded?.(n, total);
    }
  } finally {
    await loader.close();
  }
  if (n !== total) throw new Error(`features: embedded ${n} of ${total} images`);
  return { features, labels };
}
