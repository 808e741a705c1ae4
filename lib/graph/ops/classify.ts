// The classification ops of the evaluation suite: cross entropy (labels or soft targets), the linear
// probe's BatchNorm without affine (frozen features: no backward), the mean of a token range (mean-pool
// heads), and the momentum-SGD / LARS update of one parameter tensor.
import type { Graph } from '../graph.js';
import { type Value, numel, shapeStr } from '../value.js';

export interface CrossEntropyValues {
  /** [1] mean over rows. */
  loss: Value;
  /** d loss / d logits [R, C]: the seed of the backward. */
  dlogits: Value;
  /** [1] rows whose argmax hits the label (with soft targets: the targets' argmax). */
  correct: Value;
}

/**
 * Cross entropy of logits [R, C] against labels [R] i32 (label smoothing by attr) or soft targets
 * [R, C] f32 (mixup / cutmix targets, smoothing folded in). Its gradient is the backward's seed, so it
 * records no rule (as medicLoss).
 */
export function crossEntropy(
  g: Graph,
  logits: Value,
  target: Value,
  opts: { smoothing?: number; hint?: string } = {},
): CrossEntropyValues {
  if (logits.shape.length !== 2)
    throw new Error(`crossEntropy: logits '${logits.name}' ${shapeStr(logits.shape)} must be [R, C]`);
  const hint = opts.hint ?? 'ce';
  const loss = g.temp(`${hint}.loss`, [1]);
  const dlogits = g.temp(`d:${logits.name}`, logits.shape);
  const correct = g.temp(`${hint}.correct`, [1]);
  const smoothing = target.dtype === 'f32' ? 0 : (opts.smoothing ?? 0);
  g.emit('cross_entropy', [logits, target], [loss, dlogits, correct], { smoothing });
  return { loss, dlogits, correct };
}

/**
 * BatchNorm1d without affine parameters over x [R, C] (the linear probe's, MAE): train uses the batch
 * statistics and moves runMean / runVar (frozen params, read and written by the op); eval uses them.
 */
export function batchNorm(
  g: Graph,
  x: Value,
  runMean: Value,
  runVar: Value,
  opts: { train: boolean; eps?: number; momentum?: number; hint?: string },
): Value {
  if (g.gradEnabled && x.requiresGrad)
    throw new Error(`batchNorm: '${x.name}' needs a gradient, but the op has no backward (frozen features only)`);
  if (x.shape.length !== 2) throw new Error(`batchNorm: '${x.name}' ${shapeStr(x.shape)} must be [R, C]`);
  const C = x.shape[1];
  for (const s of [runMean, runVar])
    if (numel(s.shape) !== C) throw new Error(`batchNorm: '${s.name}' must have ${C} elements`);
  const y = g.temp(opts.hint ?? 'bn', x.shape, 'f32');
  g.emit('batchnorm', [x], [y, runMean, runVar], {
    train: opts.train ? 1 : 0,
    eps: opts.eps ?? 1e-6,
    momentum: opts.momentum ?? 0.1,
  });
  return y;
}

/**
 * The mean of tokens from..T-1 of x [B, T, C] -> [B, 1, C], as one batched gemm with a constant
 * [B, 1, T] weight row (1 / (T - from) on the averaged tokens). Backward: the transposed gemm.
 */
export function meanTokens(g: Graph, x: Value, from: number, hint = 'mean_tokens'): Value {
  if (x.shape.length !== 3) throw new Error(`meanTokens: '${x.name}' ${shapeStr(x.shape)} must be [B, T, C]`);
  const [B, T, C] = x.shape;
  if (from < 0 || from >= T) throw new Error(`meanTokens: from ${from} outside [0, ${T})`);
  const w = new Float32Array(B * T);
  for (let b = 0; b < B; b++) w.fill(1 / (T - from), b * T + from, (b + 1) * T);
  const pool = g.constant(`${hint}.weights`, [B, 1, T], w);
  const y = g.temp(hint, [B, 1, C], 'f32', [x]);
  g.emit('gemm', [pool, x], [y], {});
  g.record([x], () => {
    const dy = g.gradOf(y);
    const dx = dy && g.gradSink(x);
    if (dx) g.emit('gemm', [pool, dy], [dx.value], { trans_a: 1, acc: dx.acc });
  });
  return y;
}

/**
 * One momentum-SGD (trust = 0) or LARS (trust > 0) update of a trainable param, its momentum in a
 * window of the flat `adam_m` buffer. Emitted after backward(). hyper [2] = (lr, weight decay).
 */
export function sgdUpdate(
  g: Graph,
  param: Value,
  hyper: Value,
  opts: { momentum?: number; trust?: number } = {},
): void {
  const info = param.param;
  if (!info || info.group !== 'train') throw new Error(`sgdUpdate: '${param.name}' is not a trainable parameter`);
  const { m } = g.optimizerState();
  const mu = g.view(m, param.shape, info.offset, `mu:${info.name}`);
  const trust = opts.trust ?? 0;
  const norms = trust > 0 ? g.temp(`lars:${info.name}`, [2]) : null;
  g.emit('sgd', [g.paramGrad(param), hyper], norms ? [param, mu, norms] : [param, mu], {
    momentum: opts.momentum ?? 0.9,
    trust,
  });
}
