// Seeded procedural images with learnable class structure, for tests and smoke runs.
//
// Image j has label j % classes. The class fixes a hue (classes spread around the colour wheel) and a
// shape (disk, square, horizontal stripes, vertical stripes, ring, cross, by class % 6); the sample's
// own stream (seed, j) draws the position, size, a hue wobble, a dark background colour and pixel
// noise. So a model can learn the classes from colour and shape, and no two images are the same.
// Generated on demand in whichever thread asks: nothing is stored.
import type { ImageSource, SourceImage, SyntheticHandle } from './source.js';
import { renderPixels } from './pixels.js';
import { Rng, Stream } from '../util/rng.js';

export type { SyntheticHandle };

const SHAPES = 6;

function hsvToRgb(h: number, s: number, v: number): [number, number, number] {
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const p = v * (1 - s);
  const q = v * (1 - f * s);
  const t = v * (1 - (1 - f) * s);
  switch (((i % 6) + 6) % 6) {
    case 0:
      return [v, t, p];
    case 1:
      return [q, v, p];
    case 2:
      return [p, v, t];
    case 3:
      return [p, q, v];
    case 4:
      return [t, p, v];
    default:
      return [v, p, q];
  }
}

/** RGB uint8 HWC, size x size. */
export function syntheticImage(h: SyntheticHandle, j: number): Uint8Array {
  const { size, classes } = h;
  const label = j % classes;
  const rng = new Rng(h.seed, Stream.synthetic, j);
  const hue = (label + 0.5 + rng.range(-0.2, 0.2)) / classes;
  const fg = hsvToRgb(((hue % 1) + 1) % 1, rng.range(0.7, 1), rng.range(0.75, 1));
  const bg = hsvToRgb(rng.uniform(), rng.range(0, 0.5), rng.range(0.05, 0.3));
  const cx = size * rng.range(0.3, 0.7);
  const cy = size * rng.range(0.3, 0.7);
  const r = size * rng.range(0.18, 0.32);
  const period = Math.max(2, size * rng.range(0.08, 0.14));
  const phase = rng.uniform() * period;
  const shape = label % SHAPES;
  const out = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const dx = x + 0.5 - cx;
      const dy = y + 0.5 - cy;
      const inBox = Math.abs(dx) < r && Math.abs(dy) < r;
      let on: boolean;
      switch (shape) {
        case 0:
          on = dx * dx + dy * dy < r * r;
          break;
        case 1:
          on = inBox;
          break;
        case 2:
          on = inBox && (y + phase) % period < period / 2;
          break;
        case 3:
          on = inBox && (x + phase) % period < period / 2;
          break;
        case 4: {
          const d = Math.sqrt(dx * dx + dy * dy);
          on = d < r && d > r * 0.55;
          break;
        }
        default:
          on = inBox && (Math.abs(dx) < r * 0.3 || Math.abs(dy) < r * 0.3);
      }
      const c = on ? fg : bg;
      const o = (y * size + x) * 3;
      for (let k = 0; k < 3; k++) {
        const v = c[k] * 255 + (rng.uniform() - 0.5) * 24;
        out[o + k] = v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
      }
    }
  }
  return out;
}

export class SyntheticSource implements ImageSource {
  private constructor(private readonly h: SyntheticHandle) {}

  static create(count: number, classes: number, size = 64, seed = 0): SyntheticSource {
    return new SyntheticSource({ kind: 'synthetic', count, classes, size, seed });
  }

  static fromHandle(h: SyntheticHandle): SyntheticSource {
    return new SyntheticSource(h);
  }

  handle(): SyntheticHandle {
    return this.h;
  }

  get count(): number {
    return this.h.count;
  }

  labelOf(j: number): number {
    return j % this.h.classes;
  }

  whereOf(j: number): string {
    return `synthetic#${j}`;
  }

  async open(j: number): Promise<SourceImage> {
    const { size } = this.h;
    const px = syntheticImage(this.h, j);
    return {
      width: size,
      height: size,
      render: async (plan, outW, outH) => renderPixels(px, size, size, 3, plan, outW, outH),
    };
  }
}
