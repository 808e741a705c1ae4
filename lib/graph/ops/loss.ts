// The fused MEDiC loss: values and gradients in one op. Its gradients (ds, dpred) are the seeds of
// the backward, so it records no rule of its own.
import type { Graph } from '../graph.js';
import { type Value, sameShape, shapeStr } from '../value.js';

export interface LossWeights {
  w_tok: number;
  w_cls: number;
  w_pix: number;
  tau?: number;
  beta?: number;
}

export interface MedicLossValues {
  /** [4] = (total, L_tok, L_cls, L_pix). */
  losses: Value;
  /** d total / d s, [B, 1+T, Dt]. */
  ds: Value;
  /** d total / d pred, [B, M, P]; absent when w_pix = 0. */
  dpred?: Value;
}

export function medicLoss(g: Graph, s: Value, t: Value, pred: Value | null, target: Value | null, w: LossWeights): MedicLossValues {
  if (!sameShape(s.shape, t.shape)) throw new Error(`medicLoss: s ${shapeStr(s.shape)} and t ${shapeStr(t.shape)} differ`);
  if ((w.w_pix !== 0) !== !!pred || !!pred !== !!target) throw new Error('medicLoss: pred and target are needed exactly when w_pix != 0');
  const losses = g.temp('losses', [4]);
  const ds = g.temp('d:s', s.shape);
  const dpred = pred ? g.temp('d:pred', pred.shape) : undefined;
  const attrs: Record<string, number> = { w_tok: w.w_tok, w_cls: w.w_cls, w_pix: w.w_pix, tau: w.tau ?? 0.1, beta: w.beta ?? 1 };
  g.emit('medic_loss', pred ? [s, t, pred, target] : [s, t], dpred ? [losses, ds, dpred] : [losses, ds], attrs);
  return { losses, ds, dpred };
}
