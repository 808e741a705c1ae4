// From a pretraining config to the MEDiC training graph: the config's flat keys become the
// MedicConfig that lib/models/medic.ts builds from (buildMedic), and a teacher checkpoint's
// architecture replaces the random teacher's settings. The evaluation forward is lib/eval/features.ts.
import type { Program } from '../engine/index.js';
import { compile, type CompiledGraph, type GraphState } from '../graph/index.js';
import { resolveNormalization } from '../data/transforms.js';
import {
  checkpointPool,
  inspectClipCheckpoint,
  resolveTeacherInput,
  type ClipCheckpointInfo,
  type TeacherInput,
} from '../io/teacher.js';
import {
  buildMedic,
  buildTeacherStep,
  studentPresets,
  type MedicConfig,
  type MedicGraph,
  type VitConfig,
} from '../models/index.js';
import { normalizationOf, teacherFile, type PretrainConfig } from './config.js';
import { clusterInputOf } from './evolved.js';
import type { Precision } from './precision.js';

export function medicConfigOf(c: PretrainConfig, batch = c.batchSize, precision: Precision = 'fp32'): MedicConfig {
  const s = studentPresets[c.model];
  return {
    batch,
    img: c.imgSize,
    patch: c.patchSize,
    student: { dim: s.dim, depth: s.depth, heads: s.heads, layerScale: c.layerScale, dropPath: c.dropPath },
    teacher: {
      patch: c.patchSize,
      width: c.teacherDim,
      layers: c.teacherDepth,
      heads: c.teacherHeads,
      mlpRatio: c.teacherMlpRatio,
      ...teacherKind(c),
    },
    decoder: { dim: c.decoderDim, depth: c.decoderDepth, heads: c.decoderHeads },
    encoding: c.encoding,
    maskRatio: c.maskRatio,
    weights: { w_tok: c.wTok, w_cls: c.wCls, w_pix: c.wPix, tau: c.tau },
    balance: c.lossBalance,
    optimizer: { maxNorm: c.clipGrad },
    teacherLayer: c.teacherLayer || undefined,
    teacherPool: c.teacherPool === 'avg' ? 'avg' : 'cls',
    // Evolved masking needs the teacher's attention before the step: the teacher runs first, as its
    // own program (buildTeacherStep), and its targets come into the step as an input.
    teacherTargets: c.mask === 'evolved' ? 'input' : 'forward',
    precision,
  };
}

/** The teacher's layout from its checkpoint's header (CLIP's for the random teacher). */
function teacherKind(c: PretrainConfig): { kind: 'clip' | 'timm'; layerScale?: boolean; normPre?: boolean } {
  const file = teacherFile(c);
  if (!file) return { kind: 'clip' };
  const a = inspectClipCheckpoint(file, { heads: c.teacherHeads }).arch;
  return a.layout === 'timm' ? { kind: 'timm', layerScale: a.layerScale, normPre: a.normPre } : { kind: 'clip' };
}

/**
 * With a teacher checkpoint, the teacher's architecture is the checkpoint's: width, depth, heads and
 * MLP ratio are read from it (the --teacher-* flags describe the random teacher only). Its patch size
 * must be the student's, so that teacher and student tokens describe the same patches. `heads`: the
 * attention heads when the caller knows them (--teacher-heads), else config.json beside the file or
 * CLIP's rule.
 */
export function applyTeacherCheckpoint(
  c: PretrainConfig,
  opts: { heads?: number } = {},
): { config: PretrainConfig; info: ClipCheckpointInfo | null } {
  const out = teacherOf(c, opts);
  const depth = out.config.teacherDepth;
  if (c.teacherLayer > depth)
    throw new Error(
      `--teacher-layer: expected a block of the ${depth}-block teacher (1..${depth}, 0 = the last), got ${c.teacherLayer}`,
    );
  return out;
}

function teacherOf(
  c: PretrainConfig,
  opts: { heads?: number },
): { config: PretrainConfig; info: ClipCheckpointInfo | null } {
  const file = teacherFile(c);
  if (!file) return { config: c, info: null }; // teacherPool auto: the random teacher's CLS token
  const info = inspectClipCheckpoint(file, { heads: opts.heads });
  const a = info.arch;
  if (a.patch !== c.patchSize)
    throw new Error(
      `--teacher ${c.teacher}: the teacher's patch size is ${a.patch} but the student's is ${c.patchSize}: set --patch-size ${a.patch} (teacher and student tokens must cover the same patches)`,
    );
  const pool = c.teacherPool === 'auto' ? checkpointPool(file) : null;
  return {
    config: {
      ...c,
      teacherPool: pool ? pool.pool : c.teacherPool,
      teacherDim: a.width,
      teacherDepth: a.layers,
      teacherHeads: a.heads,
      teacherMlpRatio: a.mlpHidden / a.width,
    },
    info,
  };
}

/** The teacher's input normalisation under a config (--teacher-normalize against the student's --normalize). */
export function teacherInputOf(c: PretrainConfig, info: ClipCheckpointInfo | null): TeacherInput {
  return resolveTeacherInput(info, c.teacherNormalize, {
    setting: c.normalize,
    norm: resolveNormalization(normalizationOf(c)),
  });
}

export interface TrainModel {
  medic: MedicGraph;
  cg: CompiledGraph;
}

/** buildMedic() for a pretraining config at a resolved precision (lib/train/precision.ts), compiled. */
export function buildTrainModel(c: PretrainConfig, precision: Precision = 'fp32'): TrainModel {
  const medic = buildMedic(medicConfigOf(c, c.batchSize, precision));
  return { medic, cg: compile(medic.graph) };
}

/** The student's architecture as the timm export records it. */
export function studentVitConfig(c: PretrainConfig): VitConfig {
  const s = studentPresets[c.model];
  return {
    img: c.imgSize,
    patch: c.patchSize,
    dim: s.dim,
    depth: s.depth,
    heads: s.heads,
    layerScale: c.layerScale,
    dropPath: c.dropPath,
  };
}

/**
 * The teacher program of evolved masking: images -> targets and what --mask-cluster reads (attn for em,
 * its Gram matrices for hc: buildTeacherStep), bound to the
 * training state's frozen tensor (the teacher weights are loaded once, into that tensor).
 */
export function teacherProgram(c: PretrainConfig, state: GraphState): Program {
  const ts = compile(buildTeacherStep({ ...medicConfigOf(c), clusterInput: clusterInputOf(c.maskCluster) }).graph);
  const frozen = state.cg.params.filter((p) => p.group === 'frozen').map((p) => `${p.name}@${p.offset}`);
  const mine = ts.params.map((p) => `${p.name}@${p.offset}`);
  if (frozen.join() !== mine.join())
    throw new Error(
      'pretrain: the teacher program and the training graph disagree on the frozen parameter layout (a bug)',
    );
  // Its constants (the pooling weights of --teacher-pool avg) are its own: the training graph, fed the
  // targets as an input, holds none of them. The program keeps the tensor alive.
  const consts = ts.sizes.consts ? state.engine.tensor([ts.sizes.consts], 'f32', ts.consts) : undefined;
  return state.engine.program({
    buffers: ts.buffers.map((b) => ({
      ...b,
      tensor: b.state === 'consts' ? consts : b.state ? state.get(b.state) : undefined,
    })),
    ops: ts.ops,
  });
}
