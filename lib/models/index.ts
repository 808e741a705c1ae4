// Models built on lib/nn and lib/graph: the student ViT, the CLIP teacher, the pixel decoder, and the
// whole MEDiC training step.
export { VisionTransformer, vitPresets } from './vit.js';
export type { VitConfig } from './vit.js';
export { ClipVisionTower, clipPresets, clipKeyMap, hfKeyMap } from './clip.js';
export type { ClipConfig } from './clip.js';
export { inspectClipCheckpoint, readClipTeacher, loadClipTeacher, resizePosEmbed, teacherConfigFromArch, describeClipCheckpoint } from './clip-checkpoint.js';
export type { ClipCheckpointArch, ClipCheckpointInfo, ClipLayout } from './clip-checkpoint.js';
export { PixelDecoder } from './decoder.js';
export type { DecoderConfig } from './decoder.js';
export { sincos2d } from './sincos.js';
export { buildMedic, maskInputs } from './medic.js';
export type { MedicConfig, MedicGraph } from './medic.js';
