// The shapes the kernel benchmark measures: one MEDiC step of ViT-Tiny and ViT-Base at 224/16
// (letters: docs/METHOD.md, Shapes). Batch sizes are small enough for a 2-core CPU to finish in seconds.
export interface Preset {
  name: 'tiny' | 'base';
  B: number; // images per batch
  N: number; // patches per image (196)
  V: number; // visible patches at mask ratio 0.4 (118 -> sequence 1 + V = 119)
  M: number; // masked patches (78)
  D: number; // student width
  H: number; // student heads (head dim 64)
  Dt: number; // teacher width
  Ht: number; // teacher heads
  Dd: number; // decoder width
  Hdd: number; // decoder heads (head dim 32)
  P: number; // pixels per patch (16*16*3)
  img: number; // image side
  patch: number;
}

export const presets: Record<Preset['name'], Preset> = {
  tiny: {
    name: 'tiny',
    B: 8,
    N: 196,
    V: 118,
    M: 78,
    D: 192,
    H: 3,
    Dt: 768,
    Ht: 12,
    Dd: 512,
    Hdd: 16,
    P: 768,
    img: 224,
    patch: 16,
  },
  base: {
    name: 'base',
    B: 8,
    N: 196,
    V: 118,
    M: 78,
    D: 768,
    H: 12,
    Dt: 768,
    Ht: 12,
    Dd: 512,
    Hdd: 16,
    P: 768,
    img: 224,
    patch: 16,
  },
};
