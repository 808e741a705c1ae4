// Augmentation and evaluation transforms, all seeded per (seed, epoch, sample index).
//
// train: RandomResizedCrop (torchvision's algorithm: 10 tries of area ~ U(scale) * area and
//        log-uniform aspect ratio, else a center crop clamped to the ratio range) -> resize to S x S
//        -> horizontal flip with probability hflip -> optional ColorJitter (brightness, contrast,
//        saturation factors ~ U(1 - j, 1 + j), applied in a random order) -> normalise.
// eval:  resize the shorter side to floor(S / cropPct) (256 for 224 at 0.875) -> center crop S x S
//        -> normalise.
// Output per image: Float32Array CHW, channel c = (pixel / 255 - mean[c]) / std[c].
import type { Plan } from './dataset.js';
import { Rng, Stream } from '../util/rng.js';

export type Triple = [number, number, number];

export interface Normalization {
  mean: Triple;
  std: Triple;
}

export const NORMALIZATIONS = {
  imagenet: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
  clip: { mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711] },
  none: { mean: [0, 0, 0], std: [1, 1, 1] },
} as const satisfies Record<string, Normalization>;

export type NormalizationName = keyof typeof NORMALIZATIONS;

/**
 * 'imagenet' | 'clip' | 'none' | {mean, std} | 'm1,m2,m3/s1,s2,s3' (the command-line form of a custom
 * mean/std, in [0, 1] pixel units).
 */
export function resolveNormalization(n: NormalizationName | Normalization | string): Normalization {
  if (typeof n === 'object') {
    check3(n.mean, 'mean');
    check3(n.std, 'std');
    return { mean: [...n.mean] as Triple, std: [...n.std] as Triple };
  }
  if (n in NORMALIZATIONS) {
    const p = NORMALIZATIONS[n as NormalizationName];
    return { mean: [...p.mean] as Triple, std: [...p.std] as Triple };
  }
  const m = /^([^/]+)\/([^/]+)$/.exec(n);
  if (m) {
    const mean = m[1].split(',').map(Number);
    const std = m[2].split(',').map(Number);
    check3(mean, `mean in '${n}'`);
    check3(std, `std in '${n}'`);
    return { mean: mean as Triple, std: std as Triple };
  }
  throw new RangeError(`normalisation '${n}': expected imagenet, clip, none or 'm1,m2,m3/s1,s2,s3'`);
}

function check3(v: readonly number[], what: string): void {
  if (v.length !== 3 || !v.every(Number.isFinite))
    throw new RangeError(`${what}: expected 3 finite numbers, found [${v.join(', ')}]`);
  if (what.startsWith('std') && !v.every((x) => x > 0))
    throw new RangeError(`${what}: expected 3 positive numbers, found [${v.join(', ')}]`);
}

export interface TransformOptions {
  /** Output side S (images are S x S). */
  size: number;
  /** true: RandomResizedCrop + flip (+ jitter); false: resize + center crop. */
  train: boolean;
  /** RandomResizedCrop area fraction range (default [0.2, 1]). */
  scale?: [number, number];
  /** RandomResizedCrop aspect ratio range (default [3/4, 4/3]). */
  ratio?: [number, number];
  /** Horizontal flip probability (default 0.5; train only). */
  hflip?: number;
  /** Color jitter strength: one number for brightness, contrast and saturation, or three (default 0 = off). */
  colorJitter?: number | Triple;
  /** Eval center-crop fraction (default 0.875: resize to floor(S / 0.875), crop S). */
  cropPct?: number;
  /** Default 'imagenet'. */
  normalize?: NormalizationName | Normalization | string;
}

/** Fully resolved, plain data: travels to the workers as is. */
export interface TransformSpec {
  size: number;
  train: boolean;
  scale: [number, number];
  ratio: [number, number];
  hflip: number;
  jitter: Triple;
  cropPct: number;
  mean: Triple;
  std: Triple;
}

