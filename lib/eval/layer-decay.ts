// Layer-wise lr decay (BEiT, MAE's param_groups_lrd) and the weight-decay set of fine-tuning.
//
// Layer ids over a ViT of depth L: 0 for the patch embedding, cls_token and pos_embed; i + 1 for
// blocks.i; L + 1 for everything after the blocks (norm / fc_norm, head). A parameter of layer id l
// trains with lr * decay^(L + 1 - l): the head at the full lr, the embedding at decay^(L + 1).
// No weight decay on 1-D parameters (biases, norms, LayerScale, q/v biases), pos_embed and cls_token
// (the graph's decay flag, defaultDecay in lib/graph/value.ts).
import type { ParamInfo } from '../graph/index.js';

/** The layer id of a parameter named `<prefix>.<timm-like name>`. */
export function layerId(name: string, depth: number, prefix = 'encoder'): number {
  const n = name.startsWith(`${prefix}.`) ? name.slice(prefix.length + 1) : name;
  if (n === 'cls_token' || n === 'pos_embed' || n === 'mask_token' || n.startsWith('patch_embed.')) return 0;
  const m = /^blocks\.(\d+)\./.exec(n);
  if (m) return Number(m[1]) + 1;
  return depth + 1;
}

export function layerScale(name: string, depth: number, decay: number, prefix = 'encoder'): number {
  return decay ** (depth + 1 - layerId(name, depth, prefix));
}

/**
 * The lr scale of every element of the flat trainable buffer: params in registration order, laid out
 * one after another (the graph's layout), each filled with its layer's scale.
 */
export function lrScaleVector(
  params: readonly ParamInfo[],
  depth: number,
  decay: number,
  prefix = 'encoder',
): Float32Array {
  const train = params.filter((p) => p.group === 'train');
  const out = new Float32Array(train.reduce((a, p) => a + p.numel, 0));
  let off = 0;
  for (const p of train) {
    out.fill(layerScale(p.name, depth, decay, prefix), off, off + p.numel);
    off += p.numel;
  }
  return out;
}

export interface LrGroup {
  layer: number;
  scale: number;
  decay: boolean;
  names: string[];
}

/** The parameter groups as BEiT/MAE build them: one per (layer id, weight decay or not). */
export function lrGroups(params: readonly ParamInfo[], depth: number, decay: number, prefix = 'encoder'): LrGroup[] {
  const groups = new Map<string, LrGroup>();
  for (const p of params) {
    if (p.group !== 'train') continue;
    const layer = layerId(p.name, depth, prefix);
    const key = `${layer}:${p.decay}`;
    let grp = groups.get(key);
    if (!grp) groups.set(key, (grp = { layer, scale: decay ** (depth + 1 - layer), decay: p.decay, names: [] }));
    grp.names.push(p.name);
  }
  return [...groups.values()].sort((a, b) => a.layer - b.layer || Number(b.decay) - Number(a.decay));
}
