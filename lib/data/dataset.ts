// Datasets: one interface for image folders, IDX files, the bundled MNIST digits and synthetic images.
//
// A dataset is a source (all items of one kind: files, an in-memory pixel array, a generator) plus an
// optional index subset (a train or val split). Both live in SharedArrayBuffers, so a worker rebuilds
// the same dataset from a small handle (handle() -> postMessage -> ImageDataset.fromHandle) without
// copying paths or pixels: 1.28 M ImageNet paths or 47 MB of MNIST-train pixels are shared, not cloned.
//
// Pixel access goes through open(i) -> SourceImage (width, height, render(plan, w, h)): the transform
// decides the geometry (a crop box, or resize + center crop) from the size, then render produces RGB
// uint8 HWC at exactly the output size. Files render through sharp/libvips, memory sources through
// resample.ts.
import { FolderSource } from './folder.js';
import { PixelSource } from './pixels.js';
import { Rng, Stream } from '../util/rng.js';
import type { ImageSource, SourceHandle, SourceImage } from './source.js';
import { SyntheticSource } from './synthetic.js';

export type { ImageSource, Plan, SourceHandle, SourceImage } from './source.js';

export type Split = 'train' | 'val' | 'all';

export interface DatasetHandle {
  source: SourceHandle;
  indices: Int32Array | null; // view over a SharedArrayBuffer
  classNames: string[];
  split: Split;
  description: string;
}

export function sourceFromHandle(h: SourceHandle): ImageSource {
  switch (h.kind) {
    case 'folder':
      return FolderSource.fromHandle(h);
    case 'pixels':
      return PixelSource.fromHandle(h);
    case 'synthetic':
      return SyntheticSource.fromHandle(h);
  }
}

export function sharedInt32(values: ArrayLike<number>): Int32Array {
  const a = new Int32Array(new SharedArrayBuffer(Math.max(values.length, 1) * 4), 0, values.length);
  a.set(values);
  return a;
}

export class ImageDataset {
  constructor(
    readonly source: ImageSource,
    /** Subset of the source's items (sorted), or null for all of them. */
    readonly indices: Int32Array | null,
    readonly classNames: readonly string[],
    readonly split: Split,
    /** One line: kind, location, split. */
    readonly description: string,
  ) {}

  static fromHandle(h: DatasetHandle): ImageDataset {
    return new ImageDataset(sourceFromHandle(h.source), h.indices, h.classNames, h.split, h.description);
  }

  handle(): DatasetHandle {
    return {
      source: this.source.handle(),
      indices: this.indices,
      classNames: [...this.classNames],
      split: this.split,
      description: this.description,
    };
  }

  get length(): number {
    return this.indices ? this.indices.length : this.source.count;
  }

  /**
   * At most n samples spread evenly over the dataset (stride sampling): a cheap subset that keeps the
   * class balance of class-sorted datasets, for capped evaluations. The whole dataset when n >= length.
   */
  subsample(n: number): ImageDataset {
    if (n <= 0 || n >= this.length) return this;
    const picked = new Int32Array(n);
    for (let k = 0; k < n; k++) picked[k] = this.item(Math.floor((k * this.length) / n));
    return new ImageDataset(
      this.source,
      picked,
      this.classNames,
      this.split,
      `${this.description}, every ${(this.length / n).toFixed(1)}th sample`,
    );
  }

  get numClasses(): number {
    return this.classNames.length;
  }

  /** Index into the source. */
  item(i: number): number {
    if (!Number.isInteger(i) || i < 0 || i >= this.length)
      throw new RangeError(`dataset index ${i} out of range [0, ${this.length})`);
    return this.indices ? this.indices[i] : i;
  }

  label(i: number): number {
    return this.source.labelOf(this.item(i));
  }

  /** All labels in index order (for kNN banks, class counts). */
  labels(): Int32Array {
    const out = new Int32Array(this.length);
    for (let i = 0; i < out.length; i++) out[i] = this.label(i);
    return out;
  }

  where(i: number): string {
    return this.source.whereOf(this.item(i));
  }

  open(i: number): Promise<SourceImage> {
    return this.source.open(this.item(i));
  }

  /** Sample i as RGB uint8 HWC: at its own size, or squashed to size x size. */
  async loadRGB(i: number, size?: number): Promise<{ data: Uint8Array; width: number; height: number }> {
    const img = await this.open(i);
    const w = size ?? img.width;
    const h = size ?? img.height;
    const data = await img.render({ kind: 'crop', x: 0, y: 0, w: img.width, h: img.height }, w, h);
    return { data, width: w, height: h };
  }

  /** Sample i as float CHW in [0, 1], squashed to size x size. */
  async loadFloat(i: number, size: number): Promise<Float32Array> {
    const { data } = await this.loadRGB(i, size);
    const hw = size * size;
    const out = new Float32Array(3 * hw);
    for (let p = 0; p < hw; p++) for (let c = 0; c < 3; c++) out[c * hw + p] = data[3 * p + c] / 255;
    return out;
  }

  /** A dataset over a subset of this one's items (indices into this dataset). */
  subset(indices: ArrayLike<number>, split: Split, description = this.description): ImageDataset {
    const items = new Int32Array(indices.length);
    for (let k = 0; k < indices.length; k++) items[k] = this.item(indices[k]);
    return new ImageDataset(this.source, sharedInt32(items), this.classNames, split, description);
  }
}

/**
 * Seeded split stratified per class: each class keeps round(count * valFraction) items for val (at
 * least one item stays in train). Both lists are sorted, so they depend only on (labels, fraction, seed).
 */
export function stratifiedSplit(
  labels: ArrayLike<number>,
  numClasses: number,
  valFraction: number,
  seed: number,
): { train: Int32Array; val: Int32Array } {
  if (!(valFraction >= 0 && valFraction < 1)) throw new RangeError(`valFraction must be in [0, 1), got ${valFraction}`);
  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  for (let i = 0; i < labels.length; i++) byClass[labels[i]].push(i);
  const isVal = new Uint8Array(labels.length);
  for (let c = 0; c < numClasses; c++) {
    const items = byClass[c];
    const nVal = Math.min(Math.round(items.length * valFraction), Math.max(items.length - 1, 0));
    const rng = new Rng(seed, Stream.split, c);
    // Partial Fisher-Yates: the first nVal slots are a uniform sample without replacement.
    for (let k = 0; k < nVal; k++) {
      const j = k + rng.int(items.length - k);
      const t = items[k];
      items[k] = items[j];
      items[j] = t;
      isVal[items[k]] = 1;
    }
  }
  const train: number[] = [];
  const val: number[] = [];
  for (let i = 0; i < labels.length; i++) (isVal[i] ? val : train).push(i);
  return { train: Int32Array.from(train), val: Int32Array.from(val) };
}
