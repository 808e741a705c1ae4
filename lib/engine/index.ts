export { Engine, Program, Tensor } from './engine.js';
export type { BufferDecl, EngineOptions, ProgramSpec, StepResult, AnyTypedArray, Attrs, DType, MemoryStats } from './engine.js';
export { chooseDevice, parseDevice } from './device.js';
export type { DeviceChoice } from './device.js';
export { loadBinding, candidatePaths, packageRoot } from './loader.js';
export type { LoadedBinding, Variant } from './loader.js';
