// Small model configurations shared by the graph and model tests.
import type { MedicConfig } from '../../lib/models/index.js';

/** A tiny MEDiC step: 16x16 images, 4x4 patches (16 patches), 2-block student and teacher. */
export const tinyMedic = (over: Partial<MedicConfig> = {}): MedicConfig => ({
  batch: 2,
  img: 16,
  patch: 4,
  student: { dim: 16, depth: 2, heads: 2 },
  teacher: { patch: 4, width: 24, layers: 2, heads: 2 },
  decoder: { dim: 16, depth: 1, heads: 2 },
  encoding: 'sparse',
  maskRatio: 0.4,
  weights: { w_tok: 1, w_cls: 0.4, w_pix: 1 },
  optimizer: { maxNorm: 3 },
  ...over,
});
