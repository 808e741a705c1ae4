// What every image source provides (folder, pixel array, synthetic): the interfaces dataset.ts
// composes and each source implements, and the handles (plain data over SharedArrayBuffers) a worker
// rebuilds a source from. Kept apart from dataset.ts, which imports the sources.

/** Geometry from a source image to the output: integer crop box then resize, or resize then crop. */
export type Plan =
  | { kind: 'crop'; x: number; y: number; w: number; h: number }
  | { kind: 'resizeCrop'; rw: number; rh: number; left: number; top: number };

export interface SourceImage {
  readonly width: number;
  readonly height: number;
  /** RGB uint8, HWC, outW x outH. Throws SampleReadError when the pixels cannot be decoded. */
  render(plan: Plan, outW: number, outH: number): Promise<Uint8Array>;
}

export interface ImageSource {
  readonly count: number;
  labelOf(j: number): number;
  /** Where item j comes from, for messages: a file path, or `<file>#<j>`. */
  whereOf(j: number): string;
  /** Throws SampleReadError when the item cannot be read. */
  open(j: number): Promise<SourceImage>;
  handle(): SourceHandle;
}

export interface FolderHandle {
  kind: 'folder';
  root: string;
  /** UTF-8 relative paths, concatenated, over a SharedArrayBuffer. */
  bytes: Uint8Array;
  /** count + 1 byte offsets into bytes. */
  offsets: Float64Array;
  labels: Int32Array;
  count: number;
}

export interface PixelHandle {
  kind: 'pixels';
  /** N x H x W x C uint8 over a SharedArrayBuffer. */
  pixels: Uint8Array;
  labels: Int32Array;
  count: number;
  height: number;
  width: number;
  channels: 1 | 3;
  /** Used in messages: `<name>#<j>`. */
  name: string;
}

export interface SyntheticHandle {
  kind: 'synthetic';
  count: number;
  classes: number;
  /** Side of the generated square image before transforms. */
  size: number;
  seed: number;
}

export type SourceHandle = FolderHandle | PixelHandle | SyntheticHandle;