export function resolveTransform(o: TransformOptions): TransformSpec {
  const size = o.size;
  if (!Number.isSafeInteger(size) || size < 1)
    throw new RangeError(`transform size must be a positive integer, found ${size}`);
  const scale = o.scale ?? [0.2, 1];
  if (!(scale[0] > 0 && scale[0] <= scale[1] && scale[1] <= 1))
    throw new RangeError(`crop scale must satisfy 0 < min <= max <= 1, found [${scale.join(', ')}]`);
  const ratio = o.ratio ?? [3 / 4, 4 / 3];
  if (!(ratio[0] > 0 && ratio[0] <= ratio[1] && Number.isFinite(ratio[1])))
    throw new RangeError(`crop ratio must satisfy 0 < min <= max, found [${ratio.join(', ')}]`);
  const hflip = o.hflip ?? 0.5;
  if (!(hflip >= 0 && hflip <= 1)) throw new RangeError(`hflip probability must be in [0, 1], found ${hflip}`);
  const j = o.colorJitter ?? 0;
  const jitter: Triple = typeof j === 'number' ? [j, j, j] : [...j];
  if (!jitter.every((x) => x >= 0 && x < 1))
    throw new RangeError(`color jitter must be in [0, 1), found [${jitter.join(', ')}]`);
  const cropPct = o.cropPct ?? 0.875;
  if (!(cropPct > 0 && cropPct <= 1)) throw new RangeError(`cropPct must be in (0, 1], found ${cropPct}`);
  const { mean, std } = resolveNormalization(o.normalize ?? 'imagenet');
  return {
    size,
    train: o.train,
    scale: [scale[0], scale[1]],
    ratio: [ratio[0], ratio[1]],
    hflip,
    jitter,
    cropPct,
    mean,
    std,
  };
}

/** Python's round(): half to even (torchvision computes crop sizes with it). */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** torchvision.transforms.RandomResizedCrop.get_params. */
export function randomResizedCropBox(
  rng: Rng,
  width: number,
  height: number,
  scale: readonly [number, number],
  ratio: readonly [number, number],
): Box {
  const area = width * height;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let t = 0; t < 10; t++) {
    const target = area * rng.range(scale[0], scale[1]);
    const aspect = Math.exp(rng.range(logLo, logHi));
    const w = roundHalfEven(Math.sqrt(target * aspect));
    const h = roundHalfEven(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const y = rng.int(height - h + 1);
      const x = rng.int(width - w + 1);
      return { x, y, w, h };
    }
  }
  // Fallback: whole image, clamped to the ratio range, centered.
  const inRatio = width / height;
  let w: number;
  let h: number;
  if (inRatio < ratio[0]) {
    w = width;
    h = roundHalfEven(w / ratio[0]);
  } else if (inRatio > ratio[1]) {
    h = height;
    w = roundHalfEven(h * ratio[1]);
  } else {
    w = width;
    h = height;
  }
  return { x: Math.floor((width - w) / 2), y: Math.floor((height - h) / 2), w, h };
}

/** Resize the shorter side to floor(size / cropPct) (torchvision's int truncation for the longer), then center crop. */
export function evalPlan(width: number, height: number, size: number, cropPct: number): Plan {
  const short = Math.max(size, Math.floor(size / cropPct));
  let rw: number;
  let rh: number;
  if (width <= height) {
    rw = short;
    rh = Math.max(size, Math.floor((short * height) / width));
  } else {
    rh = short;
    rw = Math.max(size, Math.floor((short * width) / height));
  }
  return { kind: 'resizeCrop', rw, rh, left: roundHalfEven((rw - size) / 2), top: roundHalfEven((rh - size) / 2) };
}

export interface JitterParams {
  /** Order of the three ops: 0 brightness, 1 contrast, 2 saturation. */
  order: [number, number, number];
  factors: Triple;
}

export interface SampleParams {
  plan: Plan;
  flip: boolean;
  jitter: JitterParams | null;
}

/** Everything random about one sample, from its own streams: the same whoever computes it. */
export function sampleParams(
  spec: TransformSpec,
  width: number,
  height: number,
  seed: number,
  epoch: number,
  index: number,
): SampleParams {
  if (!spec.train) return { plan: evalPlan(width, height, spec.size, spec.cropPct), flip: false, jitter: null };
  const box = randomResizedCropBox(new Rng(seed, Stream.crop, epoch, index), width, height, spec.scale, spec.ratio);
  const flip = spec.hflip > 0 && new Rng(seed, Stream.flip, epoch, index).uniform() < spec.hflip;
  let jitter: JitterParams | null = null;
  if (spec.jitter.some((j) => j > 0)) {
    const rng = new Rng(seed, Stream.jitter, epoch, index);
    const factors = spec.jitter.map((j) => (j > 0 ? rng.range(1 - j, 1 + j) : 1)) as Triple;
    const order: [number, number, number] = [0, 1, 2];
    for (let i = 2; i > 0; i--) {
      const k = rng.int(i + 1);
      [order[i], order[k]] = [order[k], order[i]];
    }
    jitter = { order, factors };
  }
  return { plan: { kind: 'crop', ...box }, flip, jitter };
}

