// The graph builder: symbolic values, a static op list, a tape of backward rules, and the parameter table.
//
// Op families (lib/graph/ops/*) call g.emit() for their forward op and g.record() for the rule that
// emits their backward ops. backward(seeds) walks the tape in reverse; rules ask for the gradient of
// their outputs with gradOf() and for a place to write the gradient of an input with gradSink():
//   - activation gradients are temps `d:<name>`; the first write to one gets acc=0 (overwrite), later
//     writes acc=1 (accumulate: the residual stream, a value with several consumers);
//   - parameter gradients are windows into the flat `grads` buffer, with the same rule: the first
//     full write overwrites (a weight gradient's gemm stores without reading C), later ones add; the
//     params no sink reached get a zero fill at the start of the backward;
//   - a window (partial view) of an activation: its root gradient is zero-filled first, then acc=1;
//   - outputs that ops.h defines as accumulate-only (dw/db, dgamma, dtoken) and row scatters go
//     through accSink(): a fresh gradient (activation or param) is zero-filled first.
// Buffer lifetimes are planned natively: temps are just declared.
import type { OpName } from '../engine/ops.js';
import {
  type DType,
  type InitSpec,
  type ParamGroup,
  type ParamInfo,
  type Value,
  type ValueKind,
  defaultDecay,
  isFullView,
  numel,
  rootOf,
  sameShape,
  shapeStr,
} from './value.js';

export type AttrValue = number | boolean;
export type OpAttrs = Record<string, AttrValue>;

/** One op of the static list; null marks an empty optional slot. */
export interface OpRecord {
  op: OpName;
  in: (Value | null)[];
  out: (Value | null)[];
  attrs: OpAttrs;
  /** 'forward', 'backward' or 'optim' (for inspection and tests). */
  phase: Phase;
}
export type Phase = 'forward' | 'backward' | 'optim';

interface GradState {
  value: Value;
  written: boolean;
}

/** The flat bound buffers, created when the parameter layout is finalised. */
export interface StateValues {
  params?: Value;
  grads?: Value;
  frozen?: Value;
  consts?: Value;
  /** AdamW moments and the weight-decay mask (u8), created by optimizerState(). */
  adam_m?: Value;
  adam_v?: Value;
  wd_mask?: Value;
}

export class Graph {
  readonly values: Value[] = [];
  readonly ops: OpRecord[] = [];
  readonly params: ParamInfo[] = [];
  readonly paramValues = new Map<string, Value>();
  readonly consts: { value: Value; data: Float32Array; offset: number }[] = [];
  /** When false, ops record no backward rules and produce values that need no gradient. */
  gradEnabled = true;
  /**
   * Mixed precision (native/include/medic/ops.h, Precision): 'bf16' makes every linear layer's gemms
   * (forward and both backward products) multiply in bf16 with fp32 sums, and stores the block
   * activations that only gemms and attention read in bf16 (activationDtype), and the gradients that
   * only bf16 products and bias sums read (gradDtype). Parameters, their gradients, the other
   * activation gradients, the residual stream, statistics and losses stay f32.
   */
  precision: 'fp32' | 'bf16' = 'fp32';

  /** The dtype of activations that may be stored in bf16 under this graph's precision. */
  get activationDtype(): DType {
    return this.precision === 'bf16' ? 'bf16' : 'f32';
  }

  private readonly tape: { rule: () => void; at: number }[] = [];
  private readonly names = new Set<string>();
  private readonly grads = new Map<number, GradState>();
  private readonly gradViews = new Map<number, Value>();
  private readonly paramGrads = new Map<string, Value>();
  /** Params whose gradient an op has written this backward pass (the first write may overwrite). */
  private readonly paramGradWritten = new Set<string>();
  private phase: Phase = 'forward';
  private layout?: { train: number; frozen: number; consts: number };
  private stateValues: StateValues = {};
  private counter = 0;
  private scopes: string[] = [];
  private reads?: Map<number, number>;

  // ------------------------------------------------------------------ values

