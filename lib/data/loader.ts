// The batch loader: a pool of worker threads decoding and augmenting ahead of the trainer.
//
//   const loader = new DataLoader(train, { batchSize: 256, imageSize: 224, train: true, seed, start });
//   for await (const b of loader) { step(b.images, b.labels); log(b.waitMs); checkpoint(b.next); }
//   await loader.close();           // also done by `break` out of for-await, and after the last batch
//
// Order: train mode visits a permutation of the dataset per (seed, epoch) and drops the last partial
// batch; eval mode visits the dataset in order and keeps it. A position {epoch, index} is the next
// sample of that epoch's order, so resuming at a checkpointed `next` yields exactly the batches an
// uninterrupted run would have produced from there. Augmentation is keyed by (seed, epoch, sample),
// so the bytes do not depend on the number of workers either.
//
// Each batch is split into chunks; workers write their images straight into the batch's
// SharedArrayBuffer (no transfer, no per-chunk copies), and the batch hands out a view of it (the
// engine reads typed arrays over shared memory too): zero copies on the trainer's thread. A fresh
// buffer per batch costs nothing up front (its pages are mapped zeroed on first write, by the workers),
// whereas copying a [256, 3, 224, 224] batch out of it takes 150+ ms of the main thread.
// sharedMemory: false copies each batch once into an ordinary Float32Array and recycles the shared
// buffer, for consumers that need an ArrayBuffer.
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

import type { ImageDataset } from './dataset.js';
import { DataError } from './errors.js';
import { Rng, Stream, permutation } from '../util/rng.js';
import { runChunk, type ChunkContext, type ChunkResult, type ChunkTask } from './sample.js';
import { resolveTransform, type TransformOptions, type TransformSpec } from './transforms.js';
import type { WorkerInit, WorkerReply } from './worker.js';

export interface Position {
  epoch: number;
  /** Next sample of the epoch's order (0 = start of the epoch). */
  index: number;
}

export interface Batch {
  /** [size, 3, S, S] normalised, CHW per image. */
  images: Float32Array;
  labels: Int32Array;
  /** Dataset indices of the images (a replaced unreadable file shows its replacement's index). */
  indices: Int32Array;
  /** Real images in this batch: batchSize, or fewer for the last eval batch (padded after them with padLast). */
  size: number;
  epoch: number;
  /** Where this batch starts. */
  position: Position;
  /** Where the batch after it starts: checkpoint this to resume after the batch. */
  next: Position;
  /** How long next() blocked for this batch (ms): 0 when the loader keeps up. */
  waitMs: number;
}

export interface LoaderOptions {
  batchSize: number;
  /** Output side S. */
  imageSize: number;
  /** Training: shuffled per epoch, partial batch dropped, RandomResizedCrop + flip. Else: eval order and transforms. */
  train: boolean;
  /** Seeds the order and the augmentation (default 0). */
  seed?: number;
  /** Worker threads (default os.availableParallelism()); 0 decodes in the calling thread. */
  workers?: number;
  /** Batches prepared ahead while the trainer works on one (default 2). */
  prefetch?: number;
  /** Samples one chunk decodes at once (default 2); a worker holds up to 2 chunks, so up to 2x this in flight. */
  concurrency?: number;
  /** Resume position (default {epoch: 0, index: 0}). */
  start?: Position;
  /** Stop before this epoch (default: train Infinity, eval start.epoch + 1). */
  epochs?: number;
  /** Transform details beyond size and train mode (scale, ratio, hflip, colorJitter, cropPct, normalize). */
  transform?: Omit<TransformOptions, 'size' | 'train'>;
  /** Default: train. */
  shuffle?: boolean;
  /** Default: train. */
  dropLast?: boolean;
  /**
   * Pad a short last batch (eval) to batchSize: images zero-filled, labels and indices -1; `size`
   * still counts the real images. For a static graph with a fixed batch (default false).
   */
  padLast?: boolean;
  /** Hand out views of the SharedArrayBuffers the workers wrote (default true); false copies each batch into an ordinary ArrayBuffer. */
  sharedMemory?: boolean;
  /** One line per unreadable file (once per file); default console.warn. */
  onWarning?: (message: string) => void;
  /**
   * Paths already reported: share one set between the loaders of a run (one per epoch, the kNN ones)
   * so that each bad file is reported once per run, not once per loader.
   */
  reported?: Set<string>;
  /**
   * Data parallel (training only): batchSize and positions count the global batch of all ranks; this
   * loader decodes only the rank's contiguous share of each batch (batchSize / size images, the
   * rank-th), so the ranks together see exactly the batches one process would have seen.
   */
  shard?: { rank: number; size: number };
}

