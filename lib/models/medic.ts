// The whole MEDiC training step as one graph (docs/METHOD.md, Shapes and Losses):
//   teacher (frozen CLIP) on the full image -> parameter-free LN per token (unbiased variance) -> targets t_all [B, 1+N, Dt]
//   student encoder (sparse or dense) -> distill head Linear(D, Dt) on the scored rows: CLS + tokens
//      (sparse: every output row, the visible ones, teacher gathered at [0, 1+visible]; dense: the
//      rows at masked positions by default, or visible / all, student and teacher gathered alike)
//   pixel branch (w_pix != 0): decoder predictions at the masked positions vs patchify(order 0) ->
//      gather masked -> pixel_norm targets
//   -> medic_loss (values + gradients) -> backward from ds / dpred -> grad_norm -> AdamW (clip 3.0).
// A zero loss weight removes its branch's ops: w_pix = 0 builds no decoder; w_tok = 0 scores the CLS
// row only. The loss weights are explicit config (no defaults hidden here).
//
// Program inputs (all derived from the mask by maskInputs(), lib/train/masking.ts):
//   images [B, 3, S, S] f32; hyper [3] f32 = (lr, weight decay, step >= 1); seed [2] i32 (DropPath);
//   mask [B, N] u8 (dense encoder, decoder); visible [B, V] i32 (sparse encoder, decoder);
//   masked [B, M] i32 (pixel targets); masked_rows [B, M] i32 = 1 + masked (decoder rows);
//   visible_rows [B, 1+V] i32 = [0, 1+visible] (dense decoder input); scored_rows [B, 1+T] i32 (the
//   distilled rows in the 1+N sequence: [0, 1+visible] or [0, 1+masked]).
// Outputs: losses [4] = (total, L_tok, L_cls, L_pix); grad_norm [1] (before clipping).
import {
  type Graph,
  Graph as GraphClass,
  type LossBalance,
  type LossWeights,
  type Value,
  adamw,
  gatherRows,
  gradNorm,
  gram,
  layerNorm,
  meanTokens,
  lossWeights,
  medicLoss,
  patchify,
  pixelNorm,
  sliceRows,
  NORM_EPS,
} from '../graph/index.js';
import { Linear } from '../nn/index.js';
import { ClipVisionTower, type ClipConfig, type TeacherTower } from './clip.js';
import { TimmVisionTower } from './timm-teacher.js';
import { PixelDecoder } from './decoder.js';
import { VisionTransformer, type VitConfig } from './vit.js';

export interface MedicConfig {
  batch: number;
  img: number;
  patch: number;
  student: Omit<VitConfig, 'img' | 'patch'>;
  /** The teacher: CLIP's layout (default) or timm's VisionTransformer (kind 'timm', from a checkpoint). */
  teacher: Omit<ClipConfig, 'img'> & { kind?: 'clip' | 'timm'; layerScale?: boolean; normPre?: boolean };
  decoder: { dim: number; depth: number; heads: number; mlpRatio?: number };
  encoding: 'sparse' | 'dense';
  /** Masked patches per image: M = floor(N * maskRatio). */
  maskRatio: number;
  /** Which patch tokens the token loss scores; sparse: 'visible' only; dense default 'masked'. */
  scored?: 'visible' | 'masked' | 'all';
  weights: LossWeights;
  /** The block whose output is the target (1-based; default: the last). */
  teacherLayer?: number;
  /**
   * 'forward' (default): the teacher runs in this graph. 'input': its normalised targets come in as
   * the input teacher_targets [B, 1+N, Dt] from the teacher program (buildTeacherStep), which evolved
   * masking runs first for its attention map; the teacher's params are still registered here, so both
   * graphs share one frozen layout.
   */
  teacherTargets?: 'forward' | 'input';
  /** The CLS target: the teacher's CLS token (default) or the mean of its patch tokens (an avg-pooled classifier's summary). */
  teacherPool?: 'cls' | 'avg';
  /**
   * Loss balancing (docs/METHOD.md, Losses): 'static' uses the weights as given; 'ema' reads a
   * per-step input loss_scale [3] (1 / running mean of each term, kept by the host); 'uncertainty'
   * learns loss.logvar [3] and scales each term by exp(-logvar). Default 'static'.
   */
  balance?: 'static' | 'ema' | 'uncertainty';
  /** AdamW (clip by global norm maxNorm, docs/METHOD.md, Recipe: 3.0); null: the step stops after the gradients. */
  optimizer: { maxNorm: number; beta1?: number; beta2?: number; eps?: number } | null;
  /** 'bf16': mixed precision (Graph.precision); default 'fp32'. */
  precision?: 'fp32' | 'bf16';
}

