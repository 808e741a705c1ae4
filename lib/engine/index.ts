export { Engine, Program, Tensor } from './engine.js';
export type { BufferDecl, EngineOptions, ProgramSpec, StepResult, AnyTypedArray, Attrs, DType, MemoryStats } from './engine.js';
export { chooseDevice, parseDevice } from './device.js';
export type { DeviceChoice } from './device.js';
export { loadBinding, localBuildPath, packageRoot, CUDA_PACKAGE } from './loader.js';
export type { LoadedBinding, Origin, Variant } from './loader.js';
