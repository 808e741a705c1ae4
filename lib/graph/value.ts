// Symbolic values of a graph: every Value becomes one named buffer of the compiled program.
//
// Kinds:
//   input   written by the host before each step (images, masks, indices, hyper, seed)
//   temp    produced by an op inside the step; the native planner shares bytes by liveness
//   output  like temp, but read back to the host after the step (losses, grad norm)
//   param   a window into a flat parameter buffer (group 'train' -> `params`, 'frozen' -> `frozen`)
//   grad    the gradient of a 'train' param: a window into the flat `grads` buffer (same offset)
//   const   fixed data written once at bind time (sin-cos tables), a window into `consts`
//   state   one of the flat bound buffers themselves (params, grads, adam_m, adam_v, wd_mask, ...)
//   view    a reshaped window of another value (`of`, element `offset`): no copy. A full view with
//           `alias` set is an in-place successor: ops wrote into `of`'s memory after `of` was made.
export type DType = 'f32' | 'bf16' | 'i32' | 'u8';

/** How a parameter is initialised (torch semantics; trunc_normal bounds are absolute, as trunc_normal_). */
export type InitSpec =
  | { kind: 'trunc_normal'; std: number; mean?: number; lo?: number; hi?: number }
  | { kind: 'uniform'; lo: number; hi: number }
  | { kind: 'zeros' }
  | { kind: 'ones' }
  | { kind: 'const'; value: number };

export type ParamGroup = 'train' | 'frozen';

export interface ParamInfo {
  name: string;
  shape: number[];
  init: InitSpec;
  /** Weight decay applies (AdamW wd_mask = 1): matrices only; never 1-D params, biases, pos embeds, tokens. */
  decay: boolean;
  group: ParamGroup;
  /** Element offset in its group's flat buffer (set when the layout is finalised). */
  offset: number;
  numel: number;
}

export type ValueKind = 'input' | 'temp' | 'output' | 'param' | 'grad' | 'const' | 'state' | 'view';

export interface Value {
  readonly id: number;
  name: string;
  readonly shape: readonly number[];
  readonly dtype: DType;
  kind: ValueKind;
  /** view: the viewed value and the element offset into it. */
  readonly of?: Value;
  readonly offset: number;
  readonly alias?: boolean;
  /** Gradients flow to this value (it depends on a trainable param or a grad-requiring input). */
  readonly requiresGrad: boolean;
  /** param / grad: the parameter. */
  readonly param?: ParamInfo;
  /** const: the data. state: which flat buffer. */
  readonly data?: Float32Array;
  /**
   * Set by the op that produced it when that op's backward reads the gradient only as bf16 (operands
   * of the bf16 gemm and the bf16 attention round it as they read it) or sums it in fp32 (a bias):
   * the gradient may then be stored in bf16 (Graph.gradSink) without changing any of those products.
   */
  roundedGrad?: boolean;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** The value that owns the memory of `v` (following views) and v's element offset into it. */
export function rootOf(v: Value): { root: Value; offset: number } {
  let cur = v;
  let offset = 0;
  while (cur.kind === 'view') {
    offset += cur.offset;
    cur = cur.of!;
  }
  return { root: cur, offset };
}

/** v covers the whole of its root (a reshape or an in-place alias, not a window). */
export function isFullView(v: Value): boolean {
  const { root, offset } = rootOf(v);
  return offset === 0 && numel(v.shape) === numel(root.shape);
}

/** docs/METHOD.md, Recipe: no weight decay on 1-D params, biases, position embeddings, cls/mask tokens. */
export function defaultDecay(name: string, shape: readonly number[]): boolean {
  if (shape.length < 2) return false;
  return !/(bias|pos_embed|positional_embedding|cls_token|class_embedding|mask_token)$/.test(name);
}
