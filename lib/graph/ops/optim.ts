// The optimizer tail of a training step, over the flat buffers: global grad norm, then fused AdamW
// (clip by global norm inside). Emitted after backward(); the flat buffers exist once the layout is final.
import type { Graph } from '../graph.js';
import type { Value } from '../value.js';

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Clip the global gradient norm to this (0: no clipping). docs/METHOD.md, Recipe: 3.0. */
  maxNorm?: number;
  /** Per-element lr multiplier [n] over the flat params (layer-wise lr decay of fine-tuning). */
  lrScale?: Value;
}

/** norm [1] = sqrt(sum grads^2) over every trainable parameter. */
export function gradNorm(g: Graph): Value {
  const grads = g.finalizeParams().grads;
  if (!grads) throw new Error('gradNorm: the graph has no trainable parameters');
  const norm = g.temp('grad_norm', [1]);
  g.emit('grad_norm', [grads], [norm]);
  return norm;
}

/**
 * params -= AdamW(grads) in place, with the decay mask from the param table, hyper [3] f32 =
 * (lr, weight_decay, step >= 1), and the moments in the bound buffers adam_m / adam_v.
 */
export function adamw(g: Graph, hyper: Value, norm: Value | null, opts: AdamWOptions = {}): void {
  const st = g.finalizeParams();
  if (!st.params || !st.grads) throw new Error('adamw: the graph has no trainable parameters');
  if (hyper.dtype !== 'f32' || hyper.shape.length !== 1 || hyper.shape[0] !== 3)
    throw new Error(`adamw: hyper '${hyper.name}' must be f32 [3]`);
  const { m, v, wdMask } = g.optimizerState();
  const ins = opts.lrScale ? [st.grads, wdMask, hyper, norm, opts.lrScale] : [st.grads, wdMask, hyper, norm];
  g.emit('adamw', ins, [st.params, m, v], {
    beta1: opts.beta1 ?? 0.9,
    beta2: opts.beta2 ?? 0.999,
    eps: opts.eps ?? 1e-8,
    max_norm: opts.maxNorm ?? 0,
  });
}