  private add(v: Omit<Value, 'id'>): Value {
    if (this.names.has(v.name)) throw new Error(`graph: a value named '${v.name}' exists already`);
    for (const d of v.shape)
      if (!Number.isInteger(d) || d <= 0) throw new Error(`graph: '${v.name}' has invalid shape ${shapeStr(v.shape)}`);
    const value = { ...v, id: this.values.length } as Value;
    this.names.add(v.name);
    this.values.push(value);
    return value;
  }

  /** A prefix for temp names (module paths), for readable programs and errors. */
  scope<T>(name: string, fn: () => T): T {
    this.scopes.push(name);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }
  private scoped(hint: string): string {
    return this.scopes.length ? `${this.scopes.join('.')}.${hint}` : hint;
  }

  /** A program input, written by the host before each step. */
  input(name: string, shape: number[], dtype: DType = 'f32', opts: { requiresGrad?: boolean } = {}): Value {
    return this.add({
      name,
      shape,
      dtype,
      kind: 'input',
      offset: 0,
      requiresGrad: !!opts.requiresGrad && dtype === 'f32',
    });
  }

  /** A parameter: a window into the flat buffer of its group. Register all params before backward(). */
  param(name: string, shape: number[], init: InitSpec, opts: { group?: ParamGroup; decay?: boolean } = {}): Value {
    if (this.layout) throw new Error(`graph: param '${name}' added after the parameter layout was finalised`);
    const group = opts.group ?? 'train';
    const info: ParamInfo = {
      name,
      shape: [...shape],
      init,
      decay: group === 'train' && (opts.decay ?? defaultDecay(name, shape)),
      group,
      offset: -1,
      numel: numel(shape),
    };
    const v = this.add({
      name,
      shape,
      dtype: 'f32',
      kind: 'param',
      offset: 0,
      requiresGrad: group === 'train',
      param: info,
    });
    this.params.push(info);
    this.paramValues.set(name, v);
    return v;
  }

  /** Fixed data (no gradient), e.g. a sin-cos position table; lives in the flat `consts` buffer. */
  constant(name: string, shape: number[], data: Float32Array): Value {
    if (this.layout) throw new Error(`graph: constant '${name}' added after the layout was finalised`);
    if (data.length !== numel(shape))
      throw new Error(`graph: constant '${name}' ${shapeStr(shape)} got ${data.length} values`);
    const v = this.add({ name, shape, dtype: 'f32', kind: 'const', offset: 0, requiresGrad: false, data });
    this.consts.push({ value: v, data, offset: -1 });
    return v;
  }

  /** A new temp produced by an op; requiresGrad when gradients are on and any source needs one. */
  temp(
    hint: string,
    shape: readonly number[],
    dtype: DType = 'f32',
    sources: (Value | null | undefined)[] = [],
  ): Value {
    // (bf16 activations get gradients too: their gradient temps are f32)
    const requiresGrad =
      this.gradEnabled && (dtype === 'f32' || dtype === 'bf16') && sources.some((s) => s?.requiresGrad);
    const base = this.scoped(hint);
    let name = base;
    while (this.names.has(name)) name = `${base}#${++this.counter}`;
    return this.add({ name, shape: [...shape], dtype, kind: 'temp', offset: 0, requiresGrad });
  }

  /** A reshape (offset 0, same numel) or a window (offset, smaller numel) of v: no copy. */
  view(v: Value, shape: readonly number[], offset = 0, hint?: string): Value {
    const n = numel(shape);
    if (offset < 0 || offset + n > numel(v.shape))
      throw new Error(`graph: view ${shapeStr(shape)} at ${offset} does not fit in '${v.name}' ${shapeStr(v.shape)}`);
    let name = `${hint ?? v.name}@${shapeStr(shape).replace(/ /g, '')}${offset ? `+${offset}` : ''}`;
    while (this.names.has(name)) name = `${name}#${++this.counter}`;
    return this.add({
      name,
      shape: [...shape],
      dtype: v.dtype,
      kind: 'view',
      of: v,
      offset,
      requiresGrad: v.requiresGrad,
    });
  }

