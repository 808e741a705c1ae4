// Public entry of the medic-native package.
//
//   import { Engine, pretrain, resolveConfig, models, graph } from 'medic-native';
//
// Top level: the engine, MEDiC pretraining (config, loop, masks, kNN), checkpoints and safetensors.
// The building blocks live under namespaces, so that their many small names do not collide:
// `graph` (graph builder, autodiff, compile), `nn` (layers), `models` (ViT, CLIP teacher, decoder,
// the MEDiC step), `data` (datasets, transforms, loader).
export * from './engine/index.js';
export { loadBinding, type LoadedBinding, type Variant } from './native.js';

export { pretrain, type PretrainEvents, type PretrainOptions, type PretrainResult, type StepMetrics, type EvalRecord } from './medic/pretrain.js';
export { defaultConfig, finalizeConfig, resolveConfig, validateConfig, studentPresets, type PretrainConfig, type ModelPreset } from './medic/config.js';
export { makeMasks, blockMask, randomMask, maskedCount, type MaskConfig, type MaskBatch, type MaskKind } from './medic/masking.js';
export { FeatureExtractor, buildTrainModel, buildFeatureModel } from './medic/model.js';
export { knnEvaluate } from './medic/knn-eval.js';
export { knnClassify, type KnnResult } from './eval/knn.js';
export { lrAt, weightDecayAt, peakLr, type ScheduleConfig } from './optim/schedule.js';

export { loadCheckpoint, saveCheckpoint, readCheckpointState, type Checkpoint, type TrainState } from './io/checkpoint.js';
export { SafetensorsFile, writeSafetensors, type WriteTensor } from './io/safetensors.js';
export { exportStudentTimm, readStudentExport, loadStudentExport } from './io/export.js';

export * as graph from './graph/index.js';
export * as nn from './nn/index.js';
export * as models from './models/index.js';
export * as data from './data/index.js';
