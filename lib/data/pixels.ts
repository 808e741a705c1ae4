// In-memory uint8 images of one size (IDX files, the bundled MNIST digits), shared with the workers.
import type { ImageSource, Plan, SourceImage, PixelHandle } from './source.js';
import { resampleBox } from './resample.js';

export type { PixelHandle };

export function renderPixels(
  src: Uint8Array,
  width: number,
  height: number,
  channels: number,
  plan: Plan,
  outW: number,
  outH: number,
): Uint8Array {
  const unscaled = plan.kind === 'crop' ? plan.w === outW && plan.h === outH : plan.rw === width && plan.rh === height;
  if (unscaled) return copyWindow(src, width, channels, plan, outW, outH);
  if (plan.kind === 'crop') {
    // torchvision crops, then resizes the crop: the filter must not reach past the crop's edges.
    const box = [plan.x, plan.y, plan.x + plan.w, plan.y + plan.h] as const;
    return resampleBox(src, width, height, channels, box[0], box[1], box[2], box[3], outW, outH, box);
  }
  // Resize the whole image to rw x rh, then crop: the same as resampling the matching box of the source.
  const sx = width / plan.rw;
  const sy = height / plan.rh;
  return resampleBox(
    src,
    width,
    height,
    channels,
    plan.left * sx,
    plan.top * sy,
    (plan.left + outW) * sx,
    (plan.top + outH) * sy,
    outW,
    outH,
  );
}

/**
 * A plan that moves pixels without scaling them (the eval transform of 28 px digits at 28 px, a crop of
 * the output's size) is a plain copy: the bilinear filter at scale 1 puts weight 1 on the source pixel and
 * 0 on its neighbours, so resampleBox would return the same bytes, 20x slower (it made the loader, not
 * the forward pass, the limit of feature extraction for kNN).
 */
function copyWindow(
  src: Uint8Array,
  width: number,
  channels: number,
  plan: Plan,
  outW: number,
  outH: number,
): Uint8Array {
  const x0 = plan.kind === 'crop' ? plan.x : plan.left;
  const y0 = plan.kind === 'crop' ? plan.y : plan.top;
  const out = new Uint8Array(outW * outH * 3);
  for (let y = 0; y < outH; y++) {
    const s = ((y0 + y) * width + x0) * channels;
    const d = y * outW * 3;
    if (channels === 3) out.set(src.subarray(s, s + outW * 3), d);
    else for (let x = 0; x < outW; x++) out[d + 3 * x] = out[d + 3 * x + 1] = out[d + 3 * x + 2] = src[s + x];
  }
  return out;
}

export class PixelSource implements ImageSource {
  private constructor(private readonly h: PixelHandle) {}

  /** Copies pixels and labels into shared memory. */
  static create(
    pixels: Uint8Array,
    labels: ArrayLike<number>,
    height: number,
    width: number,
    channels: 1 | 3,
    name: string,
  ): PixelSource {
    const count = labels.length;
    if (pixels.length !== count * height * width * channels) {
      throw new RangeError(
        `PixelSource ${name}: ${pixels.length} bytes for ${count} images of ${height}x${width}x${channels}`,
      );
    }
    const shared = new Uint8Array(new SharedArrayBuffer(Math.max(pixels.length, 1)), 0, pixels.length);
    shared.set(pixels);
    const sharedLabels = new Int32Array(new SharedArrayBuffer(Math.max(count, 1) * 4), 0, count);
    sharedLabels.set(labels);
    return new PixelSource({
      kind: 'pixels',
      pixels: shared,
      labels: sharedLabels,
      count,
      height,
      width,
      channels,
      name,
    });
  }

  static fromHandle(h: PixelHandle): PixelSource {
    return new PixelSource(h);
  }

  handle(): PixelHandle {
    return this.h;
  }

  get count(): number {
    return this.h.count;
  }

  labelOf(j: number): number {
    return this.h.labels[j];
  }

  whereOf(j: number): string {
    return `${this.h.name}#${j}`;
  }

  async open(j: number): Promise<SourceImage> {
    const { width, height, channels } = this.h;
    const size = width * height * channels;
    const src = this.h.pixels.subarray(j * size, (j + 1) * size);
    return {
      width,
      height,
      render: async (plan, outW, outH) => renderPixels(src, width, height, channels, plan, outW, outH),
    };
  }
}
