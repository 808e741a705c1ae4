// The eager executor: runs a compiled graph's op list one op at a time on real tensors, every buffer
// its own tensor (no arena sharing), so any intermediate can be read afterwards. For tests and debugging.
//
// Ops whose buffers are all whole tensors go through engine.op(); ops touching a view (a reshape or a
// window) run as a one-op Program over the tensors involved, bound, with the views declared on them.
import type { AnyTypedArray, Engine, Tensor } from '../engine/index.js';
import type { CompiledBuffer, CompiledGraph, CompiledOp } from './compile.js';
import type { GraphState } from './state.js';

export class EagerExecutor {
  private readonly roots = new Map<string, Tensor>();
  private readonly byName = new Map<string, CompiledBuffer>();

  constructor(
    readonly engine: Engine,
    readonly cg: CompiledGraph,
    readonly state: GraphState,
  ) {
    for (const b of cg.buffers) {
      this.byName.set(b.name, b);
      if (b.kind === 'input' || b.kind === 'temp' || b.kind === 'output')
        this.roots.set(b.name, engine.tensor(b.shape, b.dtype));
      else if (b.kind === 'bound') this.roots.set(b.name, state.get(b.state!));
    }
  }

  /** The root buffer of `name` and the element offset of `name` in it. */
  private resolve(name: string): { root: string; offset: number } {
    let cur = this.byName.get(name);
    if (!cur) throw new Error(`eager: unknown buffer '${name}'`);
    let offset = 0;
    while (cur.kind === 'view') {
      offset += cur.offset ?? 0;
      cur = this.byName.get(cur.of!)!;
    }
    return { root: cur.name, offset };
  }

  /** Run every op in order; `inputs` are written first. `after` sees each op once it ran. */
  async run(inputs: Record<string, AnyTypedArray>, after?: (k: number, op: CompiledOp) => void): Promise<void> {
    for (const inp of this.cg.inputs) {
      const data = inputs[inp.name];
      if (!data) throw new Error(`eager: input '${inp.name}' is missing`);
      this.roots.get(inp.name)!.write(data as never);
    }
    for (let k = 0; k < this.cg.ops.length; k++) {
      const op = this.cg.ops[k];
      try {
        await this.runOp(op);
      } catch (err) {
        throw new Error(
          `eager: op ${k} (${op.op} ${op.in.join(',')} -> ${op.out.join(',')}): ${(err as Error).message}`,
          { cause: err },
        );
      }
      after?.(k, op);
    }
  }

  private async runOp(op: CompiledOp): Promise<void> {
    const names = [...op.in, ...op.out].filter((n) => n);
    const allRoots = names.every((n) => this.roots.has(n));
    if (allRoots) {
      const t = (n: string): Tensor | null => (n ? this.roots.get(n)! : null);
      this.engine.op(op.op, op.in.map(t), op.out.map(t), op.attrs);
      return;
    }
    const buffers: {
      name: string;
      shape: number[];
      dtype: CompiledBuffer['dtype'];
      kind: 'bound' | 'view';
      of?: string;
      offset?: number;
      tensor?: Tensor;
    }[] = [];
    const seen = new Set<string>();
    for (const n of names) {
      if (seen.has(n)) continue;
      seen.add(n);
      const { root, offset } = this.resolve(n);
      const rb = this.byName.get(root)!;
      if (!seen.has(`root:${root}`)) {
        seen.add(`root:${root}`);
        buffers.push({
          name: `root:${root}`,
          shape: [...this.roots.get(root)!.shape],
          dtype: rb.dtype,
          kind: 'bound',
          tensor: this.roots.get(root)!,
        });
      }
      const b = this.byName.get(n)!;
      buffers.push({ name: n, shape: b.shape, dtype: b.dtype, kind: 'view', of: `root:${root}`, offset });
    }
    const prog = this.engine.program({ buffers, ops: [op] });
    try {
      await prog.run({});
    } finally {
      prog.dispose();
    }
  }

  /** The current contents of any buffer (a copy). */
  read(name: string): AnyTypedArray {
    const { root, offset } = this.resolve(name);
    const b = this.byName.get(name)!;
    const n = b.shape.reduce((a, d) => a * d, 1);
    return this.roots
      .get(root)!
      .read()
      .slice(offset, offset + n);
  }

  /** Overwrite a whole root buffer (an input, a temp) with data. */
  write(name: string, data: AnyTypedArray): void {
    const t = this.roots.get(name);
    if (!t) throw new Error(`eager: '${name}' is not a root buffer`);
    t.write(data as never);
  }

  dispose(): void {
    for (const [name, t] of this.roots) if (this.byName.get(name)!.kind !== 'bound') t.dispose();
    this.roots.clear();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
