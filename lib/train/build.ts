// From a pretraining config to the MEDiC training graph: the config's flat keys become the
// MedicConfig that lib/models/medic.ts builds from (buildMedic), and a teacher checkpoint's
// architecture replaces the random teacher's settings. The evaluation forward is lib/eval/features.ts.
import { compile, type CompiledGraph } from '../graph/index.js';
import { inspectClipCheckpoint, type ClipCheckpointInfo } from '../io/teacher.js';
import { buildMedic, studentPresets, type MedicConfig, type MedicGraph, type VitConfig } from '../models/index.js';
import type { PretrainConfig } from './config.js';

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
    balance: c.lossBalance,
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

/** buildMedic() for a pretraining config, compiled. */
export function buildTrainModel(c: PretrainConfig): TrainModel {
  const medic = buildMedic(medicConfigOf(c));
  return { medic, cg: compile(medic.graph) };
}

/** The student's architecture as the timm export records it. */
export function studentVitConfig(c: PretrainConfig): VitConfig {
  const s = studentPresets[c.model];
  return { img: c.imgSize, patch: c.patchSize, dim: s.dim, depth: s.depth, heads: s.heads, layerScale: c.layerScale, dropPath: c.dropPath };
}
