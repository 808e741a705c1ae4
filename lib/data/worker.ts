// Loader worker thread: rebuilds the dataset from its shared handle, then runs chunk tasks (decode,
// augment, normalise into the batch's shared buffer) and answers each with labels and failures.
// Started by loader.ts as dist/data/worker.js, or from this .ts source through tsx (see loader.ts).
import { parentPort, workerData } from 'node:worker_threads';

import { ImageDataset, type DatasetHandle } from './dataset.js';
import { runChunk, type ChunkContext, type ChunkResult, type ChunkTask } from './sample.js';
import type { TransformSpec } from './transforms.js';

export interface WorkerInit {
  dataset: DatasetHandle;
  spec: TransformSpec;
  seed: number;
  concurrency: number;
}

export type WorkerReply =
  { type: 'done'; result: ChunkResult } | { type: 'fatal'; id: number; message: string; stack?: string };

if (parentPort) {
  const port = parentPort;
  const init = workerData as WorkerInit;
  const ctx: ChunkContext = {
    dataset: ImageDataset.fromHandle(init.dataset),
    spec: init.spec,
    seed: init.seed,
    concurrency: init.concurrency,
  };
  port.on('message', (task: ChunkTask) => {
    runChunk(task, ctx).then(
      (result) => port.postMessage({ type: 'done', result } satisfies WorkerReply),
      (e: unknown) => {
        const err = e instanceof Error ? e : new Error(String(e));
        port.postMessage({ type: 'fatal', id: task.id, message: err.message, stack: err.stack } satisfies WorkerReply);
      },
    );
  });
}
