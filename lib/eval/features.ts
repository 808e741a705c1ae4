// Features of a pretrained student, for every evaluation: the evaluation forward (student CLS after the
// final LN, no masking, no drop path) compiled as its own program, loaded with the training weights by
// parameter name, and run over a dataset in order (embed).
import { DataLoader, type ImageDataset } from '../data/index.js';
import type { Engine, Program, World } from '../engine/index.js';
import { Graph, GraphState, compile, sliceRows, type CompiledGraph } from '../graph/index.js';
import { VisionTransformer, studentPresets } from '../models/index.js';
import { normalizationOf, type PretrainConfig } from '../train/config.js';

/**
 * The evaluation forward: images [B, 3, S, S] -> features [B, 1, D] (CLS after the final LN).
 * Its student parameters carry the same names as the training graph's, so weights are copied by name.
 */
export function buildFeatureModel(c: PretrainConfig, batch: number): CompiledGraph {
  const g = new Graph();
  const s = studentPresets[c.model];
  const vit = new VisionTransformer(
    g,
    { img: c.imgSize, patch: c.patchSize, dim: s.dim, depth: s.depth, heads: s.heads, layerScale: c.layerScale, dropPath: 0 },
    { withMaskToken: c.encoding === 'dense' },
  );
  const images = g.input('images', [batch, 3, c.imgSize, c.imgSize], 'f32');
  g.markOutput(sliceRows(g, vit.forward(images), 0, 1, 'eval.cls'), 'features');
  return compile(g);
}

/** Copies every parameter of `to` from a flat buffer laid out by `fromTable` (by name). */
export function copyParamsByName(
  fromFlat: Float32Array,
  fromTable: { name: string; offset: number; shape: number[] }[],
  to: GraphState,
  group: 'train' | 'frozen' = 'train',
): void {
  const byName = new Map(fromTable.map((p) => [p.name, p]));
  const values: Record<string, Float32Array> = {};
  for (const p of to.cg.params) {
    if (p.group !== group) continue;
    const src = byName.get(p.name);
    if (!src) throw new Error(`parameters: '${p.name}' is missing from the source`);
    if (JSON.stringify(src.shape) !== JSON.stringify(p.shape))
      throw new Error(`parameters: '${p.name}' has shape ${JSON.stringify(src.shape)} in the source, ${JSON.stringify(p.shape)} here`);
    values[p.name] = fromFlat.subarray(src.offset, src.offset + p.numel);
  }
  to.writeParams(values);
}

/** A feature extractor bound to its own state; call load() with weights, then features(). */
export class FeatureExtractor {
  readonly cg: CompiledGraph;
  readonly state: GraphState;
  private readonly program: Program;

  constructor(
    engine: Engine,
    readonly config: PretrainConfig,
    readonly batch: number,
  ) {
    this.cg = buildFeatureModel(config, batch);
    this.state = new GraphState(engine, this.cg);
    this.program = this.state.program();
  }

  get dim(): number {
    return studentPresets[this.config.model].dim;
  }

  load(flat: Float32Array, table: { name: string; offset: number; shape: number[] }[]): void {
    copyParamsByName(flat, table, this.state);
  }

  /** Features [B, D] of one batch of B images. */
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
}

/**
 * Features of a dataset, in dataset order. With a data-parallel world every rank embeds its
 * contiguous share of the dataset and the shares are gathered, so every rank ends with all of them.
 */
export async function embed(fx: FeatureExtractor, dataset: ImageDataset, c: PretrainConfig, report: DataReporting = {}, world?: World): Promise<Embedded> {
  if (!world?.distributed) return embedAll(fx, dataset, c, report);
  const [start, end] = world.share(dataset.length);
  const mine = Array.from({ length: end - start }, (_, k) => start + k);
  const part = mine.length ? await embedAll(fx, dataset.subset(mine, dataset.split), c, report) : { features: new Float32Array(0), labels: new Int32Array(0) };
  const features = world.allgather(part.features);
  const labels = world.allgather(part.labels);
  if (labels.length !== dataset.length) throw new Error(`kNN: gathered ${labels.length} of ${dataset.length} features from ${world.size} ranks`);
  return { features, labels };
}

async function embedAll(fx: FeatureExtractor, dataset: ImageDataset, c: PretrainConfig, report: DataReporting): Promise<Embedded> {
  const loader = new DataLoader(dataset, {
    batchSize: fx.batch,
    imageSize: c.imgSize,
    train: false,
    workers: c.workers,
    padLast: true,
    onWarning: report.onWarning,
    reported: report.reported,
    transform: { normalize: normalizationOf(c), cropPct: c.imgSize <= 32 ? 1 : 0.875 },
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
    }
  } finally {
    await loader.close();
  }
  if (n !== total) throw new Error(`kNN: embedded ${n} of ${total} images`);
  return { features, labels };
}
