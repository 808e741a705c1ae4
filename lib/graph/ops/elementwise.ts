// Elementwise ops and their backward: add (with broadcast), copy, GELU, QuickGELU, vector concat.
import type { Graph } from '../graph.js';
import { type Value, numel, sameShape, shapeStr } from '../value.js';

/**
 * y = a + b, b broadcast over a's leading dims (b's shape a trailing sub-shape of a's, by numel of the
 * trailing dims). inPlace: y is written into a's memory (a must not be read afterwards).
 * Backward: da = dy (in place: nothing to do; else the buffer of dy is donated or copied),
 *           db = sum_to(dy -> b) (or a copy when shapes match).
 */
export function add(g: Graph, a: Value, b: Value, opts: { inPlace?: boolean; hint?: string } = {}): Value {
  // The native op checks shapes: express b with a's trailing dims.
  const tail = trailingShape(
    a.shape,
    numel(b.shape),
    `add: '${b.name}' ${shapeStr(b.shape)} does not broadcast over '${a.name}' ${shapeStr(a.shape)}`,
  );
  const bv = sameShape(b.shape, tail) ? b : g.view(b, tail);
  const requiresGrad = g.gradEnabled && (a.requiresGrad || b.requiresGrad);
  const y = opts.inPlace
    ? g.alias(a, opts.hint ?? 'add', requiresGrad)
    : g.temp(opts.hint ?? 'add', a.shape, 'f32', [a, b]);
  g.emit('add', [a, bv], [y]);
  g.record([a, b], () => {
    const dy = g.gradOf(y);
    if (!dy) return;
    if (!opts.inPlace) passGrad(g, dy, a);
    const db = g.gradSink(bv);
    if (db) {
      if (sameShape(bv.shape, dy.shape)) g.emit('copy', [dy], [db.value], { acc: db.acc });
      else g.emit('sum_to', [dy], [db.value], { acc: db.acc });
    }
  });
  return y;
}

/** The trailing dims of `shape` whose product is n. */
function trailingShape(shape: readonly number[], n: number, err: string): number[] {
  const out: number[] = [];
  let p = 1;
  for (let i = shape.length - 1; i >= 0 && p < n; i--) {
    out.unshift(shape[i]);
    p *= shape[i];
  }
  if (p !== n) throw new Error(err);
  return out;
}

/** dL/dx += dy for an identity edge y = x: donate dy's buffer when possible, else copy (acc per sink). */
export function passGrad(g: Graph, dy: Value, x: Value): void {
  if (!x.requiresGrad) return;
  if (g.donateGrad(dy, x)) return;
  const dx = g.gradSink(x)!;
  g.emit('copy', [dy], [dx.value], { acc: dx.acc });
}

/** y = x (a new buffer). Backward: the gradient buffer is donated when possible. */
export function copy(g: Graph, x: Value, hint = 'copy'): Value {
  const y = g.temp(hint, x.shape, 'f32', [x]);
  g.emit('copy', [x], [y]);
  g.record([x], () => {
    const dy = g.gradOf(y);
    if (dy) passGrad(g, dy, x);
  });
  return y;
}

/** inPlace: y is written into x's memory (x must not be read afterwards; not with gradients on x). */
function unary(g: Graph, op: 'gelu' | 'quick_gelu', x: Value, hint: string, inPlace = false): Value {
  if (inPlace && g.gradEnabled && x.requiresGrad)
    throw new Error(`${op}: in place on '${x.name}', whose backward needs it`);
  const y = inPlace ? g.alias(x, hint, false) : g.temp(hint, x.shape, 'f32', [x]);
  g.emit(op, [x], [y]);
  g.record([x], () => {
    const dy = g.gradOf(y);
    const dx = dy && g.gradSink(x);
    if (dx) g.emit(`${op}_bwd`, [x, dy], [dx.value], { acc: dx.acc });
  });
  return y;
}

/** GELU, erf form. */
export const gelu = (g: Graph, x: Value, hint = 'gelu', opts: { inPlace?: boolean } = {}): Value =>
  unary(g, 'gelu', x, hint, opts.inPlace);
/** CLIP's QuickGELU x * sigmoid(1.702 x). */
export const quickGelu = (g: Graph, x: Value, hint = 'quick_gelu', opts: { inPlace?: boolean } = {}): Value =>
  unary(g, 'quick_gelu', x, hint, opts.inPlace);

/**
 * Concatenate 1-D vectors into one [sum]; a number n stands for n zeros (the fixed zero k bias of the
 * student's qkv). Backward: each vector's gradient is a copy of its window (acc per sink).
 */
export function concat1d(g: Graph, parts: (Value | number)[], hint = 'concat'): Value {
  const sizes = parts.map((p) => (typeof p === 'number' ? p : numel(p.shape)));
  const total = sizes.reduce((a, b) => a + b, 0);
  const vecs = parts.filter((p): p is Value => typeof p !== 'number');
  const y = g.temp(hint, [total], 'f32', vecs);
  if (parts.some((p) => typeof p === 'number')) g.emit('fill', [], [y], { value: 0 });
  let off = 0;
  const windows: { part: Value; win: Value }[] = [];
  parts.forEach((p, i) => {
    if (typeof p !== 'number') {
      const win = g.view(y, [sizes[i]], off);
      g.emit('copy', [p], [win]);
      windows.push({ part: p, win });
    }
    off += sizes[i];
  });
  g.record(vecs, () => {
    if (!g.gradOf(y)) return;
    for (const { part, win } of windows) {
      const dwin = g.gradOf(win)!;
      const dp = g.gradSink(part);
      if (dp) g.emit('copy', [dwin], [dp.value], { acc: dp.acc });
    }
  });
  return y;
}