  /** The in-place successor of v: same memory, written by the op that is about to be emitted. */
  alias(v: Value, hint: string, requiresGrad: boolean): Value {
    let name = this.scoped(hint);
    while (this.names.has(name)) name = `${name}#${++this.counter}`;
    return this.add({
      name,
      shape: [...v.shape],
      dtype: v.dtype,
      kind: 'view',
      of: v,
      offset: 0,
      alias: true,
      requiresGrad,
    });
  }

  /** Mark a root temp as a program output (read back after each step). */
  markOutput(v: Value, name?: string): Value {
    if (v.kind !== 'temp') throw new Error(`graph: only a temp can become an output, '${v.name}' is ${v.kind}`);
    if (name && name !== v.name) {
      if (this.names.has(name)) throw new Error(`graph: a value named '${name}' exists already`);
      this.names.delete(v.name);
      this.names.add(name);
      v.name = name;
    }
    v.kind = 'output';
    return v;
  }

  /** Run fn with gradients off (teacher, targets). */
  noGrad<T>(fn: () => T): T {
    const prev = this.gradEnabled;
    this.gradEnabled = false;
    try {
      return fn();
    } finally {
      this.gradEnabled = prev;
    }
  }

  // ------------------------------------------------------------------ ops and tape

  emit(
    op: OpName,
    ins: (Value | null | undefined)[],
    outs: (Value | null | undefined)[],
    attrs: OpAttrs = {},
  ): OpRecord {
    const rec: OpRecord = {
      op,
      in: ins.map((v) => v ?? null),
      out: outs.map((v) => v ?? null),
      attrs,
      phase: this.phase,
    };
    this.ops.push(rec);
    return rec;
  }

  /** Register the backward rule of the op just emitted, when any of its inputs needs a gradient. */
  record(inputs: (Value | null | undefined)[], rule: () => void): void {
    if (!this.gradEnabled || this.phase !== 'forward') return;
    if (!inputs.some((v) => v?.requiresGrad)) return;
    this.tape.push({ rule, at: this.ops.length });
  }

  get tapeLength(): number {
    return this.tape.length;
  }

  // ------------------------------------------------------------------ parameter layout

  /** Fix the offsets of params and consts in their flat buffers; after this no params may be added. */
  finalizeParams(): StateValues {
    if (this.layout) return this.stateValues;
    let train = 0;
    let frozen = 0;
    for (const p of this.params) {
      if (p.group === 'train') {
        p.offset = train;
        train += p.numel;
      } else {
        p.offset = frozen;
        frozen += p.numel;
      }
    }
    let consts = 0;
    for (const c of this.consts) {
      c.offset = consts;
      consts += c.data.length;
    }
    this.layout = { train, frozen, consts };
    const state = (name: string, n: number): Value | undefined =>
      n > 0 ? this.add({ name, shape: [n], dtype: 'f32', kind: 'state', offset: 0, requiresGrad: false }) : undefined;
    this.stateValues = {
      params: state('params', train),
      grads: state('grads', train),
      frozen: state('frozen', frozen),
      consts: state('consts', consts),
    };
    return this.stateValues;
  }

  get sizes(): { train: number; frozen: number; consts: number } {
    if (!this.layout) throw new Error('graph: the parameter layout is not finalised yet');
    return this.layout;
  }

  get state(): StateValues {
    return this.stateValues;
  }

  /** The AdamW state buffers (bound, flat like `params`), created on first use. */
  optimizerState(): { m: Value; v: Value; wdMask: Value } {
    const st = this.finalizeParams();
    if (!st.params) throw new Error('graph: no trainable parameters for an optimizer');
    const n = this.sizes.train;
    const mk = (name: string, dtype: DType): Value =>
      this.add({ name, shape: [n], dtype, kind: 'state', offset: 0, requiresGrad: false });
    st.adam_m ??= mk('adam_m', 'f32');
    st.adam_v ??= mk('adam_v', 'f32');
    st.wd_mask ??= mk('wd_mask', 'u8');
    return { m: st.adam_m, v: st.adam_v, wdMask: st.wd_mask };
  }

