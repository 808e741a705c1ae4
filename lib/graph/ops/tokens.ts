// Token bookkeeping: concatenation of rows, gather/scatter by index, mask tokens, patchify.
// Index inputs are [B, K] i32 (distinct per sample); masks are [B, T] u8.
import type { Graph } from '../graph.js';
import { type Value, numel, shapeStr } from '../value.js';

/**
 * y [B, sum Ti, C] = the parts [Bi, Ti, C] one after another along the rows; a part with Bi = 1 is
 * broadcast over the batch (the CLS token). Backward: copy_rows back out (summed over the batch for
 * broadcast parts, which needs acc=1).
 */
export function concatRows(g: Graph, parts: Value[], hint = 'concat_rows'): Value {
  const B = Math.max(...parts.map((p) => p.shape[0]));
  const C = parts[0].shape[2];
  for (const p of parts)
    if (p.shape.length !== 3 || p.shape[2] !== C || (p.shape[0] !== B && p.shape[0] !== 1))
      throw new Error(`concatRows: part '${p.name}' ${shapeStr(p.shape)} is not [${B} or 1, T, ${C}]`);
  const T = parts.reduce((a, p) => a + p.shape[1], 0);
  const y = g.temp(hint, [B, T, C], 'f32', parts);
  const offsets: number[] = [];
  let off = 0;
  for (const p of parts) {
    offsets.push(off);
    g.emit('copy_rows', [p], [y], { src: 0, dst: off, count: p.shape[1] });
    off += p.shape[1];
  }
  g.record(parts, () => {
    const dy = g.gradOf(y);
    if (!dy) return;
    parts.forEach((p, i) => {
      const broadcast = p.shape[0] === 1 && B > 1;
      const dp = broadcast ? g.accSink(p) : g.gradSink(p);
      if (dp) g.emit('copy_rows', [dy], [dp.value], { src: offsets[i], dst: 0, count: p.shape[1], acc: dp.acc });
    });
  });
  return y;
}

/** Rows [src, src+count) of x [B, T, C] as a new [B, count, C]. Backward: copy_rows into a zeroed sink. */
export function sliceRows(g: Graph, x: Value, src: number, count: number, hint = 'slice_rows'): Value {
  const [B, T, C] = x.shape;
  if (src < 0 || src + count > T)
    throw new Error(`sliceRows: rows ${src}..${src + count} outside '${x.name}' ${shapeStr(x.shape)}`);
  const y = g.temp(hint, [B, count, C], 'f32', [x]);
  g.emit('copy_rows', [x], [y], { src, dst: 0, count });
  g.record([x], () => {
    const dy = g.gradOf(y);
    const dx = dy && g.accSink(x);
    if (dx) g.emit('copy_rows', [dy], [dx.value], { src: 0, dst: src, count, acc: 1 });
  });
  return y;
}

/** y [B, K, C] = x[b, idx[b, k]]. Backward: scatter_rows into a zeroed (or accumulating) sink. */
export function gatherRows(g: Graph, x: Value, idx: Value, hint = 'gather_rows'): Value {
  checkIndex(x, idx);
  const [B, , C] = x.shape;
  const y = g.temp(hint, [B, idx.shape[1], C], 'f32', [x]);
  g.emit('gather_rows', [x, idx], [y]);
  g.record([x], () => {
    const dy = g.gradOf(y);
    const dx = dy && g.accSink(x);
    if (dx) g.emit('scatter_rows', [dy, idx], [dx.value], { acc: dx.acc });
  });
  return y;
}

function checkIndex(x: Value, idx: Value): void {
  if (x.shape.length !== 3) throw new Error(`'${x.name}' ${shapeStr(x.shape)} must be [B, T, C]`);
  if (idx.dtype !== 'i32' || idx.shape.length !== 2 || idx.shape[0] !== x.shape[0])
    throw new Error(`index '${idx.name}' must be i32 [${x.shape[0]}, K], got ${idx.dtype} ${shapeStr(idx.shape)}`);
}

