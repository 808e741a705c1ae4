// The teacher: a CLIP image encoder (OpenAI ViT layout), frozen, forward only.
//   conv patch embed (no bias) -> prepend class embedding -> + positional embedding -> ln_pre ->
//   residual blocks (LN -> MHA with qkv bias -> +; LN -> Linear -> QuickGELU -> Linear -> +)
// Output: the last block's tokens [B, 1+N, Dt], BEFORE ln_post and proj (which are not built).
// Params live in the 'frozen' group (no gradients, no optimizer) under OpenAI names prefixed by
// `teacher.` (visual.conv1.weight -> teacher.conv1.weight); see clipKeyMap for checkpoint names and
// lib/io/teacher.ts (loadClipTeacher) for reading HF / OpenAI checkpoints into them.
// Without a checkpoint the init specs give a seeded random teacher of the same architecture.
import { type Graph, type Value, add, attentionProbs, concatRows, linear, patchify } from '../graph/index.js';
import { Block, LayerNorm, normal, uniform } from '../nn/index.js';

export interface ClipConfig {
  img: number;
  patch: number;
  width: number;
  layers: number;
  heads: number;
  mlpRatio?: number;
}

export const clipPresets = {
  'ViT-B/16': { patch: 16, width: 768, layers: 12, heads: 12 },
  'ViT-L/14': { patch: 14, width: 1024, layers: 24, heads: 16 },
} as const;

/** What the MEDiC graph needs of a teacher (CLIP here, timm's layout in timm-teacher.ts). */
export interface TeacherTower {
  readonly cfg: { width: number; heads: number; layers: number; patch: number; img: number };
  readonly numPatches: number;
  forward(img: Value): Value;
  forwardTaps(img: Value, opts?: { layer?: number; probs?: boolean }): { tokens: Value; probs: Value | null };
}

export class ClipVisionTower implements TeacherTower {
  readonly conv1: Value;
  readonly classEmbedding: Value;
  readonly positionalEmbedding: Value;
  readonly lnPre: LayerNorm;
  readonly blocks: Block[];
  readonly numPatches: number;

  constructor(
    readonly g: Graph,
    readonly cfg: ClipConfig,
    readonly name = 'teacher',
  ) {
    const { img, patch, width } = cfg;
    if (img % patch) throw new Error(`clip: image ${img} is not divisible by patch ${patch}`);
    this.numPatches = (img / patch) ** 2;
    const group = 'frozen';
    // Without a checkpoint the teacher is initialised as OpenAI CLIP's code initialises its ViT:
    // class/positional embeddings width^-0.5 * randn, conv1 and the linears at PyTorch's defaults
    // (U(+-1/sqrt(fan_in)), biases too; nn.MultiheadAttention: xavier-uniform in_proj, zero biases).
    // Unlike BEiT's 0.02 init, this gives residual branches of unit scale, so a random teacher mixes
    // information across tokens (its CLS token depends on the image), which a useful target needs.
    const scale = width ** -0.5;
    const hidden = Math.round(width * (cfg.mlpRatio ?? 4));
    this.conv1 = g.param(`${name}.conv1.weight`, [width, 3, patch, patch], uniform(1 / Math.sqrt(3 * patch * patch)), {
      group,
    });
    this.classEmbedding = g.param(`${name}.class_embedding`, [width], normal(scale), { group });
    this.positionalEmbedding = g.param(`${name}.positional_embedding`, [1 + this.numPatches, width], normal(scale), {
      group,
    });
    this.lnPre = new LayerNorm(g, `${name}.ln_pre`, width, { eps: 1e-5, group });
    this.blocks = Array.from(
      { length: cfg.layers },
      (_, i) =>
        new Block(g, `${name}.transformer.resblocks.${i}`, {
          dim: width,
          heads: cfg.heads,
          mlpRatio: cfg.mlpRatio,
          qkvBias: 'full',
          layerScale: null,
          dropPath: 0,
          layerId: null,
          act: 'quick_gelu',
          eps: 1e-5,
          group,
          naming: 'openai',
          init: {
            qkv: uniform(Math.sqrt(6 / (width + 3 * width))),
            proj: uniform(1 / Math.sqrt(width)),
            fc1: uniform(1 / Math.sqrt(width)),
            fc1Bias: uniform(1 / Math.sqrt(width)),
            fc2: uniform(1 / Math.sqrt(hidden)),
            fc2Bias: uniform(1 / Math.sqrt(hidden)),
          },
        }),
    );
  }