  /** The weight-decay mask over the flat params: 1 where AdamW decays. */
  decayMask(): Uint8Array {
    const mask = new Uint8Array(this.sizes.train);
    for (const p of this.params) if (p.group === 'train' && p.decay) mask.fill(1, p.offset, p.offset + p.numel);
    return mask;
  }

  /** The gradient window of a trainable param (created on first use). */
  paramGrad(p: Value): Value {
    return this.gradOfParam(p.param!);
  }

  private gradOfParam(info: ParamInfo): Value {
    let g = this.paramGrads.get(info.name);
    if (!g) {
      g = this.add({
        name: `grad:${info.name}`,
        shape: info.shape,
        dtype: 'f32',
        kind: 'grad',
        offset: 0,
        requiresGrad: false,
        param: info,
      });
      this.paramGrads.set(info.name, g);
    }
    return g;
  }

  // ------------------------------------------------------------------ backward

  /**
   * Emit the backward of everything recorded so far. Each seed gives the gradient (an existing value,
   * e.g. medic_loss's ds) of a value produced in the forward. A param's gradient is written, not added
   * to, by its first writer (gradSink), and only the params no sink reached are zero-filled (at the
   * start of the backward): no pass zeroes the whole gradient buffer, and the weight gradients' gemms
   * store their result without reading C (on the CPU that read cost ~15 % of those products).
   */
  backward(seeds: { value: Value; grad: Value }[]): void {
    if (this.phase !== 'forward') throw new Error('graph: backward() may run once');
    this.finalizeParams();
    this.phase = 'backward';
    for (const { value, grad } of seeds) {
      if (!sameShape(value.shape, grad.shape))
        throw new Error(`graph: seed for '${value.name}' ${shapeStr(value.shape)} has shape ${shapeStr(grad.shape)}`);
      if (!isFullView(value)) throw new Error(`graph: seed '${value.name}' must cover its whole buffer`);
      const { root } = rootOf(value);
      if (this.grads.has(root.id)) throw new Error(`graph: two seeds for '${root.name}'`);
      const g = sameShape(root.shape, grad.shape) ? grad : this.view(grad, root.shape);
      this.grads.set(root.id, { value: g, written: true });
    }
    const start = this.ops.length;
    for (let i = this.tape.length - 1; i >= 0; i--) this.tape[i].rule();
    // The params no sink handed out: zeroed before the backward's first op, so that an op writing a
    // param gradient without a sink (by paramGrad) still finds zeros to add to.
    const end = this.ops.length;
    for (const p of this.params)
      if (p.group === 'train' && !this.paramGradWritten.has(p.name))
        this.emit('fill', [], [this.gradOfParam(p)], { value: 0 });
    this.ops.splice(start, 0, ...this.ops.splice(end));
    this.phase = 'optim';
  }

  /** The gradient of v (a value whose consumers have all been differentiated), or undefined if none flows. */
  gradOf(v: Value): Value | undefined {
    const { root, offset } = rootOf(v);
    if (root.kind === 'param')
      return root.param!.group === 'train' ? this.windowOf(this.paramGrad(root), v, offset) : undefined;
    const st = this.grads.get(root.id);
    if (!st || !st.written) return undefined;
    return this.windowOf(st.value, v, offset);
  }

  private windowOf(rootGrad: Value, v: Value, offset: number): Value {
    if (offset === 0 && sameShape(v.shape, rootGrad.shape)) return rootGrad;
    let w = this.gradViews.get(v.id);
    if (!w) {
      w = this.view(rootGrad, v.shape, offset, `d:${v.name}`);
      this.gradViews.set(v.id, w);
    }
    return w;
  }

