// Models built on lib/nn and lib/graph: the student ViT, the CLIP teacher, the pixel decoder, and the
// whole MEDiC training step.
export { VisionTransformer, studentPresets } from './vit.js';
export type { VitConfig, ModelPreset, ModelShape } from './vit.js';
export { ClipVisionTower, clipPresets, clipKeyMap, hfKeyMap } from './clip.js';
export type { ClipConfig } from './clip.js';
export { PixelDecoder } from './decoder.js';
export type { DecoderConfig } from './decoder.js';
export { sincos2d } from './sincos.js';
export { buildMedic } from './medic.js';
export type { MedicConfig, MedicGraph } from './medic.js';
