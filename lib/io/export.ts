// The trained student as a timm VisionTransformer state dict (safetensors), and its reader.
//
// Our names (lib/models/vit.ts, under a prefix, 'encoder.' by default) -> timm's:
//   cls_token [1, 1, D], pos_embed [1, 1+N, D], patch_embed.proj.{weight [D, C, p, p], bias}  same
//   blocks.{i}.norm1, attn.qkv.weight, attn.proj, norm2, mlp.fc1, mlp.fc2, norm                 same
//   blocks.{i}.attn.q_bias + attn.v_bias -> attn.qkv.bias [3D] = cat(q_bias, zeros(D), v_bias)
//     (timm's qkv bias is a full learnable [3D]; ours has no k bias, so its k third is exactly 0)
//   blocks.{i}.gamma_1 / gamma_2 -> blocks.{i}.ls1.gamma / ls2.gamma (absent without LayerScale)
//   mask_token (dense encoding only) is not exported: timm's ViT has none and inference never uses it.
// A fine-tuned classifier (opts.head) adds head.{weight [K, D], bias [K]}; with the mean-pool head it
// has fc_norm.{weight, bias} and no norm.* (timm's global_pool='avg': norm is an Identity, fc_norm a
// LayerNorm), with the CLS head norm.* (global_pool='token'); the kwargs carry num_classes K.
// Everything is F32. The metadata holds format 'medic-native/timm-vit@1', 'arch' (our VitConfig as
// JSON) and 'timm' (the kwargs of timm.models.vision_transformer.VisionTransformer that rebuild the
// network, num_classes 0, plus a registered model name when one matches, and, when the caller gives
// the normalisation the run trained with, timm's pretrained_cfg {mean, std} with it: the input the
// network expects, read back by our teacher loader, lib/io/teacher.ts), so in Python:
//   m = timm.create_model(name or 'vit_base_patch16_224', pretrained=False, **kwargs)
//   m.load_state_dict(safetensors.torch.load_file(path))     # strict: every key matches
// The tensors and the kwargs do not depend on the normalisation: the file loads as strictly without it.
import type { Normalization } from '../data/transforms.js';
import type { GraphState } from '../graph/state.js';
import type { VitConfig } from '../models/vit.js';
import { SafetensorsFile, type WriteTensor, writeSafetensors } from './safetensors.js';

export const TIMM_VIT_FORMAT = 'medic-native/timm-vit@1';

/** A parameter getter over some flat buffer: our full name -> values (undefined when absent). */
export type ParamSource = (name: string) => Float32Array | undefined;

/** A source over a flat f32 buffer and a table of (name, offset, shape): a checkpoint's or a graph's. */
export function flatParamSource(
  flat: Float32Array,
  table: readonly { name: string; offset: number; shape: readonly number[] }[],
): ParamSource {
  const byName = new Map(table.map((p) => [p.name, p]));
  return (name) => {
    const p = byName.get(name);
    if (!p) return undefined;
    const n = p.shape.reduce((a, b) => a * b, 1);
    return flat.subarray(p.offset, p.offset + n);
  };
}

/** The trainable params of a graph state, read once. */
export function stateParamSource(state: GraphState): ParamSource {
  const train = state.cg.params.filter((p) => p.group === 'train');
  return flatParamSource(train.length ? (state.get('params').read() as Float32Array) : new Float32Array(0), train);
}

/** The architecture fields an export records (a full VitConfig, defaults filled in). */
export interface VitExportArch {
  img: number;
  patch: number;
  chans: number;
  dim: number;
  depth: number;
  heads: number;
  mlpRatio: number;
  /** The LayerScale init value (timm's init_values), or null when the student has no LayerScale. */
  layerScale: number | null;
}

export function exportArch(cfg: VitConfig): VitExportArch {
  return {
    img: cfg.img,
    patch: cfg.patch,
    chans: cfg.chans ?? 3,
    dim: cfg.dim,
    depth: cfg.depth,
    heads: cfg.heads,
    mlpRatio: cfg.mlpRatio ?? 4,
    // 0 is no LayerScale (timm builds none for init_values 0): the export then holds no ls*.gamma
    layerScale: cfg.layerScale === undefined ? 0.1 : cfg.layerScale || null,
  };
}