export interface MedicGraph {
  graph: Graph;
  cfg: MedicConfig;
  N: number;
  M: number;
  V: number;
  /** The rows the distillation scores (besides CLS): 'visible' | 'masked' | 'all' | 'none' (w_tok = 0). */
  scored: 'visible' | 'masked' | 'all' | 'none';
  student: VisionTransformer;
  teacher: TeacherTower;
  decoder: PixelDecoder | null;
  head: Linear;
  values: Record<string, Value>;
}

export function buildMedic(cfg: MedicConfig): MedicGraph {
  const g = new GraphClass();
  g.precision = cfg.precision ?? 'fp32';
  const { batch: B, img, patch } = cfg;
  const N = (img / patch) ** 2;
  const M = Math.floor(N * cfg.maskRatio);
  const V = N - M;
  if (M < 1 || V < 1)
    throw new Error(`medic: mask ratio ${cfg.maskRatio} leaves ${V} visible and ${M} masked of ${N} patches`);
  const w = cfg.weights;
  if (w.w_tok === 0 && w.w_cls === 0)
    throw new Error('medic: w_tok and w_cls are both 0: the distillation branch has nothing to train');
  const sparse = cfg.encoding === 'sparse';
  const scored = w.w_tok === 0 ? 'none' : (cfg.scored ?? (sparse ? 'visible' : 'masked'));
  if (sparse && scored !== 'visible' && scored !== 'none')
    throw new Error(`medic: the sparse encoding can only score visible tokens, got '${scored}'`);
  const values: Record<string, Value> = {};
  const input = (name: string, shape: number[], dtype: 'f32' | 'i32' | 'u8'): Value =>
    (values[name] ??= g.input(name, shape, dtype));

  const images = input('images', [B, 3, img, img], 'f32');
  // Params in a fixed order: student, head, decoder, teacher.
  const student = new VisionTransformer(g, { ...cfg.student, img, patch }, { withMaskToken: !sparse });
  const D = cfg.student.dim;
  const Dt = cfg.teacher.width;
  const head = new Linear(g, 'head', D, Dt);
  const decoder =
    w.w_pix !== 0
      ? new PixelDecoder(g, {
          inDim: D,
          dim: cfg.decoder.dim,
          depth: cfg.decoder.depth,
          heads: cfg.decoder.heads,
          mlpRatio: cfg.decoder.mlpRatio,
          grid: img / patch,
          patchPixels: patch * patch * 3,
        })
      : null;
  // The uncertainty weighting's log-variances: trained, never decayed, 0 at init (scales of 1).
  const logvar =
    cfg.balance === 'uncertainty' ? g.param('loss.logvar', [3], { kind: 'zeros' }, { decay: false }) : null;
  const teacher = makeTeacher(g, cfg.teacher, img);

  // Targets (no gradients): each token normalised with the unbiased variance, as the official code
  // does (torch's default var(); docs/METHOD.md, Teacher), CLS included.
  const tAll =
    cfg.teacherTargets === 'input'
      ? input('teacher_targets', [B, 1 + N, Dt], 'f32')
      : g.noGrad(() =>
          teacherTargets(g, teacher.forwardTaps(images, { layer: cfg.teacherLayer }).tokens, cfg.teacherPool),
        );
  const scoredRowsLen = scored === 'visible' ? 1 + V : scored === 'masked' ? 1 + M : 0;
  const scoredRows = scoredRowsLen ? input('scored_rows', [B, scoredRowsLen], 'i32') : null;

  // Student.
  const seed = input('seed', [2], 'i32');
  const enc = sparse
    ? student.forwardSparse(images, input('visible', [B, V], 'i32'), seed)
    : student.forwardDense(images, input('mask', [B, N], 'u8'), seed);
  values.encoder_out = enc;
  let s: Value;
  let t: Value;
  if (scored === 'none') {
    s = head.forward(sliceRows(g, enc, 0, 1, 'encoder.cls'));
    t = g.noGrad(() => sliceRows(g, tAll, 0, 1, 'teacher.cls'));
  } else {
    // Dense, scoring a subset: gather the encoder rows before the head (the head is per row), so the
    // head's gemms run on 1+T rows, not 1+N.
    s = head.forward(sparse || scored === 'all' ? enc : gatherRows(g, enc, scoredRows!, 'encoder.scored'));
    t = scored === 'all' && !sparse ? tAll : g.noGrad(() => gatherRows(g, tAll, scoredRows!, 'teacher.scored'));
  }
  values.s = s;
  values.t = t;

  // Pixel branch.
  let pred: Value | null = null;
  let target: Value | null = null;
  if (decoder) {
    const visible = input('visible', [B, V], 'i32');
    const mask = input('mask', [B, N], 'u8');
    const decIn = sparse ? enc : gatherRows(g, enc, input('visible_rows', [B, 1 + V], 'i32'), 'decoder.input');
    pred = decoder.forward(decIn, visible, mask, input('masked_rows', [B, M], 'i32'));
    target = g.noGrad(() =>
      pixelNorm(
        g,
        gatherRows(g, patchify(g, images, patch, 0, 'pixel.patches'), input('masked', [B, M], 'i32'), 'pixel.masked'),
        { hint: 'pixel.target' },
      ),
    );
    values.pred = pred;
    values.target = target;
  }

  const loss = medicLoss(g, s, t, pred, target, w, balanceOf(g, cfg, logvar, input));
  g.markOutput(loss.losses, 'losses');
  g.backward(
    pred
      ? [
          { value: s, grad: loss.ds },
          { value: pred, grad: loss.dpred! },
        ]
      : [{ value: s, grad: loss.ds }],
  );
  if (cfg.optimizer) {
    const norm = g.markOutput(gradNorm(g), 'grad_norm');
    adamw(g, input('hyper', [3], 'f32'), norm, {
      maxNorm: cfg.optimizer.maxNorm,
      beta1: cfg.optimizer.beta1,
      beta2: cfg.optimizer.beta2,
      eps: cfg.optimizer.eps,
    });
  }
  return { graph: g, cfg, N, M, V, scored, student, teacher, decoder, head, values };
}

