// Network modules over the graph builder: each registers its params and emits its forward ops
// (their backward rules come with the ops).
export { Linear } from './linear.js';
export type { LinearConfig } from './linear.js';
export { LayerNorm } from './layernorm.js';
export { Attention } from './attention.js';
export type { AttentionConfig } from './attention.js';
export { Mlp } from './mlp.js';
export type { MlpConfig } from './mlp.js';
export { Block, dropPathRates } from './block.js';
export type { BlockConfig } from './block.js';
export { truncNormal, zeros, ones, constant, normal, uniform, rescaleDivisor } from './init.js';
