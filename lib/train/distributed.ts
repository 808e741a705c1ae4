// Data parallel training step: the compiled MEDiC graph of one rank, rewritten so that a step stays one
// native call and every rank ends it with the same parameters.
//
// - The flat gradient buffer is cut into buckets of contiguous values. Each bucket gets an
//   `allreduce` op right after the last backward op that writes into it, so buckets finished early
//   (the decoder and head come first in the backward pass) are reduced while the rest of the backward
//   pass runs; one `allreduce_wait` after the last gradient write completes them all, before
//   grad_norm and AdamW read the averaged gradient.
// - The losses output is averaged too, so every rank reports the loss of the global batch.
// - Every drop_path_mask op draws for the rank's samples as they sit in the global batch (row0), so
//   a run does not depend on how the global batch is split between processes.
import type { CompiledBuffer, CompiledGraph, CompiledOp } from '../graph/index.js';

export interface DistributedGraphOptions {
  /** Index of this rank's first sample in the global batch (rank x per-rank batch). */
  rowOffset: number;
  /** Values per gradient bucket (the last bucket may be smaller). */
  bucketValues: number;
  /** Outputs to average over ranks after the op that writes them (the losses). */
  averageOutputs: string[];
}

/** Where a buffer's values sit in its root buffer. */
interface Span {
  root: string;
  offset: number;
  numel: number;
}

function spans(buffers: CompiledBuffer[]): Map<string, Span> {
  const byName = new Map(buffers.map((b) => [b.name, b]));
  const out = new Map<string, Span>();
  const resolve = (b: CompiledBuffer, depth = 0): Span => {
    const known = out.get(b.name);
    if (known) return known;
    const numel = b.shape.reduce((a, d) => a * d, 1);
    let s: Span = { root: b.name, offset: 0, numel };
    if (b.kind === 'view' && b.of && byName.has(b.of) && depth < buffers.length) {
      const base = resolve(byName.get(b.of)!, depth + 1);
      s = { root: base.root, offset: base.offset + (b.offset ?? 0), numel };
    }
    out.set(b.name, s);
    return s;
  };
  for (const b of buffers) resolve(b);
  return out;
}

/** The gradient buckets of a graph: [start, end) ranges of `grads` and the op after which each is final. */
export function gradientBuckets(
  cg: CompiledGraph,
  bucketValues: number,
): { start: number; end: number; lastWrite: number }[] {
  const total = cg.sizes.train;
  if (total === 0) return [];
  if (!(Number.isSafeInteger(bucketValues) && bucketValues > 0))
    throw new Error(`gradient buckets: expected a positive integer size, got ${bucketValues}`);
  const sp = spans(cg.buffers);
  const buckets: { start: number; end: number; lastWrite: number }[] = [];
  for (let s = 0; s < total; s += bucketValues)
    buckets.push({ start: s, end: Math.min(total, s + bucketValues), lastWrite: -1 });
  cg.ops.forEach((op, k) => {
    for (const name of op.out) {
      const s = name ? sp.get(name) : undefined;
      if (!s || s.root !== 'grads') continue;
      const first = Math.floor(s.offset / bucketValues);
      const last = Math.floor((s.offset + Math.max(s.numel, 1) - 1) / bucketValues);
      for (let b = first; b <= last && b < buckets.length; b++)
        buckets[b].lastWrite = Math.max(buckets[b].lastWrite, k);
    }
  });
  const unwritten = buckets.find((b) => b.lastWrite < 0);
  if (unwritten)
    throw new Error(
      `gradient buckets: no op writes grads [${unwritten.start}, ${unwritten.end}): the graph has no backward pass there`,
    );
  return buckets;
}

/** The graph of one rank of a data-parallel run (see the file comment). */
export function distributedGraph(cg: CompiledGraph, o: DistributedGraphOptions): CompiledGraph {
  if (!(Number.isSafeInteger(o.rowOffset) && o.rowOffset >= 0))
    throw new Error(`distributed graph: rowOffset must be a non-negative integer, got ${o.rowOffset}`);
  const buckets = gradientBuckets(cg, o.bucketValues);
  const buffers: CompiledBuffer[] = [...cg.buffers];
  if (buckets.length > 0 && !buffers.some((b) => b.name === 'grads'))
    throw new Error("distributed graph: the graph trains parameters but declares no 'grads' buffer");
  // after[k]: ops to insert right after op k.
  const after = new Map<number, CompiledOp[]>();
  const insert = (k: number, op: CompiledOp): void => {
    const list = after.get(k) ?? [];
    list.push(op);
    after.set(k, list);
  };
  buckets.forEach((b, i) => {
    const name = `grads.bucket${i}`;
    buffers.push({ name, shape: [b.end - b.start], dtype: 'f32', kind: 'view', of: 'grads', offset: b.start });
    insert(b.lastWrite, { op: 'allreduce', in: [], out: [name], attrs: {} });
  });
  let lastStart = buckets.reduce((a, b) => Math.max(a, b.lastWrite), -1);
  for (const out of o.averageOutputs) {
    const k = cg.ops.findIndex((op) => op.out.includes(out));
    if (k < 0) throw new Error(`distributed graph: no op writes output '${out}'`);
    const later = cg.ops.findIndex((op, j) => j > k && op.out.includes(out));
    if (later >= 0)
      throw new Error(
        `distributed graph: output '${out}' is written by ops ${k} and ${later}; it can be averaged after one writer only`,
      );
    insert(k, { op: 'allreduce', in: [], out: [out], attrs: {} });
    lastStart = Math.max(lastStart, k);
  }
  if (lastStart >= 0)
    insert(lastStart, { op: 'allreduce_wait', in: [], out: buckets.length ? ['grads'] : [], attrs: {} });
  const ops: CompiledOp[] = [];
  cg.ops.forEach((op, k) => {
    ops.push(op.op === 'drop_path_mask' ? { ...op, attrs: { ...op.attrs, row0: o.rowOffset } } : op);
    for (const extra of after.get(k) ?? []) ops.push(extra);
  });
  return { ...cg, buffers, ops };
}