  /**
   * Where to write the gradient of input v, and with which `acc`: undefined when v needs none.
   * Call it right before emitting the op that writes it (it marks the gradient written).
   */
  gradSink(v: Value | null | undefined): { value: Value; acc: 0 | 1 } | undefined {
    if (!v || !v.requiresGrad) return undefined;
    const { root, offset } = rootOf(v);
    if (root.kind === 'param') return this.paramSink(root, v, offset);
    let st = this.grads.get(root.id);
    if (!st) {
      const g = this.temp(`d:${root.name}`, root.shape, this.gradDtype(root));
      st = { value: g, written: false };
      this.grads.set(root.id, st);
    }
    const window = this.windowOf(st.value, v, offset);
    if (isFullView(v)) {
      const acc = st.written ? 1 : 0;
      st.written = true;
      return { value: window, acc };
    }
    if (!st.written) {
      this.emit('fill', [], [st.value], { value: 0 });
      st.written = true;
    }
    return { value: window, acc: 1 };
  }

  /**
   * The storage of root's gradient: bf16 under mixed precision for a bf16 activation whose producer
   * reads the gradient only as bf16 operands and bias sums (Value.roundedGrad) and that one forward
   * input slot reads (so no second consumer accumulates into it in bf16); f32 otherwise.
   */
  private gradDtype(root: Value): DType {
    if (this.precision !== 'bf16' || root.dtype !== 'bf16' || !root.roundedGrad) return 'f32';
    return this.forwardReads().get(root.id) === 1 ? 'bf16' : 'f32';
  }

  /** How many forward input slots read each root value (counted once, when the backward starts). */
  private forwardReads(): Map<number, number> {
    if (!this.reads) {
      this.reads = new Map();
      for (const op of this.ops) {
        if (op.phase !== 'forward') continue;
        for (const v of op.in) {
          if (!v) continue;
          const id = rootOf(v).root.id;
          this.reads.set(id, (this.reads.get(id) ?? 0) + 1);
        }
      }
    }
    return this.reads;
  }

  /** gradSink for a param (or a window of one): as for activations, the first full write overwrites. */
  private paramSink(root: Value, v: Value, offset: number): { value: Value; acc: 0 | 1 } {
    const grad = this.paramGrad(root);
    const window = this.windowOf(grad, v, offset);
    const name = root.param!.name;
    if (this.paramGradWritten.has(name)) return { value: window, acc: 1 };
    this.paramGradWritten.add(name);
    if (isFullView(v)) return { value: window, acc: 0 };
    this.emit('fill', [], [grad], { value: 0 });
    return { value: window, acc: 1 };
  }

  /**
   * gradSink for an op that always adds into its gradient output (the accumulate-only outputs of ops.h:
   * layernorm_bwd's dw/db, scale_add_bwd's dgamma, mask_fill_bwd's dtoken) or writes only some of its
   * rows (scatter/copy of rows): a fresh gradient (activation or param) is zero-filled first, so acc
   * is always 1.
   */
  accSink(v: Value | null | undefined): { value: Value; acc: 1 } | undefined {
    const s = this.gradSink(v);
    if (!s) return undefined;
    if (s.acc === 0) this.emit('fill', [], [s.value], { value: 0 });
    return { value: s.value, acc: 1 };
  }

  /**
   * Let `to` take over `grad`, the finished gradient buffer of a value `to` flows into unchanged (same
   * numel), instead of copying it: valid because every consumer of that value was differentiated
   * before its producer (which reads `to`). Used by identity edges (the residual copy, add).
   * Returns false when it cannot (to is a param or a window, or already has a gradient).
   */
  donateGrad(grad: Value, to: Value): boolean {
    if (!to.requiresGrad || !isFullView(to) || !isFullView(grad)) return false;
    const { root } = rootOf(to);
    if (root.kind === 'param' || this.grads.has(root.id) || numel(grad.shape) !== numel(root.shape)) return false;
    this.grads.set(root.id, {
      value: sameShape(grad.shape, root.shape) ? grad : this.view(grad, root.shape),
      written: true,
    });
    return true;
  }

  /** A scratch temp for a required output slot whose value nobody needs. */
  scratch(hint: string, shape: readonly number[]): Value {
    return this.temp(`scratch:${hint}`, shape);
  }

  kindCount(kind: ValueKind): number {
    return this.values.filter((v) => v.kind === kind).length;
  }
}
