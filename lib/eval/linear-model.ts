// The linear probe as two programs over cached features: the training step (per probed block:
// BatchNorm without affine in training mode -> Linear -> cross entropy; backward; LARS or momentum SGD
// per tensor) and the evaluation forward (BatchNorm with the running statistics -> Linear -> logits).
// One classifier per probed block, all trained by the same native call.
import type { Engine, Program } from '../engine/index.js';
import { Graph, GraphState, compile, linear, type CompiledGraph, type Value } from '../graph/index.js';
import { batchNorm, crossEntropy, sgdUpdate } from '../graph/ops/classify.js';
import { ones, truncNormal, zeros } from '../nn/index.js';

export interface ProbeShape {
  /** Probed blocks (one classifier each). */
  layers: number;
  /** Feature width per block. */
  dim: number;
  classes: number;
  batch: number;
}

export interface ProbeOptimizer {
  kind: 'lars' | 'sgd';
  momentum: number;
  trust: number;
}

const BN_EPS = 1e-6;

interface ProbeParams {
  w: Value;
  b: Value;
  mean: Value;
  var: Value;
}

function probeParams(g: Graph, s: ProbeShape): ProbeParams[] {
  return Array.from({ length: s.layers }, (_, l) => ({
    w: g.param(`probe.${l}.weight`, [s.classes, s.dim], truncNormal(0.01)),
    b: g.param(`probe.${l}.bias`, [s.classes], zeros),
    mean: g.param(`probe.${l}.bn.running_mean`, [s.dim], zeros, { group: 'frozen' }),
    var: g.param(`probe.${l}.bn.running_var`, [s.dim], ones, { group: 'frozen' }),
  }));
}

/** Inputs x [L, B, F] f32, labels [B] i32, hyper [2] = (lr, weight decay); outputs loss.l, correct.l. */
export function buildProbeStep(s: ProbeShape, opt: ProbeOptimizer): CompiledGraph {
  const g = new Graph();
  const ps = probeParams(g, s);
  const x = g.input('x', [s.layers, s.batch, s.dim]);
  const labels = g.input('labels', [s.batch], 'i32');
  const hyper = g.input('hyper', [2]);
  const seeds: { value: Value; grad: Value }[] = [];
  ps.forEach((p, l) => {
    const xl = g.view(x, [s.batch, s.dim], l * s.batch * s.dim, `x${l}`);
    const y = batchNorm(g, xl, p.mean, p.var, { train: true, eps: BN_EPS, hint: `bn${l}` });
    const logits = linear(g, y, p.w, p.b, { hint: `logits${l}` });
    const ce = crossEntropy(g, logits, labels, { hint: `ce${l}` });
    g.markOutput(ce.loss, `loss.${l}`);
    g.markOutput(ce.correct, `correct.${l}`);
    seeds.push({ value: logits, grad: ce.dlogits });
  });
  g.backward(seeds);
  // MAE's LARS: the trust ratio on matrices only (biases take the plain momentum step).
  for (const p of ps) {
    sgdUpdate(g, p.w, hyper, { momentum: opt.momentum, trust: opt.kind === 'lars' ? opt.trust : 0 });
    sgdUpdate(g, p.b, hyper, { momentum: opt.momentum, trust: 0 });
  }
  return compile(g);
}

/** Input x [L, B, F]; outputs logits.l [B, K] (BatchNorm on the running statistics). */
export function buildProbeEval(s: ProbeShape): CompiledGraph {
  const g = new Graph();
  const ps = probeParams(g, s);
  const x = g.input('x', [s.layers, s.batch, s.dim]);
  g.noGrad(() =>
    ps.forEach((p, l) => {
      const xl = g.view(x, [s.batch, s.dim], l * s.batch * s.dim, `x${l}`);
      const y = batchNorm(g, xl, p.mean, p.var, { train: false, eps: BN_EPS, hint: `bn${l}` });
      g.markOutput(linear(g, y, p.w, p.b, { hint: `logits${l}` }), `logits.${l}`);
    }),
  );
  return compile(g);
}

/** Both programs with their states; the eval state is refreshed from the training state before use. */
export class LinearProbeModel {
  readonly train: { cg: CompiledGraph; state: GraphState; program: Program };
  readonly eval: { cg: CompiledGraph; state: GraphState; program: Program };

  constructor(
    engine: Engine,
    readonly shape: ProbeShape,
    readonly evalBatch: number,
    opt: ProbeOptimizer,
  ) {
    const mk = (cg: CompiledGraph) => {
      const state = new GraphState(engine, cg);
      return { cg, state, program: state.program() };
    };
    this.train = mk(buildProbeStep(shape, opt));
    this.eval = mk(buildProbeEval({ ...shape, batch: evalBatch }));
  }

  async init(seed: number): Promise<void> {
    await this.train.state.initNative(seed);
  }

  /** One step on x [L * B * F] (layer-major) and labels [B]: per-layer losses and hits. */
  async step(
    x: Float32Array,
    labels: Int32Array,
    lr: number,
    weightDecay: number,
  ): Promise<{ loss: number[]; correct: number[] }> {
    const r = await this.train.program.run({ x, labels, hyper: Float32Array.from([lr, weightDecay]) });
    const L = this.shape.layers;
    return {
      loss: Array.from({ length: L }, (_, l) => (r.outputs[`loss.${l}`] as Float32Array)[0]),
      correct: Array.from({ length: L }, (_, l) => (r.outputs[`correct.${l}`] as Float32Array)[0]),
    };
  }

  /** Copies the trained weights and running statistics into the eval program's state. */
  syncEval(): void {
    for (const flat of ['params', 'frozen'] as const)
      this.eval.state.get(flat).write(this.train.state.get(flat).read() as Float32Array);
  }

  /** Logits [L][evalBatch * K] of x [L * evalBatch * F]. */
  async logits(x: Float32Array): Promise<Float32Array[]> {
    const r = await this.eval.program.run({ x });
    return Array.from({ length: this.shape.layers }, (_, l) => r.outputs[`logits.${l}`] as Float32Array);
  }

  /** Params, momentum and running statistics, for checkpoints. */
  snapshot(): { params: Float32Array; mu: Float32Array; frozen: Float32Array } {
    const st = this.train.state;
    return {
      params: st.get('params').read() as Float32Array,
      mu: st.get('adam_m').read() as Float32Array,
      frozen: st.get('frozen').read() as Float32Array,
    };
  }

  restore(s: { params: Float32Array; mu: Float32Array; frozen: Float32Array }): void {
    const st = this.train.state;
    st.get('params').write(s.params);
    st.get('adam_m').write(s.mu);
    st.get('frozen').write(s.frozen);
  }

  dispose(): void {
    for (const p of [this.train, this.eval]) {
      p.program.dispose();
      p.state.dispose();
    }
  }
}
