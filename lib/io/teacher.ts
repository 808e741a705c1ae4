// Loading the frozen teacher from a safetensors checkpoint.
//
// Three layouts are read, found by their marker keys under any prefix P (the usual P is shown):
//   hf      Hugging Face CLIPVisionModel / CLIPModel: P = 'vision_model.'
//           embeddings.{patch_embedding.weight, class_embedding, position_embedding.weight},
//           pre_layrnorm, encoder.layers.{i}.{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2,
//           mlp.fc1, mlp.fc2}, post_layernorm
//   openai  OpenAI CLIP / open_clip: P = 'visual.'
//           conv1.weight, class_embedding, positional_embedding, ln_pre,
//           transformer.resblocks.{i}.{ln_1, attn.in_proj_weight/in_proj_bias, attn.out_proj, ln_2,
//           mlp.c_fc, mlp.c_proj}, ln_post, proj
//   timm    timm's VisionTransformer with a class token (supervised ViT, DeiT, DINO, our student
//           export, fine-tuned classifiers): P = ''
//           patch_embed.proj.{weight, bias}, cls_token, pos_embed, [norm_pre], blocks.{i}.{norm1,
//           attn.qkv, attn.proj, [ls1.gamma], norm2, mlp.fc1, mlp.fc2, [ls2.gamma]}, norm, [fc_norm, head]
//           (lib/models/timm-teacher.ts); heads from the file's 'timm' metadata (kwargs.num_heads, as
//           our export writes it) when there is no caller's value, else 64-dim heads.
// Keys outside P (the text tower, logit_scale, projections) are ignored; keys inside P that we do not
// build (ln_post / post_layernorm, proj, position_ids) are ignored too; any other key inside P (a
// LayerScale, an attention pool, ...) is an error, since dropping it would silently change the network.
//
// The architecture comes from the tensors: width and patch from the conv weight [W, 3, p, p], the
// checkpoint's grid from the position embedding [1 + G*G, W], depth from the block indices, MLP width
// from fc1. Heads are not in the tensors: the caller's value, else a config.json / open_clip_config.json
// beside the file, else CLIP's rule (64-dim heads; ViT-H / g / bigG use 16 heads).
// Tensors (F32 / F16 / BF16 / F64) become f32 under our teacher names (lib/models/clip.ts: OpenAI names
// prefixed `teacher.`; HF q/k/v are stacked into in_proj_* in that order). When the configured image
// size gives another grid than the checkpoint's, the patch rows of the position embedding are resized
// with PyTorch's bicubic (F.interpolate mode='bicubic', align_corners=False, A = -0.75, edge indices
// clamped), the CLS row kept: what open_clip's resize_pos_embed and HF's interpolate_pos_encoding do.
//
// The teacher's input normalisation (the mean/std it was trained with) is read where its publishers
// store it: timm: the file's 'timm' metadata ({"pretrained_cfg": {"mean", "std"}}, as our export
// writes it), else timm's hub config.json beside the file (pretrained_cfg); Hugging Face CLIP:
// preprocessor_config.json beside the file (image_mean, image_std); open_clip: open_clip_config.json
// (preprocess_cfg), any layout: preprocessor_config.json. Without one a CLIP layout gets CLIP's, a
// timm file the student's (with a note). resolveTeacherInput turns that and --teacher-normalize into
// the teacher's input, foldInputNormalization makes the teacher compute on it (see there).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { NORMALIZATIONS, resolveNormalization, type Normalization, type Triple } from '../data/transforms.js';
import type { GraphState } from '../graph/state.js';
import { SafetensorsFile, type SafeDType } from './safetensors.js';
import { type ClipConfig, clipKeyMap, hfKeyMap } from '../models/clip.js';

export type ClipLayout = 'hf' | 'openai' | 'timm';

export interface ClipCheckpointArch {
  layout: ClipLayout;
  /** The prefix of the vision tower's keys ('vision_model.', 'visual.', ...). */
  prefix: string;
  width: number;
  layers: number;
  heads: number;
  /** Where `heads` came from. */
  headsFrom: 'caller' | 'config' | 'rule';
  patch: number;
  /** Side of the checkpoint's patch grid (position embedding rows = 1 + grid^2). */
  grid: number;
  /** The image size the checkpoint was trained at: grid * patch. */
  img: number;
  mlpHidden: number;
  /** timm layout: blocks with LayerScale, a norm_pre before the blocks (false for the CLIP layouts). */
  layerScale: boolean;
  normPre: boolean;
  /** Storage dtypes of the tensors read. */
  dtypes: SafeDType[];
}

/** A mean/std found with the checkpoint (unchecked: resolveTeacherInput checks it when it is used). */
export interface FoundNormalization {
  mean: unknown;
  std: unknown;
  /** Where: the file's metadata or a file beside it, for the log and the errors. */
  from: string;
}

export interface ClipCheckpointInfo {
  path: string;
  arch: ClipCheckpointArch;
  /** The input normalisation stored with the checkpoint, when there is one. */
  inputNorm?: FoundNormalization;
  /** Things worth one log line (a head count given against the config or the rule, ...). */
  notes: string[];
}

/** Flags of the pretrain CLI that set the teacher's architecture (named in the errors). */
const FLAG = {
  patch: '--patch-size',
  width: '--teacher-dim',
  layers: '--teacher-depth',
  heads: '--teacher-heads',
  img: '--img-size',
} as const;

/** open_clip's wide models do not follow the 64-dim head rule. */
const WIDE_CLIP_HEADS: Record<number, number> = { 1280: 16, 1408: 16, 1664: 16 };

