// LayerNorm (affine or parameter-free) and per-patch pixel normalisation.
//
// layernorm: x [..., C] -> y, with mean [R] and rstd [R] kept for the backward (R = rows of x).
// unbiased: the variance over C - 1 (torch's default var()), as the official code normalises the
// teacher's targets; the backward gets the same attr.
// Backward: layernorm_bwd(dy, x, mean, rstd, w) -> dx (acc per sink), dw, db (accumulate into grads).
import type { Graph } from '../graph.js';
import { type Value, numel, shapeStr } from '../value.js';

/** LayerNorm and pixel_norm eps of the student, decoder and targets (docs/METHOD.md, Defaults); CLIP's is 1e-5. */
export const NORM_EPS = 1e-6;

/** opts.dtype: how y is stored (bf16 for a y that only gemms read, under mixed precision). */
export function layerNorm(
  g: Graph,
  x: Value,
  w: Value | null,
  b: Value | null,
  opts: { eps?: number; unbiased?: boolean; hint?: string; dtype?: 'f32' | 'bf16' } = {},
): Value {
  const C = x.shape[x.shape.length - 1];
  const R = numel(x.shape) / C;
  for (const p of [w, b])
    if (p && numel(p.shape) !== C)
      throw new Error(`layerNorm: '${p.name}' ${shapeStr(p.shape)} must have ${C} elements`);
  if (b && !w) throw new Error('layerNorm: a bias needs a weight');
  const hint = opts.hint ?? 'ln';
  const y = g.temp(hint, x.shape, opts.dtype ?? 'f32', [x, w, b]);
  const mean = g.temp(`${hint}.mean`, [R]);
  const rstd = g.temp(`${hint}.rstd`, [R]);
  const unbiased: Record<string, number> = opts.unbiased ? { unbiased: 1 } : {};
  g.emit('layernorm', [x, w, b], [y, mean, rstd], { eps: opts.eps ?? NORM_EPS, ...unbiased });
  g.record([x, w, b], () => {
    const dy = g.gradOf(y);
    if (!dy) return;
    const dx = g.gradSink(x);
    const dw = g.accSink(w); // layernorm_bwd adds into dw and db
    const db = g.accSink(b);
    // dx is a required output slot: a scratch buffer when x needs no gradient.
    const dxOut = dx ? dx.value : g.scratch(`d:${x.name}`, x.shape);
    g.emit('layernorm_bwd', [dy, x, mean, rstd, w], [dxOut, dw?.value ?? null, db?.value ?? null], {
      acc: dx ? dx.acc : 0,
      ...unbiased,
    });
  });
  return y;
}

/** (x - mean) / sqrt(unbiased var + eps) per row of P values: MAE's normalised pixel target (no grad). */
export function pixelNorm(g: Graph, x: Value, opts: { eps?: number; hint?: string } = {}): Value {
  if (x.requiresGrad && g.gradEnabled) throw new Error('pixelNorm: has no backward (targets only)');
  const y = g.temp(opts.hint ?? 'pixel_norm', x.shape, 'f32');
  g.emit('pixel_norm', [x], [y], { eps: opts.eps ?? NORM_EPS });
  return y;
}
