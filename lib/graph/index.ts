// Graph building, symbolic backward, compilation to a native program, and an eager executor.
export { Graph } from './graph.js';
export type { OpRecord, OpAttrs, Phase, StateValues } from './graph.js';
export * from './value.js';
export { compile, validate } from './compile.js';
export type { CompiledGraph, CompiledBuffer, CompiledOp, StateName } from './compile.js';
export { GraphState } from './state.js';
export { EagerExecutor } from './eager.js';
export { hostInit, initProgramSpec, fillInit, paramStream } from './init.js';
export { linear, linearBackward } from './ops/gemm.js';
export { add, copy, gelu, quickGelu, concat1d, passGrad } from './ops/elementwise.js';
export { layerNorm, pixelNorm } from './ops/norm.js';
export { attention } from './ops/attention.js';
export { residualAdd, dropPathMask } from './ops/residual.js';
export { concatRows, sliceRows, gatherRows, maskFill, scatterToGrid, patchify } from './ops/tokens.js';
export { lossWeights, medicLoss } from './ops/loss.js';
export type { LossBalance, LossWeights, MedicLossValues } from './ops/loss.js';
export { gradNorm, adamw } from './ops/optim.js';
export type { AdamWOptions } from './ops/optim.js';