export interface LoaderStats {
  batches: number;
  images: number;
  /** Sum and max of Batch.waitMs. */
  waitMs: number;
  maxWaitMs: number;
  /** Samples replaced because their file could not be read. */
  replaced: number;
  /** Distinct unreadable files this loader met (reported or not: see `reported`). */
  badFiles: number;
  workers: number;
}

interface Executor {
  run(task: ChunkTask): Promise<ChunkResult>;
  close(): Promise<void>;
}

class InlineExecutor implements Executor {
  constructor(private readonly ctx: ChunkContext) {}
  run(task: ChunkTask): Promise<ChunkResult> {
    return runChunk(task, this.ctx);
  }
  async close(): Promise<void> {}
}

/**
 * How to start worker.ts. Compiled: dist/data/worker.js next to this file. From .ts sources (vitest,
 * tsx): Node 20 does not apply ESM loader hooks (--import tsx) to a worker's entry, so the worker
 * starts as a tiny CommonJS script that registers tsx's require hook and requires worker.ts.
 */
function startWorker(init: WorkerInit): Worker {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    const req = createRequire(here);
    let api: string;
    try {
      api = req.resolve('tsx/cjs/api');
    } catch {
      throw new Error(
        "data loader: running from .ts sources needs the 'tsx' package to start worker threads (or use the compiled dist/)",
      );
    }
    const entry = fileURLToPath(new URL('./worker.ts', here));
    const boot = `require(${JSON.stringify(api)}).register(); require(${JSON.stringify(entry)});`;
    return new Worker(boot, { eval: true, workerData: init });
  }
  return new Worker(new URL('./worker.js', here), { workerData: init });
}

interface Job {
  task: ChunkTask;
  resolve: (r: ChunkResult) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  jobs: Map<number, Job>;
}

class ThreadExecutor implements Executor {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private failure: Error | null = null;
  private closing = false;
  /** Chunks handed to one worker at a time; both run at once (runChunk is async), overlapping one's tail with the next. */
  private static readonly DEPTH = 2;

  constructor(count: number, init: WorkerInit) {
    for (let k = 0; k < count; k++) {
      const worker = startWorker(init);
      const slot: Slot = { worker, jobs: new Map() };
      worker.unref(); // idle workers never keep the process alive; ref'd while they hold work
      worker.on('message', (m: WorkerReply) => this.onReply(slot, m));
      worker.on('error', (e) => this.fail(e instanceof Error ? e : new Error(String(e))));
      worker.on('exit', (code) => {
        if (!this.closing) this.fail(new Error(`data loader: worker thread exited unexpectedly (code ${code})`));
      });
      this.slots.push(slot);
    }
  }

