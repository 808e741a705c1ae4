// Linear layers on the gemm op, and their backward.
//
// y = act(x W^T + b): x [..., K], W [N, K] (torch convention, gemm trans_b=1), b [N], y [..., N].
// With act 'gelu' the gemm's GELU epilogue is used and its pre-activation is kept for the backward.
// Backward (R = rows of x):
//   dz = gelu_bwd(preact, dy)                       (only with act 'gelu')
//   dx (acc per sink) = dz W                         gemm(dz, W)
//   dW += dz^T x                                     gemm(dz, x as [R, K], trans_a=1, acc=1)
//   db += sum over rows of dz                        sum_to(dz -> [N], acc=1)
// Under g.precision 'bf16' all three gemms take attr bf16=1 (the bf16 product, fp32 sums), and y
// (and the preact) are stored in x's dtype: a bf16 input gives a bf16 output. The gradient of the
// pre-activation (dz) is then bf16 as well, and so may be dy (y.roundedGrad; Graph.gradDtype): the
// gemms round an f32 dz to bf16 as they read it, so storing it rounded changes none of their
// results, only db's sum (of the rounded values, as torch.autocast's backward sums them).
import type { Graph } from '../graph.js';
import { type Value, numel, shapeStr } from '../value.js';

export interface LinearOptions {
  act?: 'none' | 'gelu';
  hint?: string;
}

export function linear(g: Graph, x: Value, w: Value, b: Value | null, opts: LinearOptions = {}): Value {
  if (w.shape.length !== 2)
    throw new Error(`linear: weight '${w.name}' must be 2-D [out, in], got ${shapeStr(w.shape)}`);
  const [N, K] = w.shape;
  if (x.shape[x.shape.length - 1] !== K)
    throw new Error(
      `linear: input '${x.name}' ${shapeStr(x.shape)} does not end in ${K} (weight '${w.name}' ${shapeStr(w.shape)})`,
    );
  if (b && numel(b.shape) !== N)
    throw new Error(`linear: bias '${b.name}' must have ${N} elements, got ${shapeStr(b.shape)}`);
  const outShape = [...x.shape.slice(0, -1), N];
  const hint = opts.hint ?? 'linear';
  const dtype = x.dtype === 'bf16' ? 'bf16' : 'f32';
  const y = g.temp(hint, outShape, dtype, [x, w, b]);
  const gelu = opts.act === 'gelu';
  const pre = gelu ? g.temp(`${hint}.preact`, outShape, dtype) : null;
  if (!gelu) y.roundedGrad = true; // dy only feeds the gemms (bf16 operands under mixed precision) and db
  const p16 = precisionAttrs(g);
  g.emit('gemm', [x, w, b], gelu ? [y, pre] : [y], gelu ? { trans_b: 1, act: 1, ...p16 } : { trans_b: 1, ...p16 });
  g.record([x, w, b], () => {
    const dy = g.gradOf(y);
    if (!dy) return;
    let dz = dy;
    if (gelu) {
      // stored as the preact is: bf16 under mixed precision, where only the bf16 gemms and the bias sum read it
      dz = g.temp(`d:${pre!.name}`, outShape, pre!.dtype);
      g.emit('gelu_bwd', [pre, dy], [dz], { acc: 0 });
    }
    linearBackward(g, x, w, b, dz);
  });
  return y;
}

/**
 * x^T x per batch: x [B, R, C] -> [B, C, C] (one batched gemm with trans_a = 1, A = B = x): the Gram
 * matrix of x's columns (evolved masking: the dot products of the teacher's attention columns, which
 * the hc clustering starts from). No backward (computed under noGrad). The product is the gemm's:
 * fp32 on the CPU (bf16 under mixed precision), bf16 products with fp32 sums on CUDA (ops.h).
 */
export function gram(g: Graph, x: Value, opts: { hint?: string } = {}): Value {
  if (x.shape.length !== 3) throw new Error(`gram: '${x.name}' ${shapeStr(x.shape)} is not [B, R, C]`);
  if (x.requiresGrad && g.gradEnabled) throw new Error('gram: has no backward (call it under noGrad)');
  const [B, , C] = x.shape;
  const y = g.temp(opts.hint ?? 'gram', [B, C, C], 'f32');
  g.emit('gemm', [x, x], [y], { trans_a: 1, ...precisionAttrs(g) });
  return y;
}

/** The gemm attrs of the graph's precision: bf16=1 for mixed precision. */
function precisionAttrs(g: Graph): { bf16?: number } {
  return g.precision === 'bf16' ? { bf16: 1 } : {};
}

/** The backward of y = x W^T + b given dz = dL/d(x W^T + b). */
export function linearBackward(g: Graph, x: Value, w: Value, b: Value | null, dz: Value): void {
  const [, K] = w.shape;
  const R = numel(x.shape) / K;
  const dx = g.gradSink(x);
  const p16 = precisionAttrs(g);
  if (dx) g.emit('gemm', [dz, w], [dx.value], { acc: dx.acc, ...p16 });
  const dw = g.gradSink(w);
  if (dw)
    g.emit('gemm', [dz, x.shape.length === 2 ? x : g.view(x, [R, K])], [dw.value], { trans_a: 1, acc: dw.acc, ...p16 });
  const db = g.gradSink(b);
  if (db) g.emit('sum_to', [dz], [db.value], { acc: db.acc });
}
