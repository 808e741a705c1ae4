// The persistent state of a compiled graph (flat params, grads, AdamW moments, decay mask, frozen
// teacher weights, constants) as engine tensors, and the binding of a compiled graph to a Program.
import type { Engine, Program, Tensor } from '../engine/index.js';
import type { CompiledGraph, StateName } from './compile.js';
import { initProgramSpec } from './init.js';

export class GraphState {
  readonly tensors = new Map<StateName, Tensor>();

  /** Zeroed state for every flat buffer of the layout; consts and the decay mask hold their data. */
  constructor(
    readonly engine: Engine,
    readonly cg: CompiledGraph,
  ) {
    const { train, frozen, consts } = cg.sizes;
    if (train) {
      for (const n of ['params', 'grads', 'adam_m', 'adam_v'] as const)
        this.tensors.set(n, engine.tensor([train], 'f32'));
      this.tensors.set('wd_mask', engine.tensor([train], 'u8', cg.wdMask));
    }
    if (frozen) this.tensors.set('frozen', engine.tensor([frozen], 'f32'));
    if (consts) this.tensors.set('consts', engine.tensor([consts], 'f32', cg.consts));
  }

  get(name: StateName): Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`graph state: no '${name}' buffer (this graph has none)`);
    return t;
  }

  /** The values of one parameter (a copy). */
  readParam(name: string): Float32Array {
    const p = this.cg.params.find((p) => p.name === name);
    if (!p) throw new Error(`graph state: no parameter '${name}'`);
    const flat = this.get(p.group === 'train' ? 'params' : 'frozen').read() as Float32Array;
    return flat.slice(p.offset, p.offset + p.numel);
  }

  /** The gradient of one trainable parameter, as left by the last step. */
  readGrad(name: string): Float32Array {
    const p = this.cg.params.find((p) => p.name === name && p.group === 'train');
    if (!p) throw new Error(`graph state: no trainable parameter '${name}'`);
    return (this.get('grads').read() as Float32Array).slice(p.offset, p.offset + p.numel);
  }

  /** Write many parameters at once (by name); each value array must have the param's numel. */
  writeParams(values: Record<string, ArrayLike<number>>): void {
    for (const grp of ['train', 'frozen'] as const) {
      const flatName = grp === 'train' ? 'params' : 'frozen';
      const ps = this.cg.params.filter((p) => p.group === grp && values[p.name] !== undefined);
      if (!ps.length) continue;
      const t = this.get(flatName);
      const flat = t.read() as Float32Array;
      for (const p of ps) {
        const v = values[p.name];
        if (v.length !== p.numel) throw new Error(`graph state: '${p.name}' needs ${p.numel} values, got ${v.length}`);
        flat.set(v, p.offset);
      }
      t.write(flat);
    }
  }

  /** Run the native init ops over the param windows (needs the init kernels). */
  async initNative(seed: number, groups: ('train' | 'frozen')[] = ['train', 'frozen']): Promise<void> {
    const spec = initProgramSpec(this.cg, seed, groups);
    const prog = this.engine.program({
      buffers: spec.buffers.map((b) => ({ ...b, tensor: b.state ? this.get(b.state) : undefined })),
      ops: spec.ops,
    });
    try {
      await prog.run({});
    } finally {
      prog.dispose();
    }
  }

  /** Compile the graph into a native Program bound to this state. */
  program(): Program {
    return this.engine.program({
      buffers: this.cg.buffers.map((b) => ({
        name: b.name,
        shape: b.shape,
        dtype: b.dtype,
        kind: b.kind,
        of: b.of,
        offset: b.offset,
        tensor: b.state ? this.get(b.state) : undefined,
      })),
      ops: this.cg.ops,
    });
  }

  dispose(): void {
    for (const t of this.tensors.values()) t.dispose();
    this.tensors.clear();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
