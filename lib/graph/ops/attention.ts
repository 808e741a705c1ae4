// Fused multi-head attention over a packed qkv [B, T, 3*H*Hd] (timm packing [3, H, Hd] per token).
// Forward keeps o and lse (log-sum-exp per score row) for attention_bwd; no T x T matrix anywhere.
import type { Graph } from '../graph.js';
import { type Value, shapeStr } from '../value.js';

export function attention(g: Graph, qkv: Value, heads: number, opts: { scale?: number; hint?: string } = {}): Value {
  if (qkv.shape.length !== 3 || qkv.shape[2] % (3 * heads) !== 0)
    throw new Error(`attention: qkv '${qkv.name}' ${shapeStr(qkv.shape)} is not [B, T, 3 * ${heads} * Hd]`);
  const [B, T, C3] = qkv.shape;
  const D = C3 / 3;
  const scale = opts.scale ?? 1 / Math.sqrt(D / heads);
  const hint = opts.hint ?? 'attn';
  const o = g.temp(hint, [B, T, D], qkv.dtype === 'bf16' ? 'bf16' : 'f32', [qkv]); // stored as qkv is
  o.roundedGrad = true; // the bf16 attention_bwd rounds dO to bf16 as it reads it (ops.h)
  const lse = g.temp(`${hint}.lse`, [B, heads, T]);
  g.emit('attention', [qkv], [o, lse], { heads, scale });
  g.record([qkv], () => {
    const dO = g.gradOf(o);
    const dqkv = dO && g.gradSink(qkv);
    if (dqkv) g.emit('attention_bwd', [dO, qkv, o, lse], [dqkv.value], { heads, scale, acc: dqkv.acc });
  });
  return o;
}

/**
 * The head-averaged attention map of a block from its packed qkv: softmax(scale q k^T) over all T
 * keys, averaged over heads, the first `prefix` rows and columns (the CLS token) dropped afterwards:
 * [B, T - prefix, T - prefix]. No backward (a masking source, computed under noGrad).
 */
export function attentionProbs(
  g: Graph,
  qkv: Value,
  heads: number,
  opts: { prefix?: number; scale?: number; hint?: string } = {},
): Value {
  if (qkv.shape.length !== 3 || qkv.shape[2] % (3 * heads) !== 0)
    throw new Error(`attentionProbs: qkv '${qkv.name}' ${shapeStr(qkv.shape)} is not [B, T, 3 * ${heads} * Hd]`);
  if (qkv.requiresGrad && g.gradEnabled) throw new Error('attentionProbs: has no backward (call it under noGrad)');
  const [B, T, C3] = qkv.shape;
  const prefix = opts.prefix ?? 1;
  const scale = opts.scale ?? 1 / Math.sqrt(C3 / 3 / heads);
  const N = T - prefix;
  const p = g.temp(opts.hint ?? 'attn_probs', [B, N, N], 'f32');
  g.emit('attention_probs', [qkv], [p], { heads, prefix, scale });
  return p;
}