/** timm's registered name for a standard size, when there is one (only a hint: the kwargs suffice). */
function timmModelName(a: VitExportArch): string | undefined {
  const sizes: Record<string, string> = {
    '192/12/3': 'tiny',
    '384/12/6': 'small',
    '768/12/12': 'base',
    '1024/24/16': 'large',
  };
  const size = sizes[`${a.dim}/${a.depth}/${a.heads}`];
  const known = new Set(['16/224', '16/384', '32/224', '32/384', '14/224', '8/224']);
  return size && a.mlpRatio === 4 && a.chans === 3 && known.has(`${a.patch}/${a.img}`)
    ? `vit_${size}_patch${a.patch}_${a.img}`
    : undefined;
}

/** A classifier's head: class count and pooling (avg: mean of the patch tokens + fc_norm; cls: the CLS token). */
export interface ExportHead {
  classes: number;
  pool: 'avg' | 'cls';
}

export function timmKwargs(a: VitExportArch, head?: ExportHead): Record<string, unknown> {
  return {
    img_size: a.img,
    patch_size: a.patch,
    in_chans: a.chans,
    embed_dim: a.dim,
    depth: a.depth,
    num_heads: a.heads,
    mlp_ratio: a.mlpRatio,
    qkv_bias: true,
    init_values: a.layerScale,
    class_token: true,
    global_pool: head?.pool === 'avg' ? 'avg' : 'token',
    num_classes: head ? head.classes : 0,
  };
}

/** Our student's params -> timm's tensors (names, shapes, the composed qkv bias). */
export function studentToTimm(
  get: ParamSource,
  arch: VitExportArch,
  prefix = 'encoder',
  head?: ExportHead,
): Record<string, WriteTensor> {
  const { dim: D, depth, patch: p, chans: C } = arch;
  const N = (arch.img / p) ** 2;
  const H = Math.round(D * arch.mlpRatio);
  const out: Record<string, WriteTensor> = {};
  const take = (ours: string, shape: number[]): Float32Array => {
    const v = get(`${prefix}.${ours}`);
    if (!v) throw new Error(`export: the student has no parameter '${prefix}.${ours}'`);
    const n = shape.reduce((a, b) => a * b, 1);
    if (v.length !== n)
      throw new Error(
        `export: '${prefix}.${ours}' has ${v.length} values, the architecture needs [${shape.join(', ')}] = ${n}`,
      );
    return Float32Array.from(v);
  };
  const put = (timm: string, ours: string, shape: number[]) => {
    out[timm] = { dtype: 'F32', shape, data: take(ours, shape) };
  };
  put('cls_token', 'cls_token', [1, 1, D]);
  put('pos_embed', 'pos_embed', [1, 1 + N, D]);
  put('patch_embed.proj.weight', 'patch_embed.proj.weight', [D, C, p, p]);
  put('patch_embed.proj.bias', 'patch_embed.proj.bias', [D]);
  for (let i = 0; i < depth; i++) {
    const b = `blocks.${i}`;
    put(`${b}.norm1.weight`, `${b}.norm1.weight`, [D]);
    put(`${b}.norm1.bias`, `${b}.norm1.bias`, [D]);
    put(`${b}.attn.qkv.weight`, `${b}.attn.qkv.weight`, [3 * D, D]);
    const bias = new Float32Array(3 * D); // the k third stays 0
    bias.set(take(`${b}.attn.q_bias`, [D]), 0);
    bias.set(take(`${b}.attn.v_bias`, [D]), 2 * D);
    out[`${b}.attn.qkv.bias`] = { dtype: 'F32', shape: [3 * D], data: bias };
    put(`${b}.attn.proj.weight`, `${b}.attn.proj.weight`, [D, D]);
    put(`${b}.attn.proj.bias`, `${b}.attn.proj.bias`, [D]);
    if (arch.layerScale !== null) put(`${b}.ls1.gamma`, `${b}.gamma_1`, [D]);
    put(`${b}.norm2.weight`, `${b}.norm2.weight`, [D]);
    put(`${b}.norm2.bias`, `${b}.norm2.bias`, [D]);
    put(`${b}.mlp.fc1.weight`, `${b}.mlp.fc1.weight`, [H, D]);
    put(`${b}.mlp.fc1.bias`, `${b}.mlp.fc1.bias`, [H]);
    put(`${b}.mlp.fc2.weight`, `${b}.mlp.fc2.weight`, [D, H]);
    put(`${b}.mlp.fc2.bias`, `${b}.mlp.fc2.bias`, [D]);
    if (arch.layerScale !== null) put(`${b}.ls2.gamma`, `${b}.gamma_2`, [D]);
  }
  const norm = head?.pool === 'avg' ? 'fc_norm' : 'norm';
  put(`${norm}.weight`, `${norm}.weight`, [D]);
  put(`${norm}.bias`, `${norm}.bias`, [D]);
  if (head) {
    put('head.weight', 'head.weight', [head.classes, D]);
    put('head.bias', 'head.bias', [head.classes]);
  }
  return out;
}

