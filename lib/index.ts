// Public entry of the medic-native package.
//
//   import { Engine, pretrain, resolveConfig, models, graph } from 'medic-native';
//
// Top level: the engine, MEDiC pretraining (config, loop, masks, kNN), checkpoints and safetensors.
// The building blocks live under namespaces, so that their many small names do not collide:
// `graph` (graph builder, autodiff, compile), `nn` (layers), `models` (ViT, CLIP teacher, decoder,
// the MEDiC step), `io` (safetensors, checkpoints, timm export, teacher checkpoints), `data`
// (datasets, transforms, loader).
export * from './engine/index.js';

export {
  pretrain,
  type PretrainEvents,
  type PretrainOptions,
  type PretrainResult,
  type StepMetrics,
  type EvalRecord,
} from './train/run.js';
export { defaultConfig, finalizeConfig, resolveConfig, validateConfig, type PretrainConfig } from './train/config.js';
export { studentPresets, type ModelPreset } from './models/vit.js';
export {
  makeMasks,
  maskInputs,
  blockMask,
  randomMask,
  maskedCount,
  type MaskConfig,
  type MaskBatch,
  type MaskKind,
} from './train/masking.js';
export { buildTrainModel } from './train/build.js';
export { lrAt, weightDecayAt, peakLr, type ScheduleConfig } from './train/schedule.js';
export { FeatureExtractor, buildFeatureModel } from './eval/features.js';
export { knnClassify, knnEvaluate, type KnnResult } from './eval/knn.js';
export { runLinearProbe, type LinearRunOptions, type LinearResult } from './eval/linear.js';
export { runFinetune, type FinetuneRunOptions, type FinetuneResult } from './eval/finetune.js';
export {
  linearDefaults,
  finetuneDefaults,
  type LinearConfig,
  type FinetuneConfig,
  type EvalEvents,
  type EpochResult,
  type TopK,
} from './eval/protocols.js';

export {
  loadCheckpoint,
  saveCheckpoint,
  readCheckpointState,
  type Checkpoint,
  type TrainState,
} from './io/checkpoint.js';
export { SafetensorsFile, writeSafetensors, type WriteTensor } from './io/safetensors.js';
export { exportStudentTimm, readStudentExport, loadStudentExport } from './io/export.js';
export { inspectClipCheckpoint, loadClipTeacher, describeClipCheckpoint } from './io/teacher.js';

export * as graph from './graph/index.js';
export * as nn from './nn/index.js';
export * as models from './models/index.js';
export * as io from './io/index.js';
export * as data from './data/index.js';
