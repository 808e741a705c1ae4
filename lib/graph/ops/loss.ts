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

/**
 * Loss balancing inputs of medicLoss: `scale` [3] multiplies the three weights on the device (a
 * per-step program input for 'ema', loss_weights' output for 'uncertainty'); with `logvar` (the
 * uncertainty weighting's parameter) the loss also emits d total / d logvar in the backward.
 */
export interface LossBalance {
  scale: Value;
  logvar?: Value;
}

/** scale = exp(-logvar) [3]: the uncertainty weighting's factor on each term (ops.h, loss_weights). */
export function lossWeights(g: Graph, logvar: Value): Value {
  if (logvar.shape.length !== 1 || logvar.shape[0] !== 3)
    throw new Error(`lossWeights: logvar must be [3], got ${shapeStr(logvar.shape)}`);
  const scale = g.temp('loss.scale', [3]);
  g.emit('loss_weights', [logvar], [scale]);
  return scale;
}

export function medicLoss(
  g: Graph,
  s: Value,
  t: Value,
  pred: Value | null,
  target: Value | null,
  w: LossWeights,
  balance?: LossBalance,
): MedicLossValues {
  if (!sameShape(s.shape, t.shape))
    throw new Error(`medicLoss: s ${shapeStr(s.shape)} and t ${shapeStr(t.shape)} differ`);
  if ((w.w_pix !== 0) !== !!pred || !!pred !== !!target)
    throw new Error('medicLoss: pred and target are needed exactly when w_pix != 0');
  const losses = g.temp('losses', [4]);
  const ds = g.temp('d:s', s.shape);
  const dpred = pred ? g.temp('d:pred', pred.shape) : undefined;
  const attrs: Record<string, number> = {
    w_tok: w.w_tok,
    w_cls: w.w_cls,
    w_pix: w.w_pix,
    tau: w.tau ?? 0.1,
    beta: w.beta ?? 1,
  };
  // Optional slots are empty; trailing ones are left out (the call reads as it did before balancing).
  const ins = balance ? [s, t, pred, target, balance.scale] : pred ? [s, t, pred, target] : [s, t];
  g.emit('medic_loss', ins, dpred ? [losses, ds, dpred] : [losses, ds], attrs);
  const logvar = balance?.logvar;
  if (logvar) {
    // d/dlogvar of sum_k w_k (exp(-logvar_k) L_k + logvar_k): the only path to logvar's gradient.
    const weights = { w_tok: w.w_tok, w_cls: w.w_cls, w_pix: w.w_pix };
    // loss_weights_bwd adds into its output (ops.h): accSink zero-fills the gradient first.
    g.record([logvar], () => {
      const dlogvar = g.accSink(logvar);
      if (dlogvar) g.emit('loss_weights_bwd', [logvar, losses], [dlogvar.value], weights);
    });
  }
  return { losses, ds, dpred };
}