/**
 * Writes the student as a timm ViT safetensors file. `names`: every param name of the source under the
 * prefix, checked so that no student parameter is silently left out (mask_token excepted).
 */
export function exportStudentTimm(
  path: string,
  get: ParamSource,
  cfg: VitConfig | VitExportArch,
  opts: {
    prefix?: string;
    names?: readonly string[];
    metadata?: Record<string, string>;
    head?: ExportHead;
    /** The input normalisation the network was trained with: written as timm's pretrained_cfg mean/std. */
    normalization?: Normalization;
  } = {},
): Record<string, WriteTensor> {
  const prefix = opts.prefix ?? 'encoder';
  const arch = exportArch(cfg);
  const tensors = studentToTimm(get, arch, prefix, opts.head);
  if (opts.names) {
    const used = new Set(studentNames(arch, prefix, opts.head));
    const left = opts.names.filter((n) => n.startsWith(`${prefix}.`) && !used.has(n) && n !== `${prefix}.mask_token`);
    if (left.length)
      throw new Error(
        `export: student parameters with no timm name: ${left.slice(0, 5).join(', ')}${left.length > 5 ? ', ...' : ''}`,
      );
  }
  const name = timmModelName(arch);
  writeSafetensors(path, tensors, {
    ...opts.metadata,
    format: TIMM_VIT_FORMAT,
    arch: JSON.stringify(arch),
    timm: JSON.stringify({
      ...(name ? { model: name } : {}),
      kwargs: timmKwargs(arch, opts.head),
      ...(opts.normalization
        ? { pretrained_cfg: { mean: [...opts.normalization.mean], std: [...opts.normalization.std] } }
        : {}),
    }),
    ...(opts.head ? { head: JSON.stringify(opts.head) } : {}),
  });
  return tensors;
}

/** Our param names that an export of `arch` reads. */
export function studentNames(arch: VitExportArch, prefix = 'encoder', head?: ExportHead): string[] {
  const norm = head?.pool === 'avg' ? 'fc_norm' : 'norm';
  const n = [
    'cls_token',
    'pos_embed',
    'patch_embed.proj.weight',
    'patch_embed.proj.bias',
    `${norm}.weight`,
    `${norm}.bias`,
  ];
  if (head) n.push('head.weight', 'head.bias');
  for (let i = 0; i < arch.depth; i++) {
    for (const s of [
      'norm1.weight',
      'norm1.bias',
      'attn.qkv.weight',
      'attn.q_bias',
      'attn.v_bias',
      'attn.proj.weight',
      'attn.proj.bias',
      'norm2.weight',
      'norm2.bias',
      'mlp.fc1.weight',
      'mlp.fc1.bias',
      'mlp.fc2.weight',
      'mlp.fc2.bias',
    ])
      n.push(`blocks.${i}.${s}`);
    if (arch.layerScale !== null) n.push(`blocks.${i}.gamma_1`, `blocks.${i}.gamma_2`);
  }
  return n.map((s) => `${prefix}.${s}`);
}

export interface StudentExport {
  path: string;
  arch: VitExportArch;
  /** Our param names (with the prefix) -> values. */
  params: Map<string, Float32Array>;
  metadata: Record<string, string>;
}

/**
 * Reads an export written by exportStudentTimm back into our param names (q_bias / v_bias split out of
 * qkv.bias, whose k third must be zero). Every tensor is checked against the recorded architecture.
 */