/**
 * Each token normalised with the unbiased variance, CLS included (docs/METHOD.md, Teacher). With pool
 * 'avg' the CLS row is first replaced by the mean of the patch tokens (as timm's global_pool 'avg' pools
 * before its fc_norm), since such a teacher's CLS token is never read by its head.
 */
export function teacherTargets(g: Graph, tokens: Value, pool: 'cls' | 'avg' = 'cls'): Value {
  let x = tokens;
  if (pool === 'avg') {
    const T = tokens.shape[1];
    x = g.temp('teacher.pooled_tokens', tokens.shape, tokens.dtype, [tokens]);
    g.emit('copy_rows', [tokens], [x], { src: 1, dst: 1, count: T - 1 });
    g.emit('copy_rows', [meanTokens(g, tokens, 1, 'teacher.pool')], [x], { src: 0, dst: 0, count: 1 });
  }
  return layerNorm(g, x, null, null, { eps: NORM_EPS, unbiased: true, hint: 'teacher.target_norm' });
}

export interface TeacherStep {
  graph: Graph;
  teacher: TeacherTower;
  N: number;
}

/**
 * The teacher alone, for evolved masking: images [B, 3, S, S] -> outputs targets [B, 1+N, Dt] (as
 * buildMedic computes them) and, from the same forward, what the clustering reads (`clusterInput`):
 * 'attn' (default) the target block's head-averaged attention map [B, N, N] (em's features are its
 * columns), or 'gram' its columns' Gram matrix attn^T attn [B, N, N] (one batched gemm: hc's cosines,
 * so the host's clustering has no N x N x N product of its own). Its params are the MEDiC graph's
 * frozen group, in the same order and offsets, so its program binds the training state's frozen
 * tensor (checked by sameFrozenLayout).
 */
export function buildTeacherStep(
  cfg: Pick<MedicConfig, 'batch' | 'img' | 'teacher' | 'teacherLayer' | 'teacherPool'> & {
    clusterInput?: 'attn' | 'gram';
  },
): TeacherStep {
  const g = new GraphClass();
  const images = g.input('images', [cfg.batch, 3, cfg.img, cfg.img], 'f32');
  const teacher = makeTeacher(g, cfg.teacher, cfg.img);
  const { tokens, probs } = teacher.forwardTaps(images, { layer: cfg.teacherLayer, probs: true });
  g.markOutput(
    g.noGrad(() => teacherTargets(g, tokens, cfg.teacherPool)),
    'targets',
  );
  if (cfg.clusterInput === 'gram')
    g.markOutput(
      g.noGrad(() => gram(g, probs!, { hint: 'teacher.attn_gram' })),
      'gram',
    );
  else g.markOutput(probs!, 'attn');
  return { graph: g, teacher, N: teacher.numPatches };
}

function makeTeacher(g: Graph, t: MedicConfig['teacher'], img: number): TeacherTower {
  const { kind, layerScale, normPre, ...clip } = t;
  return kind === 'timm'
    ? new TimmVisionTower(g, { ...clip, img, layerScale, normPre })
    : new ClipVisionTower(g, { ...clip, img });
}

/** The loss balancing inputs; the scale in use is a program output (loss_scale) for the metrics. */
function balanceOf(
  g: Graph,
  cfg: MedicConfig,
  logvar: Value | null,
  input: (name: string, shape: number[], dtype: 'f32') => Value,
): LossBalance | undefined {
  if (logvar) {
    const scale = lossWeights(g, logvar);
    g.markOutput(scale, 'loss_scale');
    return { scale, logvar };
  }
  if (cfg.balance === 'ema') return { scale: input('loss_scale', [3], 'f32') };
  return undefined;
}