  run(task: ChunkTask): Promise<ChunkResult> {
    return new Promise((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      this.queue.push({ task, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let best: Slot | null = null;
      for (const s of this.slots)
        if (s.jobs.size < ThreadExecutor.DEPTH && (!best || s.jobs.size < best.jobs.size)) best = s;
      if (!best) return;
      const job = this.queue.shift()!;
      if (best.jobs.size === 0) best.worker.ref();
      best.jobs.set(job.task.id, job);
      best.worker.postMessage(job.task);
    }
  }

  private onReply(slot: Slot, m: WorkerReply): void {
    const id = m.type === 'done' ? m.result.id : m.id;
    const job = slot.jobs.get(id);
    if (!job) return;
    slot.jobs.delete(id);
    if (slot.jobs.size === 0) slot.worker.unref();
    if (m.type === 'done') job.resolve(m.result);
    else {
      const err = new Error(m.message);
      if (m.stack) err.stack = m.stack;
      job.reject(err);
    }
    this.pump();
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    for (const s of this.slots) {
      for (const job of s.jobs.values()) job.reject(e);
      s.jobs.clear();
    }
    for (const job of this.queue.splice(0)) job.reject(e);
  }

  async close(): Promise<void> {
    this.closing = true;
    this.fail(new Error('data loader closed'));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}

interface PendingBatch {
  position: Position;
  next: Position;
  size: number;
  staging: SharedArrayBuffer;
  done: Promise<{ labels: Int32Array; indices: Int32Array }>;
}

export class DataLoader implements AsyncIterableIterator<Batch> {
  readonly spec: TransformSpec;
  readonly batchSize: number;
  readonly batchesPerEpoch: number;
  readonly workers: number;
  readonly prefetch: number;
  readonly seed: number;
  readonly epochs: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;

  private readonly executor: Executor;
  private readonly perImage: number;
  private readonly sharedMemory: boolean;
  private readonly padLast: boolean;
  private readonly shard: { rank: number; size: number };
  /** Images this loader decodes per batch: batchSize, or this rank's share of it. */
  private readonly localBatch: number;
  private readonly onWarning: (message: string) => void;
  private readonly orders = new Map<number, Int32Array>();
  private readonly pool: SharedArrayBuffer[] = [];
  private readonly pending: PendingBatch[] = [];
  /** Unreadable files this loader met, and those already reported (shared between loaders with `reported`). */
  private readonly seenBad = new Set<string>();
  private readonly reported: Set<string>;
  private cursor: Position;
  private nextTaskId = 0;
  private closed = false;
  private closing: Promise<void> | null = null;
  private readonly counters: LoaderStats;

  constructor(
    readonly dataset: ImageDataset,
    options: LoaderOptions,
  ) {
    const o = options;
    const n = dataset.length;
    this.batchSize = o.batchSize;
    if (!Number.isSafeInteger(o.batchSize) || o.batchSize < 1)
      throw new RangeError(`batchSize must be a positive integer, found ${o.batchSize}`);
    this.spec = resolveTransform({ ...o.transform, size: o.imageSize, train: o.train });
    this.seed = o.seed ?? 0;
    if (!Number.isSafeInteger(this.seed) || this.seed < 0)
      throw new RangeError(`seed must be a non-negative integer, found ${this.seed}`);
    this.shuffle = o.shuffle ?? o.train;
    this.dropLast = o.dropLast ?? o.train;
    this.workers = o.workers ?? availableParallelism();
    if (!Number.isSafeInteger(this.workers) || this.workers < 0)
      throw new RangeError(`workers must be an integer >= 0, found ${this.workers}`);
    this.prefetch = o.prefetch ?? 2;
    if (!Number.isSafeInteger(this.prefetch) || this.prefetch < 0)
      throw new RangeError(`prefetch must be an integer >= 0, found ${this.prefetch}`);
    const concurrency = o.concurrency ?? 2;
    if (!Number.isSafeInteger(concurrency) || concurrency < 1)
      throw new RangeError(`concurrency must be a positive integer, found ${concurrency}`);
    if (n === 0) throw new DataError(`${dataset.description} has no images`);
    this.batchesPerEpoch = this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
    if (this.batchesPerEpoch === 0) {
      throw new DataError(
        `${dataset.description} has ${n} images, fewer than the batch size ${this.batchSize}: no full batch (the last partial batch is dropped in training)`,
      );
    }
    const start = o.start ?? { epoch: 0, index: 0 };
    if (
      !Number.isSafeInteger(start.epoch) ||
      start.epoch < 0 ||
      !Number.isSafeInteger(start.index) ||
      start.index < 0 ||
      start.index > n
    ) {
      throw new RangeError(
        `start position must be {epoch >= 0, 0 <= index <= ${n}} (integers), found ${JSON.stringify(start)}`,
      );
    }
    this.epochs = o.epochs ?? (o.train ? Infinity : start.epoch + 1);
    this.cursor = this.normalize(start);
    this.perImage = 3 * this.spec.size * this.spec.size;
    this.sharedMemory = o.sharedMemory ?? true;
    this.padLast = o.padLast ?? false;
    this.shard = o.shard ?? { rank: 0, size: 1 };
    const { rank, size: ranks } = this.shard;
    if (!Number.isSafeInteger(ranks) || ranks < 1 || !Number.isSafeInteger(rank) || rank < 0 || rank >= ranks)
      throw new RangeError(`shard must be {size >= 1, 0 <= rank < size} (integers), found ${JSON.stringify(o.shard)}`);
    if (ranks > 1 && (!this.dropLast || this.padLast))
      throw new RangeError('shard: only training loaders (full batches, no padding) can be sharded');
    if (this.batchSize % ranks !== 0)
      throw new RangeError(`shard: the batch of ${this.batchSize} images does not split evenly over ${ranks} ranks`);
    this.localBatch = this.batchSize / ranks;
    this.onWarning = o.onWarning ?? ((m) => console.warn(m));
    this.reported = o.reported ?? new Set<string>();
    this.counters = { batches: 0, images: 0, waitMs: 0, maxWaitMs: 0, replaced: 0, badFiles: 0, workers: this.workers };
    if (this.workers === 0) {
      this.executor = new InlineExecutor({ dataset, spec: this.spec, seed: this.seed, concurrency });
    } else {
      // sharp runs on libuv's thread pool, shared by all worker threads (4 threads unless set before
      // first use). Raising it here only helps when nothing has used the pool yet; see docs/DATA.md.
      process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, this.workers * concurrency));
      const init: WorkerInit = { dataset: dataset.handle(), spec: this.spec, seed: this.seed, concurrency };
      this.executor = new ThreadExecutor(this.workers, init);
    }
  }

  /** The order of one epoch: dataset indices, visited left to right. */
  order(epoch: number): Int32Array {
    let o = this.orders.get(epoch);
    if (!o) {
      const n = this.dataset.length;
      if (this.shuffle) o = permutation(n, new Rng(this.seed, Stream.shuffle, epoch));
      else {
        o = new Int32Array(n);
        for (let i = 0; i < n; i++) o[i] = i;
      }
      this.orders.set(epoch, o);
      // Batches in flight span at most two epochs: keep the two most recent.
      for (const e of this.orders.keys()) if (e < epoch - 1) this.orders.delete(e);
    }
    return o;
  }

  /** A position past the last batch of its epoch becomes the start of the next epoch. */
  private normalize(p: Position): Position {
    const n = this.dataset.length;
    const last = this.dropLast ? n - this.batchSize : n - 1;
    return p.index > last ? { epoch: p.epoch + 1, index: 0 } : { epoch: p.epoch, index: p.index };
  }

  /** The position of the next batch this loader will schedule (before prefetch, the next to be returned). */
  get position(): Position {
    return this.pending.length > 0 ? { ...this.pending[0].position } : { ...this.cursor };
  }

  private hasMore(): boolean {
    return this.cursor.epoch < this.epochs;
  }

  private schedule(): void {
    const position = this.cursor;
    const n = this.dataset.length;
    const global = Math.min(this.batchSize, n - position.index);
    const next = this.normalize({ epoch: position.epoch, index: position.index + global });
    // A sharded loader takes its rank's share of the global batch (full batches only, see the constructor).
    const size = global === this.batchSize ? this.localBatch : global;
    const from = position.index + this.shard.rank * (global === this.batchSize ? this.localBatch : 0);
    const indices = this.order(position.epoch).slice(from, from + size);
    this.cursor = next;
    const bytes = (this.padLast ? this.batchSize : size) * this.perImage * 4;
    let staging: SharedArrayBuffer;
    if (this.sharedMemory) staging = new SharedArrayBuffer(bytes);
    else staging = this.pool.pop() ?? new SharedArrayBuffer(this.localBatch * this.perImage * 4);
    // Chunks small enough that every worker gets a share of each batch, big enough to amortise messages.
    const chunk = Math.max(1, Math.min(16, Math.ceil(size / (2 * Math.max(1, this.workers)))));
    const parts: Promise<ChunkResult>[] = [];
    for (let s = 0; s < size; s += chunk) {
      parts.push(
        this.executor.run({
          id: this.nextTaskId++,
          epoch: position.epoch,
          indices: indices.subarray(s, Math.min(size, s + chunk)),
          images: staging,
          slot: s,
        }),
      );
    }
    const done = Promise.all(parts).then((results) => {
      const labels = new Int32Array(size);
      const idx = new Int32Array(size);
      let k = 0;
      for (const r of results) {
        labels.set(r.labels, k);
        idx.set(r.indices, k);
        k += r.labels.length;
        this.counters.replaced += r.replaced;
        for (const f of r.failures) this.reportBad(f.where, f.message);
      }
      return { labels, indices: idx };
    });
    done.catch(() => {}); // observed by next(); avoids an unhandled rejection when closed early
    this.pending.push({ position, next, size, staging, done });
  }

  private reportBad(where: string, message: string): void {
    this.seenBad.add(where);
    this.counters.badFiles = this.seenBad.size;
    if (this.reported.has(where)) return;
    this.reported.add(where);
    this.onWarning(
      `data: unreadable image skipped (replaced by another sample; ${this.reported.size} bad file(s) so far): ${message}`,
    );
  }

  async next(): Promise<IteratorResult<Batch, undefined>> {
    if (this.closed) return { done: true, value: undefined };
    if (this.pending.length === 0 && this.hasMore()) this.schedule();
    const pb = this.pending.shift();
    if (!pb) {
      await this.close();
      return { done: true, value: undefined };
    }
    while (this.pending.length < this.prefetch && this.hasMore()) this.schedule();
    const t0 = performance.now();
    let meta: { labels: Int32Array; indices: Int32Array };
    try {
      meta = await pb.done;
    } catch (e) {
      const closedMeanwhile = this.closed;
      await this.close();
      if (closedMeanwhile) return { done: true, value: undefined }; // close() while this next() waited
      throw e;
    }
    const total = this.padLast ? this.batchSize : pb.size;
    const view = new Float32Array(pb.staging, 0, total * this.perImage);
    if (total > pb.size) {
      view.fill(0, pb.size * this.perImage); // a recycled buffer holds an older batch there
      const labels = new Int32Array(total).fill(-1);
      const indices = new Int32Array(total).fill(-1);
      labels.set(meta.labels);
      indices.set(meta.indices);
      meta = { labels, indices };
    }
    let images: Float32Array;
    if (this.sharedMemory) images = view;
    else {
      images = view.slice();
      this.pool.push(pb.staging);
    }
    const waitMs = performance.now() - t0;
    const c = this.counters;
    c.batches++;
    c.images += pb.size;
    c.waitMs += waitMs;
    c.maxWaitMs = Math.max(c.maxWaitMs, waitMs);
    return {
      done: false,
      value: {
        images,
        labels: meta.labels,
        indices: meta.indices,
        size: pb.size,
        epoch: pb.position.epoch,
        position: pb.position,
        next: pb.next,
        waitMs,
      },
    };
  }

  async return(): Promise<IteratorResult<Batch, undefined>> {
    await this.close();
    return { done: true, value: undefined };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Stops the workers (idempotent). Batches already returned stay valid. */
  close(): Promise<void> {
    this.closed = true;
    this.closing ??= this.executor.close().then(() => {
      this.pending.length = 0;
      this.pool.length = 0;
    });
    return this.closing;
  }

  stats(): LoaderStats {
    return { ...this.counters };
  }

  /** Paths (or `<file>#<j>`) of the unreadable items this loader met so far. */
  badFiles(): string[] {
    return [...this.seenBad];
  }

  describe(): string {
    const s = this.spec;
    const aug = s.train
      ? `RandomResizedCrop(${s.size}, scale ${s.scale.join('..')}) + flip ${s.hflip}${s.jitter.some((j) => j > 0) ? ` + jitter ${s.jitter.join('/')}` : ''}`
      : `resize ${Math.floor(s.size / s.cropPct)} + center crop ${s.size}`;
    return `${this.dataset.description}: ${this.dataset.length} images, ${this.dataset.numClasses} classes, batch ${this.batchSize} (${this.batchesPerEpoch}/epoch), ${aug}, ${this.workers} worker(s), prefetch ${this.prefetch}`;
  }
}
