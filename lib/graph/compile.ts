// Graph -> a program spec for engine.program(), plus the metadata a trainer needs.
//
// Buffer mapping:
//   param (train)  -> view of `params` at its offset;  param (frozen) -> view of `frozen`
//   grad           -> view of `grads` at the param's offset
//   const          -> view of `consts`
//   state          -> bound (the caller supplies the tensor: see lib/graph/state.ts)
//   view           -> view of its `of` value
//   input/temp/output as they are (arena buffers, planned natively by liveness).
// Only buffers that some op touches (and the buffers their views hang from) are declared.
import type { OpName } from '../engine/ops.js';
import type { Graph, OpAttrs } from './graph.js';
import { type DType, type ParamInfo, type Value, numel, rootOf, shapeStr } from './value.js';

export type StateName = 'params' | 'grads' | 'frozen' | 'consts' | 'adam_m' | 'adam_v' | 'wd_mask';

export interface CompiledBuffer {
  name: string;
  shape: number[];
  dtype: DType;
  kind: 'input' | 'output' | 'temp' | 'bound' | 'view';
  of?: string;
  offset?: number;
  /** bound buffers: which flat state tensor backs it. */
  state?: StateName;
}

export interface CompiledOp {
  op: OpName;
  in: string[];
  out: string[];
  attrs: OpAttrs;
}

export interface CompiledGraph {
  buffers: CompiledBuffer[];
  ops: CompiledOp[];
  /** Every parameter with its group, offset, shape, init and decay flag (registration order). */
  params: ParamInfo[];
  sizes: { train: number; frozen: number; consts: number };
  inputs: { name: string; shape: number[]; dtype: DType }[];
  outputs: { name: string; shape: number[]; dtype: DType }[];
  /** The data of the flat `consts` buffer. */
  consts: Float32Array;
  /** AdamW's weight-decay mask over `params` (1 = decay). */
  wdMask: Uint8Array;
  /** The state tensors this program binds. */
  states: StateName[];
}

export function compile(g: Graph): CompiledGraph {
  const st = g.finalizeParams();
  validate(g);
  const used = new Set<Value>();
  const use = (v: Value): void => {
    if (used.has(v)) return;
    used.add(v);
    if (v.kind === 'view') use(v.of!);
    if (v.kind === 'param') use(v.param!.group === 'train' ? st.params! : st.frozen!);
    if (v.kind === 'grad') use(st.grads!);
    if (v.kind === 'const') use(st.consts!);
  };
  for (const op of g.ops) for (const v of [...op.in, ...op.out]) if (v) use(v);

  const buffers: CompiledBuffer[] = [];
  for (const v of g.values) {
    if (!used.has(v)) continue;
    const base = { name: v.name, shape: [...v.shape], dtype: v.dtype };
    switch (v.kind) {
      case 'input':
      case 'temp':
      case 'output':
        buffers.push({ ...base, kind: v.kind });
        break;
      case 'state':
        buffers.push({ ...base, kind: 'bound', state: v.name as StateName });
        break;
      case 'param':
        buffers.push({
          ...base,
          kind: 'view',
          of: v.param!.group === 'train' ? 'params' : 'frozen',
          offset: v.param!.offset,
        });
        break;
      case 'grad':
        buffers.push({ ...base, kind: 'view', of: 'grads', offset: v.param!.offset });
        break;
      case 'const': {
        const c = g.consts.find((c) => c.value === v)!;
        buffers.push({ ...base, kind: 'view', of: 'consts', offset: c.offset });
        break;
      }
      case 'view':
        buffers.push({ ...base, kind: 'view', of: v.of!.name, offset: v.offset });
        break;
    }
  }
  const consts = new Float32Array(g.sizes.consts);
  for (const c of g.consts) consts.set(c.data, c.offset);
  return {
    buffers,
    ops: g.ops.map((o) => ({
      op: o.op,
      in: o.in.map((v) => v?.name ?? ''),
      out: o.out.map((v) => v?.name ?? ''),
      attrs: { ...o.attrs },
    })),
    params: g.params.map((p) => ({ ...p, shape: [...p.shape] })),
    sizes: { ...g.sizes },
    inputs: buffers.filter((b) => b.kind === 'input').map(({ name, shape, dtype }) => ({ name, shape, dtype })),
    outputs: buffers.filter((b) => b.kind === 'output').map(({ name, shape, dtype }) => ({ name, shape, dtype })),
    consts,
    wdMask: g.sizes.train ? g.decayMask() : new Uint8Array(0),
    states: buffers.filter((b) => b.state).map((b) => b.state!),
  };
}

/**
 * Structural checks the native planner cannot make: every temp is written before it is read
 * (reading an unwritten gradient would be a backward bug), and views stay inside their roots.
 */
export function validate(g: Graph): void {
  const written = new Set<Value>();
  g.ops.forEach((op, k) => {
    for (const v of op.in) {
      if (!v) continue;
      const { root, offset } = rootOf(v);
      if (offset + numel(v.shape) > numel(root.shape))
        throw new Error(`graph: '${v.name}' ${shapeStr(v.shape)} at ${offset} overflows '${root.name}'`);
      if ((root.kind === 'temp' || root.kind === 'output') && !written.has(root))
        throw new Error(`graph: op ${k} (${op.op}) reads '${v.name}' before any op wrote '${root.name}'`);
    }
    for (const v of op.out) if (v) written.add(rootOf(v).root);
  });
}