const HF_MARKER = 'embeddings.patch_embedding.weight';
const OPENAI_MARKER = 'conv1.weight';
const TIMM_MARKER = 'patch_embed.proj.weight';
const MARKER: Record<ClipLayout, string> = { hf: HF_MARKER, openai: OPENAI_MARKER, timm: TIMM_MARKER };
const LAYOUT_NAME: Record<ClipLayout, string> = { hf: 'Hugging Face', openai: 'OpenAI/open_clip', timm: 'timm ViT' };

/** Keys inside the vision prefix that the teacher does not build (targets are taken before ln_post). */
const IGNORED: Record<ClipLayout, RegExp> = {
  hf: /^(?:post_layernorm\.(?:weight|bias)|embeddings\.position_ids)$/,
  openai: /^(?:ln_post\.(?:weight|bias)|proj)$/,
  timm: /^(?:norm\.(?:weight|bias)|fc_norm\.(?:weight|bias)|head\.(?:weight|bias))$/,
};

function shapeStr(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

function listKeys(keys: string[], n = 6): string {
  return keys.slice(0, n).join(', ') + (keys.length > n ? `, ... (${keys.length} in all)` : '');
}

/** One of our teacher params and the checkpoint tensors it is made of (stacked along dim 0). */
interface Source {
  /** Our name without the model prefix (conv1.weight, transformer.resblocks.0.attn.in_proj_weight, ...). */
  param: string;
  /** Shape at the checkpoint's grid. */
  shape: number[];
  parts: { key: string; shape: number[] }[];
}

/** Every checkpoint key the teacher needs, with the shapes the architecture implies. */
function expectedKeys(
  layout: ClipLayout,
  W: number,
  L: number,
  p: number,
  G: number,
  Hm: number,
  timm = { layerScale: false, normPre: false },
): { key: string; shape: number[] }[] {
  const out: { key: string; shape: number[] }[] = [];
  const k = (key: string, ...shape: number[]) => out.push({ key, shape });
  if (layout === 'timm') {
    k('patch_embed.proj.weight', W, 3, p, p);
    k('patch_embed.proj.bias', W);
    k('cls_token', 1, 1, W);
    k('pos_embed', 1, 1 + G * G, W);
    if (timm.normPre) {
      k('norm_pre.weight', W);
      k('norm_pre.bias', W);
    }
    for (let i = 0; i < L; i++) {
      const b = `blocks.${i}`;
      for (const n of ['norm1', 'norm2']) {
        k(`${b}.${n}.weight`, W);
        k(`${b}.${n}.bias`, W);
      }
      k(`${b}.attn.qkv.weight`, 3 * W, W);
      k(`${b}.attn.qkv.bias`, 3 * W);
      k(`${b}.attn.proj.weight`, W, W);
      k(`${b}.attn.proj.bias`, W);
      k(`${b}.mlp.fc1.weight`, Hm, W);
      k(`${b}.mlp.fc1.bias`, Hm);
      k(`${b}.mlp.fc2.weight`, W, Hm);
      k(`${b}.mlp.fc2.bias`, W);
      if (timm.layerScale) {
        k(`${b}.ls1.gamma`, W);
        k(`${b}.ls2.gamma`, W);
      }
    }
  } else if (layout === 'hf') {
    k('embeddings.patch_embedding.weight', W, 3, p, p);
    k('embeddings.class_embedding', W);
    k('embeddings.position_embedding.weight', 1 + G * G, W);
    k('pre_layrnorm.weight', W);
    k('pre_layrnorm.bias', W);
    for (let i = 0; i < L; i++) {
      const b = `encoder.layers.${i}`;
      for (const n of ['layer_norm1', 'layer_norm2']) {
        k(`${b}.${n}.weight`, W);
        k(`${b}.${n}.bias`, W);
      }
      for (const n of ['q', 'k', 'v', 'out']) {
        k(`${b}.self_attn.${n}_proj.weight`, W, W);
        k(`${b}.self_attn.${n}_proj.bias`, W);
      }
      k(`${b}.mlp.fc1.weight`, Hm, W);
      k(`${b}.mlp.fc1.bias`, Hm);
      k(`${b}.mlp.fc2.weight`, W, Hm);
      k(`${b}.mlp.fc2.bias`, W);
    }
  } else {
    k('conv1.weight', W, 3, p, p);
    k('class_embedding', W);
    k('positional_embedding', 1 + G * G, W);
    k('ln_pre.weight', W);
    k('ln_pre.bias', W);
    for (let i = 0; i < L; i++) {
      const b = `transformer.resblocks.${i}`;
      for (const n of ['ln_1', 'ln_2']) {
        k(`${b}.${n}.weight`, W);
        k(`${b}.${n}.bias`, W);
      }
      k(`${b}.attn.in_proj_weight`, 3 * W, W);
      k(`${b}.attn.in_proj_bias`, 3 * W);
      k(`${b}.attn.out_proj.weight`, W, W);
      k(`${b}.attn.out_proj.bias`, W);
      k(`${b}.mlp.c_fc.weight`, Hm, W);
      k(`${b}.mlp.c_fc.bias`, Hm);
      k(`${b}.mlp.c_proj.weight`, W, Hm);
      k(`${b}.mlp.c_proj.bias`, W);
    }
  }
  return out;
}

/** A key inside the vision prefix -> our param (and q/k/v part), through the maps of clip.ts. */
function mapKey(layout: ClipLayout, rel: string): { param: string; part?: 0 | 1 | 2 } | undefined {
  if (layout === 'timm') {
    const ls = /^(blocks\.\d+)\.ls([12])\.gamma$/.exec(rel);
    if (ls) return { param: `${ls[1]}.gamma_${ls[2]}` };
    const ok =
      /^(?:patch_embed\.proj\.(?:weight|bias)|cls_token|pos_embed|norm_pre\.(?:weight|bias)|blocks\.\d+\.(?:norm[12]\.(?:weight|bias)|attn\.(?:qkv|proj)\.(?:weight|bias)|mlp\.fc[12]\.(?:weight|bias)))$/.test(
        rel,
      );
    return ok ? { param: rel } : undefined;
  }
  if (layout === 'openai') {
    const n = clipKeyMap(`visual.${rel}`, '');
    return n ? { param: n.slice(1) } : undefined;
  }
  const m = hfKeyMap(`vision_model.${rel}`, '');
  return m ? { param: m.param.slice(1), part: m.part } : undefined;
}

/** The prefix of the vision tower, or the layout cannot be recognised. */
function detectLayout(f: SafetensorsFile): { layout: ClipLayout; prefix: string } {
  const names = f.names();
  const found: { layout: ClipLayout; prefix: string }[] = [];
  for (const n of names) {
    if (n.endsWith(HF_MARKER)) {
      const prefix = n.slice(0, n.length - HF_MARKER.length);
      if (prefix === '' || prefix.endsWith('.')) found.push({ layout: 'hf', prefix });
    } else if (n.endsWith(TIMM_MARKER)) {
      const prefix = n.slice(0, n.length - TIMM_MARKER.length);
      if (
        (prefix === '' || prefix.endsWith('.')) &&
        f.tensors.has(`${prefix}cls_token`) &&
        f.tensors.has(`${prefix}blocks.0.attn.qkv.weight`)
      )
        found.push({ layout: 'timm', prefix });
    } else if (n.endsWith(OPENAI_MARKER)) {
      const prefix = n.slice(0, n.length - OPENAI_MARKER.length);
      if ((prefix === '' || prefix.endsWith('.')) && f.tensors.has(`${prefix}class_embedding`))
        found.push({ layout: 'openai', prefix });
    }
  }
  if (found.length === 1) return found[0];
  if (found.length > 1)
    throw new Error(
      `${f.path}: holds more than one CLIP vision tower (${found.map((x) => `${x.layout} under '${x.prefix}'`).join(', ')}); save the one you want on its own`,
    );
  const resnet = names.some((n) => /(^|\.)attnpool\./.test(n))
    ? ' It looks like a ResNet CLIP (attnpool): only ViT teachers are supported.'
    : '';
  const timm = names.some((n) => /(^|\.)trunk\.blocks\./.test(n))
    ? ' It looks like an open_clip timm tower (visual.trunk.*): not supported.'
    : '';
  throw new Error(
    `${f.path}: unknown checkpoint layout: no Hugging Face CLIP vision keys (vision_model.${HF_MARKER}), no OpenAI/open_clip ` +
      `keys (visual.${OPENAI_MARKER} with visual.class_embedding) and no timm ViT keys (${TIMM_MARKER} with cls_token and blocks.0.attn.qkv.weight).${resnet}${timm} ${names.length} tensors, e.g. ${listKeys(names)}`,
  );
}

interface HeadsConfig {
  heads: number;
  width?: number;
  act?: string;
  file: string;
}

/** Head count (and activation) from a Hugging Face config.json or an open_clip_config.json beside the file. */
function readHeadsConfig(path: string, layout: ClipLayout, notes: string[]): HeadsConfig | undefined {
  const dir = dirname(path);
  for (const name of layout === 'hf' ? ['config.json'] : ['open_clip_config.json', 'config.json']) {
    const file = join(dir, name);
    if (!existsSync(file)) continue;
    let j: Record<string, unknown>;
    try {
      j = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      notes.push(`${file} is not valid JSON (${(err as Error).message}); not used for the head count`);
      continue;
    }
    const obj = (v: unknown) => (v && typeof v === 'object' ? (v as Record<string, unknown>) : undefined);
    if (layout === 'hf') {
      const v = obj(j.vision_config) ?? (j.model_type === 'clip_vision_model' ? j : undefined);
      if (v && typeof v.num_attention_heads === 'number')
        return {
          heads: v.num_attention_heads,
          width: typeof v.hidden_size === 'number' ? v.hidden_size : undefined,
          act: typeof v.hidden_act === 'string' ? v.hidden_act : undefined,
          file,
        };
    } else {
      // open_clip model config: {model_cfg: {vision_cfg: {width, head_width = 64, ...}, quick_gelu = false}}
      const mc = obj(j.model_cfg) ?? j;
      const v = obj(mc.vision_cfg);
      if (v && typeof v.width === 'number') {
        const hw = typeof v.head_width === 'number' ? v.head_width : 64;
        return { heads: v.width / hw, width: v.width, act: mc.quick_gelu === true ? 'quick_gelu' : 'gelu', file };
      }
    }
  }
  return undefined;
}

/** timm layout: the head count from the file's 'timm' metadata ({kwargs: {num_heads, embed_dim}}), as our export writes it. */
function readTimmHeads(f: SafetensorsFile, notes: string[]): HeadsConfig | undefined {
  const raw = f.metadata.timm;
  if (!raw) return undefined;
  try {
    const kw = (JSON.parse(raw) as { kwargs?: Record<string, unknown> }).kwargs ?? {};
    if (typeof kw.num_heads !== 'number') return undefined;
    return {
      heads: kw.num_heads,
      width: typeof kw.embed_dim === 'number' ? kw.embed_dim : undefined,
      file: `${f.path} ('timm' metadata)`,
    };
  } catch (err) {
    notes.push(
      `the 'timm' metadata of ${f.path} is not valid JSON (${(err as Error).message}); not used for the head count`,
    );
    return undefined;
  }
}

// ------------------------------------------------------------------------------ input normalisation

type Json = Record<string, unknown>;
const asObj = (v: unknown): Json | undefined =>
  v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined;

/** A JSON file beside the checkpoint, or undefined (absent; unreadable JSON is noted). */
function besideJson(path: string, name: string, notes: string[]): Json | undefined {
  const file = join(dirname(path), name);
  if (!existsSync(file)) return undefined;
  try {
    return asObj(JSON.parse(readFileSync(file, 'utf8')));
  } catch (err) {
    notes.push(`${file} is not valid JSON (${(err as Error).message}); not used for the input normalisation`);
    return undefined;
  }
}

/** mean/std of an object (timm's and open_clip's key names, or HF's image_mean / image_std), when it has either. */
function meanStd(o: Json | undefined, keys: [string, string], from: string): FoundNormalization | undefined {
  if (!o || (o[keys[0]] === undefined && o[keys[1]] === undefined)) return undefined;
  return { mean: o[keys[0]], std: o[keys[1]], from };
}

/** The input normalisation published with the checkpoint (the places listed at the top of this file). */
function readInputNorm(f: SafetensorsFile, layout: ClipLayout, notes: string[]): FoundNormalization | undefined {
  const path = f.path;
  const beside = (name: string) => join(dirname(path), name);
  const hfPre = () =>
    meanStd(
      besideJson(path, 'preprocessor_config.json', notes),
      ['image_mean', 'image_std'],
      beside('preprocessor_config.json'),
    );
  if (layout === 'timm') {
    let meta: Json | undefined;
    try {
      meta = f.metadata.timm ? asObj(JSON.parse(f.metadata.timm)) : undefined;
    } catch {
      meta = undefined; // readTimmHeads has noted it
    }
    return (
      meanStd(asObj(meta?.pretrained_cfg), ['mean', 'std'], `${path} ('timm' metadata)`) ??
      meanStd(asObj(besideJson(path, 'config.json', notes)?.pretrained_cfg), ['mean', 'std'], beside('config.json')) ??
      hfPre()
    );
  }
  if (layout === 'openai') {
    const oc = besideJson(path, 'open_clip_config.json', notes);
    const found = meanStd(asObj(oc?.preprocess_cfg), ['mean', 'std'], beside('open_clip_config.json'));
    if (found) return found;
  }
  return hfPre();
}

/** What the teacher's input is normalised with, and why. */
export interface TeacherInput {
  norm: Normalization;
  /** The student's normalisation, which the images come in. */
  student: Normalization;
  /** Where it came from, for the start line. */
  source: string;
  /** The student's normalisation: the teacher sees the student's pixels as they are (nothing is folded). */
  same: boolean;
  notes: string[];
}

/** The flag that sets the teacher's input normalisation (named in the messages). */
export const TEACHER_NORMALIZE_FLAG = '--teacher-normalize';

/** A normalisation by its name when it is one of the named sets, else 'm1,m2,m3/s1,s2,s3'. */
export function normalizationName(n: Normalization): string {
  for (const [name, v] of Object.entries(NORMALIZATIONS)) if (sameNormalization(n, v)) return name;
  return `${n.mean.join(',')}/${n.std.join(',')}`;
}

function sameNormalization(a: Normalization, b: { mean: readonly number[]; std: readonly number[] }): boolean {
  return a.mean.every((m, c) => m === b.mean[c]) && a.std.every((s, c) => s === b.std[c]);
}

/**
 * The teacher's input normalisation. `setting` is --teacher-normalize: 'auto' (the default) takes the
 * checkpoint's (inputNorm), else CLIP's for a CLIP layout, else (a timm file without one, or the
 * random teacher) the student's; 'student' the student's; a name or 'm1,m2,m3/s1,s2,s3' that one.
 * `student`: the student's normalisation and its --normalize setting (for the messages).
 */
export function resolveTeacherInput(
  info: ClipCheckpointInfo | null,
  setting: string,
  student: { setting: string; norm: Normalization },
): TeacherInput {
  const make = (norm: Normalization, source: string, notes: string[] = []): TeacherInput => ({
    norm,
    student: student.norm,
    source,
    same: sameNormalization(norm, student.norm),
    notes,
  });
  const studentSrc = `the student's (--normalize ${student.setting})`;
  if (setting === 'student') return make(student.norm, `${TEACHER_NORMALIZE_FLAG} student: ${studentSrc}`);
  if (setting !== 'auto') {
    try {
      return make(resolveNormalization(setting), `${TEACHER_NORMALIZE_FLAG} ${setting}`);
    } catch (err) {
      throw new Error(
        `${TEACHER_NORMALIZE_FLAG}: expected auto, student, imagenet, clip or 'm1,m2,m3/s1,s2,s3', got ${JSON.stringify(setting)} (${(err as Error).message})`,
        { cause: err },
      );
    }
  }
  if (!info) return make(student.norm, `${studentSrc}, as the random teacher has no normalisation of its own`);
  const found = info.inputNorm;
  if (found) {
    try {
      const norm = resolveNormalization({ mean: found.mean as Triple, std: found.std as Triple });
      return make(norm, found.from);
    } catch (err) {
      throw new Error(
        `${found.from}: the input normalisation is not usable: expected mean and std of 3 numbers each (std > 0), found mean ${JSON.stringify(found.mean ?? null)}, std ${JSON.stringify(found.std ?? null)}; correct it or set ${TEACHER_NORMALIZE_FLAG}`,
        { cause: err },
      );
    }
  }
  if (info.arch.layout !== 'timm') {
    const beside =
      info.arch.layout === 'hf' ? 'preprocessor_config.json' : 'open_clip_config.json or preprocessor_config.json';
    return make(
      resolveNormalization('clip'),
      `CLIP's, the default of a ${LAYOUT_NAME[info.arch.layout]} checkpoint (no ${beside} beside the file)`,
    );
  }
  return make(student.norm, studentSrc, [
    `${info.path} names no input normalisation (no pretrained_cfg mean/std in its 'timm' metadata, no config.json or preprocessor_config.json beside it): the teacher gets the student's (--normalize ${student.setting}); set ${TEACHER_NORMALIZE_FLAG} to the one it was trained with`,
  ]);
}

/** One line for the log: the teacher's input normalisation, where it came from, and what is done with it. */
export function describeTeacherInput(t: TeacherInput, studentSetting: string): string {
  const what = `teacher input: ${normalizationName(t.norm)} from ${t.source}`;
  return t.same
    ? `${what}: the student's pixels as they are`
    : `${what}; the student's (--normalize ${studentSetting}) renormalised to it in the teacher's patch embedding`;
}

/**
 * Makes the teacher compute on its own normalisation: images come normalised with `from` (the
 * student's), the teacher must see x' = a x + b per channel, a = s_from / s_to, b = (m_from - m_to) /
 * s_to (renormalize, lib/data/transforms.ts). The patch embedding is linear and each output sees
 * whole patches (stride = kernel = patch, no padding), so conv_W(a x + b) = conv_W'(x) + k with
 * W'[o, c] = a_c W[o, c] and k[o] = sum_c b_c sum_ij W[o, c, i, j]: the weights are scaled per input
 * channel and k joins the conv bias (timm) or, where the conv has none (CLIP), the patch rows of the
 * position embedding (the class token does not pass through the conv). The same teacher, exact up to
 * float rounding, at no cost per step; the frozen weights in memory are the folded ones (checkpoints
 * hold the trainable params only, so nothing folded is saved). `get`: our param name -> its values,
 * written in place.
 */
export function foldInputNormalization(
  get: (name: string) => Float32Array | undefined,
  width: number,
  from: Normalization,
  to: Normalization,
  name = 'teacher',
): void {
  const clipW = get(`${name}.conv1.weight`);
  const w = clipW ?? get(`${name}.patch_embed.proj.weight`);
  const shift = clipW ? get(`${name}.positional_embedding`) : get(`${name}.patch_embed.proj.bias`);
  if (!w || !shift)
    throw new Error(`foldInputNormalization: the teacher '${name}' has no patch embedding (conv1 or patch_embed.proj)`);
  const per = w.length / (3 * width); // p * p values per output and input channel
  if (!Number.isInteger(per) || per < 1 || shift.length % width)
    throw new Error(`foldInputNormalization: the patch embedding has ${w.length} values, not [${width}, 3, p, p]`);
  const a = [0, 1, 2].map((c) => from.std[c] / to.std[c]);
  const b = [0, 1, 2].map((c) => (from.mean[c] - to.mean[c]) / to.std[c]);
  const k = new Float64Array(width);
  for (let o = 0; o < width; o++)
    for (let c = 0; c < 3; c++) {
      const base = (o * 3 + c) * per;
      let sum = 0;
      for (let i = 0; i < per; i++) {
        sum += w[base + i];
        w[base + i] *= a[c];
      }
      k[o] += b[c] * sum;
    }
  // timm: the conv bias [W]; CLIP: every patch row of the position embedding [1 + N, W], row 0 (CLS) kept
  for (let r = clipW ? 1 : 0; r < shift.length / width; r++)
    for (let o = 0; o < width; o++) shift[r * width + o] += k[o];
}

/** foldInputNormalization on the teacher params of a compiled graph's frozen tensor (after they are loaded or initialised). */
export function renormalizeTeacherInput(
  state: GraphState,
  width: number,
  from: Normalization,
  to: Normalization,
  name = 'teacher',
): void {
  const frozen = state.get('frozen');
  const flat = frozen.read() as Float32Array;
  const byName = new Map(state.cg.params.filter((p) => p.group === 'frozen').map((p) => [p.name, p]));
  foldInputNormalization(
    (n) => {
      const p = byName.get(n);
      return p ? flat.subarray(p.offset, p.offset + p.numel) : undefined;
    },
    width,
    from,
    to,
    name,
  );
  frozen.write(flat);
}

interface Inspected extends ClipCheckpointInfo {
  sources: Source[];
}

function inspect(f: SafetensorsFile, opts: { heads?: number }): Inspected {
  const path = f.path;
  const notes: string[] = [];
  const { layout, prefix } = detectLayout(f);
  const rel = (k: string) => `${prefix}${k}`;
  const info = (k: string) => f.tensors.get(rel(k));

  // Width and patch from the conv, grid from the position embedding.
  const conv = info(MARKER[layout])!;
  const cs = conv.shape;
  if (cs.length !== 4 || cs[1] !== 3 || cs[2] !== cs[3] || cs[2] < 1)
    throw new Error(
      `${path}: ${conv.name} has shape ${shapeStr(cs)}; a CLIP ViT patch embedding is [width, 3, patch, patch]`,
    );
  const W = cs[0];
  const p = cs[2];
  const posKey =
    layout === 'hf' ? 'embeddings.position_embedding.weight' : layout === 'timm' ? 'pos_embed' : 'positional_embedding';
  const pos = info(posKey);
  if (!pos) throw new Error(`${path}: a teacher file with missing keys: ${rel(posKey)}`);
  // timm keeps a leading batch dim of 1: [1, 1 + G*G, W].
  const ps = layout === 'timm' && pos.shape.length === 3 && pos.shape[0] === 1 ? pos.shape.slice(1) : pos.shape;
  const G = Math.round(Math.sqrt(ps[0] - 1));
  if (ps.length !== 2 || ps[1] !== W || G < 1 || 1 + G * G !== ps[0])
    throw new Error(
      `${path}: ${pos.name} has shape ${shapeStr(pos.shape)}; with width ${W} (from ${conv.name}) it must be ${layout === 'timm' ? '[1, ' : '['}1 + grid*grid, ${W}] (a class token and a square grid)`,
    );

  // Depth from the block indices; every key inside the prefix must be one we map or ignore.
  const blockRe =
    layout === 'hf'
      ? /^encoder\.layers\.(\d+)\./
      : layout === 'timm'
        ? /^blocks\.(\d+)\./
        : /^transformer\.resblocks\.(\d+)\./;
  let L = 0;
  const unknown: string[] = [];
  for (const n of f.names()) {
    if (!n.startsWith(prefix)) continue;
    const r = n.slice(prefix.length);
    const m = blockRe.exec(r);
    if (m) L = Math.max(L, Number(m[1]) + 1);
    if (!mapKey(layout, r) && !IGNORED[layout].test(r)) unknown.push(n);
  }
  if (unknown.length)
    throw new Error(
      `${path}: the ${LAYOUT_NAME[layout]} vision tower has keys this teacher does not implement: ${listKeys(unknown)}`,
    );
  if (L === 0)
    throw new Error(
      `${path}: a teacher file with missing keys: no transformer blocks (${rel(layout === 'hf' ? 'encoder.layers.0.*' : layout === 'timm' ? 'blocks.0.*' : 'transformer.resblocks.0.*')})`,
    );
  const fc1 = info(
    layout === 'hf'
      ? 'encoder.layers.0.mlp.fc1.weight'
      : layout === 'timm'
        ? 'blocks.0.mlp.fc1.weight'
        : 'transformer.resblocks.0.mlp.c_fc.weight',
  );
  const Hm = fc1 && fc1.shape.length === 2 ? fc1.shape[0] : 4 * W;
  const timm = {
    layerScale: layout === 'timm' && !!info('blocks.0.ls1.gamma'),
    normPre: layout === 'timm' && !!info('norm_pre.weight'),
  };

  // Every expected key present, with its shape.
  const want = expectedKeys(layout, W, L, p, G, Hm, timm);
  const missing = want.filter((w) => !info(w.key)).map((w) => rel(w.key));
  if (missing.length)
    throw new Error(`${path}: a teacher file with missing keys (${missing.length}): ${listKeys(missing, 8)}`);
  const arch = `width ${W}, ${L} layers, patch ${p}, grid ${G}, mlp ${Hm}`;
  const bad = want.filter((w) => shapeStr(info(w.key)!.shape) !== shapeStr(w.shape));
  if (bad.length)
    throw new Error(
      `${path}: tensor shapes disagree with the architecture inferred from the file (${arch}): ` +
        bad
          .slice(0, 4)
          .map((w) => `${rel(w.key)} is ${shapeStr(info(w.key)!.shape)}, expected ${shapeStr(w.shape)}`)
          .join('; ') +
        (bad.length > 4 ? `; ... (${bad.length} in all)` : ''),
    );
  const dtypes = [...new Set(want.map((w) => info(w.key)!.dtype))];
  for (const d of dtypes)
    if (!['F32', 'F16', 'BF16', 'F64'].includes(d))
      throw new Error(`${path}: the vision tower holds ${d} tensors; expected float tensors (F32, F16, BF16)`);

  // Group the keys into our params (HF q, k, v -> in_proj in that order).
  const byParam = new Map<string, Source>();
  for (const w of want) {
    const m = mapKey(layout, w.key)!;
    let s = byParam.get(m.param);
    if (!s) byParam.set(m.param, (s = { param: m.param, shape: [], parts: [] }));
    s.parts[m.part ?? 0] = { key: rel(w.key), shape: w.shape };
  }
  const sources = [...byParam.values()];
  for (const s of sources)
    s.shape =
      s.parts.length === 1
        ? s.parts[0].shape
        : [s.parts.reduce((a, q) => a + q.shape[0], 0), ...s.parts[0].shape.slice(1)];

  // Heads: the caller, else a config file, else the rule.
  const cfg = layout === 'timm' ? readTimmHeads(f, notes) : readHeadsConfig(path, layout, notes);
  if (cfg?.width !== undefined && cfg.width !== W)
    throw new Error(
      `${path}: ${cfg.file} describes width ${cfg.width}, the file holds width ${W}: the config belongs to another model`,
    );
  if (cfg?.act && cfg.act !== 'quick_gelu')
    throw new Error(
      `${path}: ${cfg.file} says the MLP activation is '${cfg.act}'; this teacher implements CLIP's QuickGELU only`,
    );
  const rule = (layout === 'timm' ? undefined : WIDE_CLIP_HEADS[W]) ?? (W % 64 === 0 ? W / 64 : undefined);
  let heads: number;
  let headsFrom: ClipCheckpointArch['headsFrom'];
  if (opts.heads !== undefined) {
    heads = opts.heads;
    headsFrom = 'caller';
    if (cfg && cfg.heads !== heads)
      throw new Error(
        `${path}: ${cfg.file} gives ${cfg.heads} attention heads, the teacher is configured with ${heads}: set ${FLAG.heads} ${cfg.heads}`,
      );
    if (!cfg && rule !== undefined && rule !== heads)
      notes.push(
        `${heads} teacher heads as configured, although CLIP's rule gives ${rule} for width ${W} (${W / rule}-dim heads)`,
      );
  } else if (cfg) {
    heads = cfg.heads;
    headsFrom = 'config';
  } else if (rule !== undefined) {
    heads = rule;
    headsFrom = 'rule';
  } else {
    throw new Error(
      `${path}: cannot infer the attention heads of width ${W} (the rule is 64-dim heads; ${W} is not a multiple of 64) and no ${layout === 'timm' ? "'timm' metadata in the file" : 'config.json beside the file'}: pass ${FLAG.heads}`,
    );
  }
  if (!Number.isInteger(heads) || heads < 1 || W % heads)
    throw new Error(
      `${path}: ${heads} attention heads do not divide the width ${W}: set ${FLAG.heads} to a divisor of ${W}`,
    );
  const inputNorm = readInputNorm(f, layout, notes);

  return {
    path,
    arch: {
      layout,
      prefix,
      width: W,
      layers: L,
      heads,
      headsFrom,
      patch: p,
      grid: G,
      img: G * p,
      mlpHidden: Hm,
      ...timm,
      dtypes,
    },
    notes,
    sources,
    ...(inputNorm ? { inputNorm } : {}),
  };
}

/**
 * Reads only the header: the layout and architecture of a CLIP checkpoint, every needed key present
 * with its shape. `heads`: the caller's head count (else a config file beside it, else the rule).
 */
export function inspectClipCheckpoint(path: string, opts: { heads?: number } = {}): ClipCheckpointInfo {
  const f = openTeacherFile(path);
  try {
    const { sources: _, ...info } = inspect(f, opts);
    return info;
  } finally {
    f.close();
  }
}

function openTeacherFile(path: string): SafetensorsFile {
  if (!existsSync(path)) throw new Error(`teacher checkpoint ${path}: no such file`);
  try {
    return new SafetensorsFile(path);
  } catch (err) {
    const msg = (err as Error).message;
    const hint = /\.(bin|pt|pth|ckpt)$/.test(path)
      ? ' (a PyTorch pickle: convert it to safetensors first, see docs/TEACHER.md)'
      : '';
    throw new Error(`teacher checkpoint ${msg}${hint}`, { cause: err });
  }
}

/** The teacher config (for ClipVisionTower) that a checkpoint implies at image size `img`. */
export function teacherConfigFromArch(arch: ClipCheckpointArch, img: number): ClipConfig {
  return {
    img,
    patch: arch.patch,
    width: arch.width,
    layers: arch.layers,
    heads: arch.heads,
    mlpRatio: arch.mlpHidden / arch.width,
  };
}

/** One line for the log: where the teacher came from and what it is. */
export function describeClipCheckpoint(info: ClipCheckpointInfo, img?: number): string {
  const a = info.arch;
  const grid =
    img !== undefined && img / a.patch !== a.grid ? `, position grid ${a.grid} -> ${img / a.patch} (bicubic)` : '';
  const lay =
    LAYOUT_NAME[a.layout] +
    (a.layout === 'timm' ? `${a.layerScale ? ', LayerScale' : ''}${a.normPre ? ', norm_pre' : ''}` : '');
  return `teacher: ${info.path} (${lay} layout, ${a.dtypes.join('/')}): width ${a.width}, ${a.layers} layers, ${a.heads} heads (${a.headsFrom}), patch ${a.patch}, trained at ${a.img}px${grid}`;
}

/** The config checks: the configured teacher must be the checkpoint's network; errors name the flag. */
function checkConfig(info: Inspected, cfg: ClipConfig): void {
  const a = info.arch;
  const path = info.path;
  if (cfg.patch !== a.patch)
    throw new Error(
      `${path}: the checkpoint's patch size is ${a.patch} (${a.prefix}${MARKER[a.layout]}), the teacher is configured with ${cfg.patch}: set ${FLAG.patch} ${a.patch}`,
    );
  if (cfg.width !== a.width)
    throw new Error(
      `${path}: the checkpoint's width is ${a.width}, the teacher is configured with ${cfg.width}: set ${FLAG.width} ${a.width}`,
    );
  if (cfg.layers !== a.layers)
    throw new Error(
      `${path}: the checkpoint has ${a.layers} layers, the teacher is configured with ${cfg.layers}: set ${FLAG.layers} ${a.layers}`,
    );
  const hidden = Math.round(cfg.width * (cfg.mlpRatio ?? 4));
  if (hidden !== a.mlpHidden)
    throw new Error(
      `${path}: the checkpoint's MLP width is ${a.mlpHidden}, the teacher is built with ${hidden} (mlpRatio ${cfg.mlpRatio ?? 4}): set the teacher's mlpRatio to ${a.mlpHidden / a.width}`,
    );
  if (cfg.img % cfg.patch)
    throw new Error(
      `${path}: image size ${cfg.img} is not a multiple of the patch size ${cfg.patch}: change ${FLAG.img}`,
    );
}

/**
 * Reads the teacher's weights as f32 under our names (`<name>.<openai name>`), the position embedding
 * resized to cfg.img's grid. `cfg.heads` is taken as the caller's head count.
 */
export function readClipTeacher(
  path: string,
  cfg: ClipConfig,
  opts: { name?: string } = {},
): { info: ClipCheckpointInfo; params: Map<string, Float32Array> } {
  const name = opts.name ?? 'teacher';
  const f = openTeacherFile(path);
  try {
    const ins = inspect(f, { heads: cfg.heads });
    checkConfig(ins, cfg);
    const params = new Map<string, Float32Array>();
    for (const s of ins.sources) {
      let v: Float32Array;
      if (s.parts.length === 1) v = f.readF32(s.parts[0].key);
      else {
        v = new Float32Array(s.shape.reduce((a, b) => a * b, 1));
        let off = 0;
        for (const q of s.parts) {
          const part = f.readF32(q.key);
          v.set(part, off);
          off += part.length;
        }
      }
      if (s.param === 'positional_embedding' || s.param === 'pos_embed')
        v = resizePosEmbed(v, ins.arch.grid, cfg.img / cfg.patch, ins.arch.width);
      params.set(`${name}.${s.param}`, v);
    }
    const { sources: _, ...info } = ins;
    return { info, params };
  } finally {
    f.close();
  }
}

/**
 * Writes the teacher's frozen params of a compiled graph from a checkpoint. Every frozen param named
 * `<name>.*` must be filled (and nothing else is touched). Returns what was loaded (for the log line).
 */
export function loadClipTeacher(
  state: GraphState,
  path: string,
  cfg: ClipConfig,
  opts: { name?: string } = {},
): ClipCheckpointInfo {
  const name = opts.name ?? 'teacher';
  const { info, params } = readClipTeacher(path, cfg, { name });
  const ours = state.cg.params.filter((p) => p.name.startsWith(`${name}.`));
  const notInGraph = [...params.keys()].filter((k) => !ours.some((p) => p.name === k));
  const notInFile = ours.filter((p) => !params.has(p.name)).map((p) => p.name);
  if (notInGraph.length || notInFile.length)
    throw new Error(
      `${path}: the teacher graph and the checkpoint differ: ${notInFile.length ? `the graph's ${listKeys(notInFile, 4)} not loaded` : ''}${notInGraph.length ? ` the file's ${listKeys(notInGraph, 4)} not in the graph` : ''}`,
    );
  const frozen = state.get('frozen');
  const flat = frozen.read() as Float32Array;
  for (const p of ours) {
    if (p.group !== 'frozen')
      throw new Error(`loadClipTeacher: '${p.name}' is a trainable param; the teacher must be frozen`);
    const v = params.get(p.name)!;
    if (v.length !== p.numel)
      throw new Error(`${path}: '${p.name}' has ${v.length} values, the graph's ${shapeStr(p.shape)} needs ${p.numel}`);
    flat.set(v, p.offset);
  }
  frozen.write(flat);
  return info;
}

// ------------------------------------------------------------------------------ bicubic resize

/** PyTorch's cubic convolution weights for fractional offset t (upsample_bicubic2d, A = -0.75). */
function cubicWeights(t: number, A = -0.75): [number, number, number, number] {
  const c1 = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1; // |x| <= 1
  const c2 = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; // 1 < |x| < 2
  return [c2(t + 1), c1(t), c1(1 - t), c2(2 - t)];
}

/**
 * 1-D bicubic resampling taps from `n` to `m` samples, align_corners=False with `size` given:
 * source x = (i + 0.5) * n / m - 0.5 (not clamped below 0 for cubic), taps at floor(x) - 1 .. + 2
 * clamped into [0, n - 1].
 */
function cubicTaps(n: number, m: number): { idx: Int32Array; w: Float64Array } {
  const idx = new Int32Array(4 * m);
  const w = new Float64Array(4 * m);
  const scale = n / m;
  for (let i = 0; i < m; i++) {
    const x = scale * (i + 0.5) - 0.5;
    const x0 = Math.floor(x);
    const ws = cubicWeights(x - x0);
    for (let k = 0; k < 4; k++) {
      idx[4 * i + k] = Math.min(Math.max(x0 - 1 + k, 0), n - 1);
      w[4 * i + k] = ws[k];
    }
  }
  return { idx, w };
}

/**
 * Position embedding [1 + g0*g0, W] -> [1 + g1*g1, W]: the CLS row kept, the g0 x g0 patch grid
 * resized bicubically (separable, in float64) to g1 x g1. Returns the input when g0 = g1.
 */
export function resizePosEmbed(pos: Float32Array, g0: number, g1: number, W: number): Float32Array {
  if (pos.length !== (1 + g0 * g0) * W)
    throw new Error(`resizePosEmbed: ${pos.length} values are not [1 + ${g0}^2, ${W}]`);
  if (g0 === g1) return pos;
  const t = cubicTaps(g0, g1);
  // rows first: [g0, g0, W] -> [g1, g0, W]
  const tmp = new Float64Array(g1 * g0 * W);
  for (let y = 0; y < g1; y++)
    for (let k = 0; k < 4; k++) {
      const src = 1 + t.idx[4 * y + k] * g0;
      const wk = t.w[4 * y + k];
      for (let x = 0; x < g0; x++) {
        const s = (src + x) * W;
        const d = (y * g0 + x) * W;
        for (let c = 0; c < W; c++) tmp[d + c] += wk * pos[s + c];
      }
    }
  // then columns: [g1, g0, W] -> [g1, g1, W]
  const out = new Float32Array((1 + g1 * g1) * W);
  out.set(pos.subarray(0, W));
  const acc = new Float64Array(W);
  for (let y = 0; y < g1; y++)
    for (let x = 0; x < g1; x++) {
      acc.fill(0);
      for (let k = 0; k < 4; k++) {
        const s = (y * g0 + t.idx[4 * x + k]) * W;
        const wk = t.w[4 * x + k];
        for (let c = 0; c < W; c++) acc[c] += wk * tmp[s + c];
      }
      out.set(acc, (1 + y * g1 + x) * W);
    }
  return out;
}

/**
 * How a checkpoint's network summarises an image, for the CLS target: 'avg' for a timm classifier
 * with global_pool 'avg' (its 'timm' metadata says so, or it has fc_norm and no norm: timm's layout for
 * it), whose CLS token is never read by its head and so carries little; 'cls' for everything else
 * (CLIP pools by its CLS token; timm's global_pool 'token').
 */
export function checkpointPool(path: string): { pool: 'cls' | 'avg'; why: string } {
  const f = openTeacherFile(path);
  try {
    const kwargs = timmKwargsOf(f);
    if (kwargs && typeof kwargs.global_pool === 'string')
      return kwargs.global_pool === 'avg'
        ? { pool: 'avg', why: "its 'timm' metadata says global_pool 'avg'" }
        : { pool: 'cls', why: `its 'timm' metadata says global_pool '${kwargs.global_pool}'` };
    const { layout, prefix } = detectLayout(f);
    if (layout === 'timm' && f.tensors.has(`${prefix}fc_norm.weight`) && !f.tensors.has(`${prefix}norm.weight`))
      return { pool: 'avg', why: 'it has fc_norm and no norm (timm global_pool avg)' };
    return {
      pool: 'cls',
      why: layout === 'timm' ? 'it has a final norm (timm global_pool token)' : 'CLIP pools by CLS',
    };
  } finally {
    f.close();
  }
}

function timmKwargsOf(f: SafetensorsFile): Record<string, unknown> | null {
  try {
    const raw = f.metadata.timm;
    return raw ? ((JSON.parse(raw) as { kwargs?: Record<string, unknown> }).kwargs ?? null) : null;
  } catch {
    return null; // unreadable metadata: the layout decides (readTimmHeads notes the bad JSON)
  }
}
