export { Engine, Program, Tensor } from './engine.js';
export type {
  BufferDecl,
  EngineOptions,
  ProgramSpec,
  StepResult,
  AnyTypedArray,
  Attrs,
  CommStats,
  DType,
  MemoryStats,
} from './engine.js';
export { World, detectLaunch } from './comm.js';
export type { CommBinding, CommProbe, Launch } from './comm.js';
export { chooseDevice, deviceSpec, parseDevice } from './device.js';
export { OP_NAMES, type OpName } from './ops.js';
export type { DeviceChoice, DeviceSpec } from './device.js';
export { loadBinding, localBuildPath, packageRoot, CUDA_PACKAGE } from './loader.js';
export type { LoadedBinding, Origin, Variant } from './loader.js';
