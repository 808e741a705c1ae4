// From a pretraining config to the graphs that run it: the MEDiC training step and the evaluation
// forward (student CLS after the final LN, no masking, no drop path) that kNN reads.
import { Graph, GraphState, compile, sliceRows, type CompiledGraph } from '../graph/index.js';
import type { Engine, Program } from '../engine/index.js';
import { buildMedic, VisionTransformer, type VitConfig, type MedicConfig, type MedicGraph } from '../models/index.js';
import { inspectClipCheckpoint, type ClipCheckpointInfo } from '../models/clip-checkpoint.js';
import { studentPresets, type PretrainConfig } from './config.js';

export function medicConfigOf(c: PretrainConfig, batch = c.batchSize): MedicConfig {
  const s = studentPresets[c.model];
  return {
    batch,
    img: c.imgSize,
    patch: c.patchSize,
    student: { dim: s.dim, depth: s.depth, heads: s.heads, layerScale: c.layerScale, dropPath: c.dropPath },
    teacher: { patch: c.patchSize, width: c.teacherDim, layers: c.teacherDepth, heads: c.teacherHeads, mlpRatio: c.teacherMlpRatio },
    decoder: { dim: c.decoderDim, depth: c.decoderDepth, heads: c.decoderHeads },
    encoding: c.encoding,
    maskRatio: c.maskRatio,
    weights: { w_tok: c.wTok, w_cls: c.wCls, w_pix: c.wPix, tau: c.tau },
    optimizer: { maxNorm: c.clipGrad },
  };
}

/**
 * With a teacher checkpoint, the teacher's architecture is the checkpoint's: width, depth, heads and
 * MLP ratio are read from it (the --teacher-* flags describe the random teacher only). Its patch size
 * must be the student's, so that teacher and student tokens describe the same patches.
 */
export function applyTeacherCheckpoint(c: PretrainConfig): { config: PretrainConfig; info: ClipCheckpointInfo | null } {
  if (c.teacher === 'random') return { config: c, info: null };
  const info = inspectClipCheckpoint(c.teacher);
  const a = info.arch;
  if (a.patch !== c.patchSize)
    throw new Error(`--teacher ${c.teacher}: the teacher's patch size is ${a.patch} but the student's is ${c.patchSize}: set --patch-size ${a.patch} (teacher and student tokens must cover the same patches)`);
  return { config: { ...c, teacherDim: a.width, teacherDepth: a.layers, teacherHeads: a.heads, teacherMlpRatio: a.mlpHidden / a.width }, info };
}

export interface TrainModel {
  medic: MedicGraph;
  cg: CompiledGraph;
}

export function buildTrainModel(c: PretrainConfig): TrainModel {
  const medic = buildMedic(medicConfigOf(c));
  return { medic, cg: compile(medic.graph) };
}

/**
 * The evaluation forward: images [B, 3, S, S] -> features [B, 1, D] (CLS after the final LN).
 * Its student parameters carry the same names as the training graph's, so weights are copied by name.
 */
/** The student's architecture as the timm export records it. */
export function studentVitConfig(c: PretrainConfig): VitConfig {
  const s = studentPresets[c.model];
  return { img: c.imgSize, patch: c.patchSize, dim: s.dim, depth: s.depth, heads: s.heads, layerScale: c.layerScale, dropPath: c.dropPath };
}

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

/** The parameter table of a compiled graph's trainable group, as checkpoints store it. */
export function paramTable(cg: CompiledGraph, group: 'train' | 'frozen' = 'train'): { name: string; shape: number[]; offset: number }[] {
  return cg.params.filter((p) => p.group === group).map((p) => ({ name: p.name, shape: [...p.shape], offset: p.offset }));
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
