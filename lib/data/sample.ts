// One sample from dataset to normalised tensor, and a chunk of them: the work a loader worker does.
//
// Shared by worker.ts (worker threads) and the loader's in-thread mode (workers: 0), so both produce
// the same bytes. A sample that cannot be read is replaced by another one drawn from its own stream
// (seed, epoch, index, attempt): the replacement is the same whichever worker meets the bad file.
// Every pick is tried afresh, with no per-thread memory of bad files: a truncated JPEG decodes for
// crops in its intact rows (libvips reads only the rows a crop needs) and fails for the others, so
// skipping a file some thread saw fail before would make the bytes depend on the worker count. A bad
// file costs one failed decode each time it is picked; the loader reports it once.
import type { ImageDataset } from './dataset.js';
import { SampleReadError, errorMessage } from './errors.js';
import { Rng, Stream } from '../util/rng.js';
import { sampleParams, writeImage, type TransformSpec } from './transforms.js';

/** Consecutive unreadable picks before a sample gives up (the dataset is then mostly broken). */
export const MAX_ATTEMPTS = 16;

export interface SampleFailure {
  index: number;
  where: string;
  message: string;
}

export interface SampleResult {
  /** The dataset index actually used (differs from the requested one after a replacement). */
  index: number;
  label: number;
  failures: SampleFailure[];
}

/** Replacement for attempt k >= 1 of sample i. */
export function replacementIndex(seed: number, epoch: number, index: number, attempt: number, length: number): number {
  const rng = new Rng(seed, Stream.replace, epoch, index, attempt);
  return rng.int(length);
}

/** Write sample `index` of `epoch` into out[offset .. offset + 3*S*S) as normalised CHW floats. */
export async function produceSample(
  ds: ImageDataset,
  index: number,
  spec: TransformSpec,
  seed: number,
  epoch: number,
  out: Float32Array,
  offset: number,
): Promise<SampleResult> {
  const failures: SampleFailure[] = [];
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const j = attempt === 0 ? index : replacementIndex(seed, epoch, index, attempt, ds.length);
    try {
      const img = await ds.open(j);
      // Augmentation streams are keyed by the requested index, so a replacement gets fresh randomness.
      const p = sampleParams(spec, img.width, img.height, seed, epoch, index);
      const rgb = await img.render(p.plan, spec.size, spec.size);
      writeImage(rgb, spec.size, p.flip, p.jitter, spec, out, offset);
      return { index: j, label: ds.label(j), failures };
    } catch (e) {
      if (!(e instanceof SampleReadError)) throw e;
      failures.push({ index: j, where: e.where, message: errorMessage(e) });
    }
  }
  throw new Error(
    `data: ${MAX_ATTEMPTS} unreadable images in a row while loading sample ${index} of ${ds.description}; last: ${failures.at(-1)!.message}`,
  );
}

export interface ChunkTask {
  id: number;
  epoch: number;
  /** Dataset indices, in batch order. */
  indices: Int32Array;
  /** The batch's image buffer (shared with the main thread) and this chunk's first slot in it. */
  images: SharedArrayBuffer;
  slot: number;
}

export interface ChunkResult {
  id: number;
  labels: Int32Array;
  indices: Int32Array;
  replaced: number;
  failures: SampleFailure[];
}

export interface ChunkContext {
  dataset: ImageDataset;
  spec: TransformSpec;
  seed: number;
  /** Samples decoded at once by one worker (overlaps file reads and libvips with JS work). */
  concurrency: number;
}

export async function runChunk(task: ChunkTask, ctx: ChunkContext): Promise<ChunkResult> {
  const { spec } = ctx;
  const per = 3 * spec.size * spec.size;
  const out = new Float32Array(task.images);
  const n = task.indices.length;
  const labels = new Int32Array(n);
  const indices = new Int32Array(n);
  const failures: SampleFailure[] = [];
  let replaced = 0;
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < n) {
      const k = next++;
      const r = await produceSample(
        ctx.dataset,
        task.indices[k],
        spec,
        ctx.seed,
        task.epoch,
        out,
        (task.slot + k) * per,
      );
      labels[k] = r.label;
      indices[k] = r.index;
      if (r.index !== task.indices[k]) replaced++;
      failures.push(...r.failures);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(ctx.concurrency, n)) }, lane));
  return { id: task.id, labels, indices, replaced, failures };
}
