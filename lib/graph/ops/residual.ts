// The residual stream: x + keep[b] * gamma * y in one scale_add (LayerScale + DropPath + add).
//
// scale_add writes into x's memory. With gradients on, x itself is still needed (the LayerNorm before
// the branch reads it in its backward), so the stream is first copied; the copy's backward donates
// the gradient buffer, so in the backward the residual stream is ONE gradient buffer that every branch
// accumulates into (acc=1), with no add ops. With gradients off (teacher) the add is fully in place.
import type { Graph } from '../graph.js';
import { type Value, numel, sameShape, shapeStr } from '../value.js';
import { copy } from './elementwise.js';

export function residualAdd(
  g: Graph,
  x: Value,
  y: Value,
  gamma: Value | null,
  keep: Value | null,
  hint = 'residual',
): Value {
  if (!sameShape(x.shape, y.shape))
    throw new Error(`residualAdd: '${y.name}' ${shapeStr(y.shape)} differs from '${x.name}' ${shapeStr(x.shape)}`);
  const C = x.shape[x.shape.length - 1];
  if (gamma && numel(gamma.shape) !== C) throw new Error(`residualAdd: gamma '${gamma.name}' must have ${C} elements`);
  if (keep && numel(keep.shape) !== x.shape[0])
    throw new Error(`residualAdd: keep '${keep.name}' must have ${x.shape[0]} elements`);
  const needsGrad = g.gradEnabled && [x, y, gamma].some((v) => v?.requiresGrad);
  const base = needsGrad ? copy(g, x, `${hint}.in`) : x;
  const out = g.alias(base, hint, needsGrad);
  g.emit('scale_add', [y, gamma, keep], [out]);
  g.record([x, y, gamma], () => {
    const dOut = g.gradOf(out);
    if (!dOut) return;
    const dy = g.gradSink(y);
    const dgamma = g.accSink(gamma); // scale_add_bwd adds into dgamma
    if (!dy && !dgamma) return;
    const dyOut = dy ? dy.value : g.scratch(`d:${y.name}`, y.shape);
    g.emit('scale_add_bwd', [dOut, y, gamma, keep], [dyOut, dgamma?.value ?? null], { acc: dy ? dy.acc : 0 });
    // d(base) = dOut: same buffer (an alias), nothing to emit.
  });
  return out;
}

/** keep [B]: 0 with probability p, else 1/(1-p); seed [2] i32 is the per-step seed input. */
export function dropPathMask(
  g: Graph,
  seed: Value,
  batch: number,
  p: number,
  stream: number,
  hint = 'drop_path.keep',
): Value {
  if (!(p >= 0 && p < 1)) throw new Error(`dropPathMask: p must be in [0, 1), got ${p}`);
  const keep = g.temp(hint, [batch], 'f32');
  g.emit('drop_path_mask', [seed], [keep], { p, stream });
  return keep;
}