const lutCache = new Map<string, Float32Array>();

/** 3 x 256 table: (v / 255 - mean[c]) / std[c]. */
function normLut(mean: Triple, std: Triple): Float32Array {
  const key = `${mean.join(',')}/${std.join(',')}`;
  let lut = lutCache.get(key);
  if (!lut) {
    lut = new Float32Array(768);
    for (let c = 0; c < 3; c++) for (let v = 0; v < 256; v++) lut[c * 256 + v] = (v / 255 - mean[c]) / std[c];
    lutCache.set(key, lut);
  }
  return lut;
}

function clamp01(v: number): number {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

/** torchvision's ColorJitter on [0, 1] floats (HWC RGB, in place). */
export function applyJitter(px: Float32Array, jitter: JitterParams): void {
  const n = px.length / 3;
  for (const op of jitter.order) {
    const f = jitter.factors[op];
    if (f === 1) continue;
    if (op === 0) {
      for (let k = 0; k < px.length; k++) px[k] = clamp01(px[k] * f);
    } else if (op === 1) {
      let sum = 0;
      for (let p = 0; p < n; p++) sum += 0.2989 * px[3 * p] + 0.587 * px[3 * p + 1] + 0.114 * px[3 * p + 2];
      const m = (1 - f) * (sum / n);
      for (let k = 0; k < px.length; k++) px[k] = clamp01(f * px[k] + m);
    } else {
      for (let p = 0; p < n; p++) {
        const g = (1 - f) * (0.2989 * px[3 * p] + 0.587 * px[3 * p + 1] + 0.114 * px[3 * p + 2]);
        px[3 * p] = clamp01(f * px[3 * p] + g);
        px[3 * p + 1] = clamp01(f * px[3 * p + 1] + g);
        px[3 * p + 2] = clamp01(f * px[3 * p + 2] + g);
      }
    }
  }
}

/**
 * RGB uint8 HWC (size x size) -> normalised float CHW at out[offset ...], mirrored when flip, with the
 * jitter applied before normalisation.
 */
export function writeImage(
  rgb: Uint8Array,
  size: number,
  flip: boolean,
  jitter: JitterParams | null,
  spec: Pick<TransformSpec, 'mean' | 'std'>,
  out: Float32Array,
  offset: number,
): void {
  const hw = size * size;
  if (rgb.length !== hw * 3)
    throw new RangeError(`writeImage: expected ${hw * 3} bytes for ${size}x${size} RGB, got ${rgb.length}`);
  if (jitter === null) {
    const lut = normLut(spec.mean, spec.std);
    for (let y = 0; y < size; y++) {
      const row = y * size;
      for (let x = 0; x < size; x++) {
        const s = 3 * (row + (flip ? size - 1 - x : x));
        const d = offset + row + x;
        out[d] = lut[rgb[s]];
        out[d + hw] = lut[256 + rgb[s + 1]];
        out[d + 2 * hw] = lut[512 + rgb[s + 2]];
      }
    }
    return;
  }
  const px = new Float32Array(hw * 3);
  for (let k = 0; k < px.length; k++) px[k] = rgb[k] / 255;
  applyJitter(px, jitter);
  const [m0, m1, m2] = spec.mean;
  const [s0, s1, s2] = spec.std;
  for (let y = 0; y < size; y++) {
    const row = y * size;
    for (let x = 0; x < size; x++) {
      const s = 3 * (row + (flip ? size - 1 - x : x));
      const d = offset + row + x;
      out[d] = (px[s] - m0) / s0;
      out[d + hw] = (px[s + 1] - m1) / s1;
      out[d + 2 * hw] = (px[s + 2] - m2) / s2;
    }
  }
}

/** Convert normalised CHW images in place from one mean/std to another (e.g. imagenet -> clip for a teacher). */
export function renormalize(images: Float32Array, size: number, from: Normalization, to: Normalization): void {
  const hw = size * size;
  const per = 3 * hw;
  if (images.length % per !== 0)
    throw new RangeError(`renormalize: ${images.length} values is not a whole number of 3x${size}x${size} images`);
  for (let c = 0; c < 3; c++) {
    // x_to = (x_from * s_from + m_from - m_to) / s_to = a * x_from + b
    const a = from.std[c] / to.std[c];
    const b = (from.mean[c] - to.mean[c]) / to.std[c];
    for (let base = c * hw; base < images.length; base += per) {
      for (let k = base; k < base + hw; k++) images[k] = a * images[k] + b;
    }
  }
}