  /** img [B, 3, S, S] -> [B, 1+N, Dt]; emitted with gradients off. */
  forward(img: Value): Value {
    return this.forwardTaps(img).tokens;
  }

  /**
   * The output of block `layer` (1-based; default: the last) and, with probs, that block's
   * head-averaged attention map without the CLS row and column [B, N, N] (op attention_probs, from
   * the block's own qkv: the forward is not run twice). Blocks after `layer` are not run.
   */
  forwardTaps(img: Value, opts: { layer?: number; probs?: boolean } = {}): { tokens: Value; probs: Value | null } {
    const g = this.g;
    const layer = opts.layer ?? this.blocks.length;
    if (!Number.isInteger(layer) || layer < 1 || layer > this.blocks.length)
      throw new Error(
        `clip: layer ${layer} is not a block of this ${this.blocks.length}-block teacher (1..${this.blocks.length})`,
      );
    return g.noGrad(() => {
      const D = this.cfg.width;
      const x = patchify(g, img, this.cfg.patch, 1, 'teacher.patches');
      const w = g.view(this.conv1, [D, x.shape[2]]);
      const e = linear(g, x, w, null, { hint: 'teacher.conv1' });
      const cls = g.view(this.classEmbedding, [1, 1, D]);
      let t = add(g, concatRows(g, [cls, e], 'teacher.tokens'), this.positionalEmbedding, {
        inPlace: true,
        hint: 'teacher.pos_add',
      });
      t = this.lnPre.forward(t);
      for (const b of this.blocks.slice(0, layer)) t = b.forward(t);
      const last = this.blocks[layer - 1].attn;
      const probs = opts.probs
        ? attentionProbs(g, last.lastQkv!, this.cfg.heads, { hint: 'teacher.attn_probs' })
        : null;
      return { tokens: t, probs };
    });
  }
}

/**
 * Checkpoint key -> our param name, for OpenAI/open_clip names (visual.*). Hugging Face CLIPVision
 * names (separate q/k/v projections) need concatenation into in_proj_*: see hfQkvParts.
 */
export function clipKeyMap(key: string, name = 'teacher'): string | undefined {
  const m =
    /^(?:visual\.)(conv1\.weight|class_embedding|positional_embedding|ln_pre\.(?:weight|bias)|transformer\.resblocks\.\d+\.(?:ln_[12]\.(?:weight|bias)|attn\.(?:in_proj_weight|in_proj_bias|out_proj\.(?:weight|bias))|mlp\.c_(?:fc|proj)\.(?:weight|bias)))$/.exec(
      key,
    );
  return m ? `${name}.${m[1]}` : undefined;
}

/** Hugging Face CLIPVisionModel key -> our name, or a q/k/v part of our in_proj param. */
export function hfKeyMap(key: string, name = 'teacher'): { param: string; part?: 0 | 1 | 2 } | undefined {
  const k = key.replace(/^vision_model\./, '');
  const direct: Record<string, string> = {
    'embeddings.patch_embedding.weight': 'conv1.weight',
    'embeddings.class_embedding': 'class_embedding',
    'embeddings.position_embedding.weight': 'positional_embedding',
    'pre_layrnorm.weight': 'ln_pre.weight',
    'pre_layrnorm.bias': 'ln_pre.bias',
  };
  if (direct[k]) return { param: `${name}.${direct[k]}` };
  const m = /^encoder\.layers\.(\d+)\.(.+)$/.exec(k);
  if (!m) return undefined;
  const base = `${name}.transformer.resblocks.${m[1]}`;
  const rest = m[2];
  const qkv = /^self_attn\.([qkv])_proj\.(weight|bias)$/.exec(rest);
  if (qkv) return { param: `${base}.attn.in_proj_${qkv[2]}`, part: 'qkv'.indexOf(qkv[1]) as 0 | 1 | 2 };
  const map: Record<string, string> = {
    'self_attn.out_proj.weight': 'attn.out_proj.weight',
    'self_attn.out_proj.bias': 'attn.out_proj.bias',
    'layer_norm1.weight': 'ln_1.weight',
    'layer_norm1.bias': 'ln_1.bias',
    'layer_norm2.weight': 'ln_2.weight',
    'layer_norm2.bias': 'ln_2.bias',
    'mlp.fc1.weight': 'mlp.c_fc.weight',
    'mlp.fc1.bias': 'mlp.c_fc.bias',
    'mlp.fc2.weight': 'mlp.c_proj.weight',
    'mlp.fc2.bias': 'mlp.c_proj.bias',
  };
  return map[rest] ? { param: `${base}.${map[rest]}` } : undefined;
}