export function readStudentExport(path: string, opts: { prefix?: string } = {}): StudentExport {
  const prefix = opts.prefix ?? 'encoder';
  const f = new SafetensorsFile(path);
  try {
    if (f.metadata.format !== TIMM_VIT_FORMAT)
      throw new Error(
        `${path}: not a medic-native student export (metadata format is ${JSON.stringify(f.metadata.format ?? null)}, expected ${TIMM_VIT_FORMAT})`,
      );
    let arch: VitExportArch;
    try {
      arch = JSON.parse(f.metadata.arch) as VitExportArch;
    } catch (err) {
      throw new Error(`${path}: the 'arch' metadata is not valid JSON (${(err as Error).message})`, { cause: err });
    }
    for (const k of ['img', 'patch', 'chans', 'dim', 'depth', 'heads', 'mlpRatio'] as const)
      if (typeof arch[k] !== 'number' || !(arch[k] > 0))
        throw new Error(`${path}: the 'arch' metadata has no valid ${k} (${JSON.stringify(arch[k])})`);
    // The expected tensors are the ones an export of this arch writes (shapes from studentToTimm).
    const shapes = new Map<string, number[]>();
    const probe = studentToTimm((n) => new Float32Array(expectedNumel(arch, n.slice(prefix.length + 1))), arch, prefix);
    for (const [k, t] of Object.entries(probe)) shapes.set(k, t.shape);
    const missing = [...shapes.keys()].filter((k) => !f.tensors.has(k));
    const extra = f.names().filter((k) => !shapes.has(k));
    if (missing.length || extra.length)
      throw new Error(
        `${path}: tensors do not match the recorded architecture:${missing.length ? ` missing ${missing.slice(0, 5).join(', ')}` : ''}${extra.length ? ` unexpected ${extra.slice(0, 5).join(', ')}` : ''}`,
      );
    for (const [k, s] of shapes) {
      const got = f.info(k).shape;
      if (got.join(',') !== s.join(','))
        throw new Error(`${path}: '${k}' is [${got.join(', ')}], the recorded architecture needs [${s.join(', ')}]`);
    }
    const D = arch.dim;
    const params = new Map<string, Float32Array>();
    const to = (ours: string, v: Float32Array) => params.set(`${prefix}.${ours}`, v);
    for (const k of shapes.keys()) {
      const v = f.readF32(k);
      const m = /^blocks\.(\d+)\.(.+)$/.exec(k);
      if (m && m[2] === 'attn.qkv.bias') {
        const kPart = v.subarray(D, 2 * D);
        if (kPart.some((x) => x !== 0))
          throw new Error(`${path}: '${k}' has a non-zero k bias; the student's attention has q and v biases only`);
        to(`blocks.${m[1]}.attn.q_bias`, v.slice(0, D));
        to(`blocks.${m[1]}.attn.v_bias`, v.slice(2 * D));
      } else if (m && (m[2] === 'ls1.gamma' || m[2] === 'ls2.gamma')) {
        to(`blocks.${m[1]}.gamma_${m[2][2]}`, v);
      } else to(k, v);
    }
    return { path, arch, params, metadata: { ...f.metadata } };
  } finally {
    f.close();
  }
}

/** numel of one of our student params (without the prefix) under `arch`. */
function expectedNumel(a: VitExportArch, ours: string): number {
  const D = a.dim;
  const H = Math.round(D * a.mlpRatio);
  const N = (a.img / a.patch) ** 2;
  if (ours === 'pos_embed') return (1 + N) * D;
  if (ours === 'patch_embed.proj.weight') return D * a.chans * a.patch * a.patch;
  if (ours.endsWith('attn.qkv.weight')) return 3 * D * D;
  if (ours.endsWith('attn.proj.weight')) return D * D;
  if (ours.endsWith('mlp.fc1.weight') || ours.endsWith('mlp.fc2.weight')) return H * D;
  if (ours.endsWith('mlp.fc1.bias')) return H;
  return D;
}

/**
 * Loads an export into the student params of a graph state (e.g. the eval graph). Every student param
 * of the graph under the prefix must come from the file, and the shapes must agree.
 */
export function loadStudentExport(state: GraphState, path: string, opts: { prefix?: string } = {}): StudentExport {
  const prefix = opts.prefix ?? 'encoder';
  const ex = readStudentExport(path, { prefix });
  const ours = state.cg.params.filter((p) => p.name.startsWith(`${prefix}.`) && p.name !== `${prefix}.mask_token`);
  const problems: string[] = [];
  for (const p of ours) {
    const v = ex.params.get(p.name);
    if (!v) problems.push(`${p.name} is not in the file`);
    else if (v.length !== p.numel)
      problems.push(`${p.name}: the file has ${v.length} values, the graph's [${p.shape.join(', ')}] needs ${p.numel}`);
  }
  for (const k of ex.params.keys()) if (!ours.some((p) => p.name === k)) problems.push(`${k} is not in the graph`);
  if (problems.length)
    throw new Error(
      `${path}: the export (${JSON.stringify(ex.arch)}) does not fit this model: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? '; ...' : ''}`,
    );
  state.writeParams(Object.fromEntries(ex.params));
  return ex;
}

/** The VitConfig that rebuilds an exported student (no DropPath: for evaluation). */
export function vitConfigOfExport(a: VitExportArch): VitConfig {
  return {
    img: a.img,
    patch: a.patch,
    chans: a.chans,
    dim: a.dim,
    depth: a.depth,
    heads: a.heads,
    mlpRatio: a.mlpRatio,
    layerScale: a.layerScale,
    dropPath: 0,
  };
}