/**
 * In place: x[b, t] = token where mask[b, t] (the dense encoding's mask token). x must not be read
 * afterwards; the returned value is its successor. Backward: mask_fill_bwd zeroes the masked rows of
 * the gradient (in place) and accumulates their sum into the token's gradient.
 */
export function maskFill(g: Graph, x: Value, mask: Value, token: Value, hint = 'mask_fill'): Value {
  if (mask.dtype !== 'u8' || mask.shape[0] !== x.shape[0] || mask.shape[1] !== x.shape[1])
    throw new Error(`maskFill: mask '${mask.name}' must be u8 [${x.shape[0]}, ${x.shape[1]}]`);
  if (numel(token.shape) !== x.shape[2])
    throw new Error(`maskFill: token '${token.name}' must have ${x.shape[2]} elements`);
  const tok = token.shape.length === 1 ? token : g.view(token, [x.shape[2]]);
  const y = g.alias(x, hint, g.gradEnabled && (x.requiresGrad || token.requiresGrad));
  g.emit('mask_fill', [mask, tok], [y]);
  g.record([x, token], () => {
    const dy = g.gradOf(y);
    if (!dy) return;
    const dtok = g.accSink(tok);
    g.emit('mask_fill_bwd', [mask, dy], [dy, dtok ? dtok.value : g.scratch(`d:${tok.name}`, tok.shape)]);
  });
  return y;
}

/**
 * The decoder's grid [B, N, C]: masked slots hold `token`, visible slots the rows of `vis` [B, V, C]
 * (visible [B, V] i32 gives their slots). Backward: gather the visible rows' gradient, and sum the
 * masked rows' gradient into the token's.
 */
export function scatterToGrid(
  g: Graph,
  vis: Value,
  visible: Value,
  mask: Value,
  token: Value,
  n: number,
  hint = 'grid',
): Value {
  checkIndex(vis, visible);
  const [B, , C] = vis.shape;
  if (mask.dtype !== 'u8' || mask.shape[0] !== B || mask.shape[1] !== n)
    throw new Error(`scatterToGrid: mask '${mask.name}' must be u8 [${B}, ${n}]`);
  const tok = token.shape.length === 1 ? token : g.view(token, [C]);
  const grid = g.temp(hint, [B, n, C], 'f32', [vis, token]);
  g.emit('mask_fill', [mask, tok], [grid]);
  g.emit('scatter_rows', [vis, visible], [grid]);
  g.record([vis, token], () => {
    const dgrid = g.gradOf(grid);
    if (!dgrid) return;
    const dvis = g.gradSink(vis);
    if (dvis) g.emit('gather_rows', [dgrid, visible], [dvis.value], { acc: dvis.acc });
    const dtok = g.accSink(tok);
    if (dtok) g.emit('mask_fill_bwd', [mask, dgrid], [dgrid, dtok.value]);
  });
  return grid;
}

/** img [B, Ch, H, W] -> [B, N, P]; order 1 = (ch, py, px) (conv weight layout), 0 = (py, px, ch) (MAE targets). */
export function patchify(g: Graph, img: Value, patch: number, order: 0 | 1, hint = 'patches'): Value {
  if (img.shape.length !== 4) throw new Error(`patchify: '${img.name}' ${shapeStr(img.shape)} is not [B, Ch, H, W]`);
  const [B, Ch, H, W] = img.shape;
  if (H % patch || W % patch) throw new Error(`patchify: image ${H}x${W} is not divisible by patch ${patch}`);
  const x = g.temp(hint, [B, (H / patch) * (W / patch), patch * patch * Ch], 'f32', [img]);
  g.emit('patchify', [img], [x], { patch, order });
  g.record([img], () => {
    const dx = g.gradOf(x);
    const dimg = dx && g.gradSink(img);
    if (!dimg) return;
    if (dimg.acc === 0) g.emit('unpatchify', [dx], [dimg.value], { patch, order });
    else {
      const t = g.temp(`d:${img.name}.part`, img.shape);
      g.emit('unpatchify', [dx], [t], { patch, order });
      g.emit('copy', [t], [dimg.value], { acc: 1 });
    }
  });
  return x;
}
