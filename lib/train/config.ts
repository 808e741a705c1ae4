// The pretraining configuration: defaults, validation, and the merge of defaults < --config file <
// command-line flags (student sizes: studentPresets in lib/models/vit.ts). Every value of the recipe
// is here and is printed at the start of a run (the effective config) and saved in the run folder.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { resolveNormalization } from '../data/transforms.js';
import { parseDevice, type DeviceSpec } from '../engine/device.js';
import { studentPresets, type ModelPreset } from '../models/vit.js';

export type Encoding = 'sparse' | 'dense';
export interface PretrainConfig {
  data: string;
  /** Image side; 0 = auto: 28 for digit data (mnist, idx:), 224 otherwise. */
  imgSize: number;
  /** Patch side; 0 = auto: 7 for digit data (a 4x4 grid of 28x28 digits), 16 otherwise. */
  patchSize: number;
  model: ModelPreset;
  encoding: Encoding;
  /** Teacher: a CLIP checkpoint path, or 'random' for a seeded random CLIP-architecture network. */
  teacher: string;
  teacherDim: number;
  teacherDepth: number;
  teacherHeads: number;
  teacherMlpRatio: number;
  /** The teacher block whose output is the target (1-based); 0 = the last. */
  teacherLayer: number;
  /**
   * The CLS target: the teacher's CLS token ('cls') or the mean of its patch tokens ('avg', for a
   * classifier pooled that way); 'auto' reads it from the checkpoint (docs/TEACHER.md).
   */
  teacherPool: 'auto' | 'cls' | 'avg';
  /**
   * The teacher's input normalisation: 'auto' = the checkpoint's (its metadata or a config beside it;
   * CLIP's for a CLIP layout without one; else the student's), 'student', imagenet, clip or
   * 'm1,m2,m3/s1,s2,s3'. The student's images are renormalised to it for the teacher (lib/io/teacher.ts).
   */
  teacherNormalize: string;
  decoderDim: number;
  decoderDepth: number;
  decoderHeads: number;
  mask: 'block' | 'random' | 'evolved';
  maskRatio: number;
  /** Evolved masking's clustering: 'hc' (MEDiC's agglomerative) or 'em' (EPM's soft k-means). */
  maskCluster: 'em' | 'hc';
  /** hc's relative-position weight lambda (0 = attention similarity only, as the released code). */
  maskLambda: number;
  /** Epochs over which evolved masking's parts fall from 40 to 10; 0 = the run's epochs. */
  evolveEpochs: number;
  /** Evolved masking's noise mix alpha = ((epoch + 1) / E)^gamma. */
  evolveGamma: number;
  wTok: number;
  wCls: number;
  wPix: number;
  tau: number;
  /** Loss balancing (docs/METHOD.md, Losses): static weights, ema of each term's magnitude, or learned uncertainty. */
  lossBalance: 'static' | 'ema' | 'uncertainty';
  /** Momentum of the ema balancing's running means. */
  balanceMomentum: number;
  epochs: number;
  /** Images per step in each process; the global batch is processes x batchSize. */
  batchSize: number;
  /** Base lr per lrBatchRef images (peak lr = lr * global batch / lrBatchRef). */
  lr: number;
  lrBatchRef: number;
  warmupEpochs: number;
  minLr: number;
  warmupLr: number;
  weightDecay: number;
  weightDecayEnd: number;
  clipGrad: number;
  dropPath: number;
  layerScale: number;
  /** 'auto' = mnist statistics for digit data, imagenet otherwise; or 'm1,m2,m3/s1,s2,s3'. */
  normalize: string;
  /** RandomResizedCrop smallest area fraction (docs/METHOD.md, Recipe: 0.2). */
  cropScale: number;
  /** Horizontal flip probability; -1 = auto: 0 for digit data (a flipped digit is another glyph), 0.5 otherwise. */
  hflip: number;
  colorJitter: number;
  device: DeviceSpec;
  /** Mixed precision: 'bf16' (gemms in bf16, block activations stored in bf16), 'fp32', or 'auto' (lib/train/precision.ts). */
  precision: 'fp32' | 'bf16' | 'auto';
  threads: number;
  workers: number;
  /** Batches the loader prepares ahead of the trainer. */
  prefetch: number;
  seed: number;
  out: string;
  evalEvery: number;
  checkpointEvery: number;
  knnK: number[];
  /** Evaluations at the end of a completed run, comma separated: knn, linear, finetune (each with its random-init twin). */
  eval: string;
  /** Cap on training steps per epoch (0 = the whole epoch), for smoke tests. */
  stepsPerEpoch: number;
  /** Cap on images embedded for kNN (0 = all). */
  knnLimit: number;
  /** Stop (with a checkpoint) after this many steps in this invocation; 0 = run to the end. */
  stopAfter: number;
  /** Metrics every this many steps (metrics.jsonl); 0 = every step. */
  logEvery: number;
  /**
   * Divergence guard: a step whose loss or grad norm exceeds this many times the median of the last 50
   * healthy steps stops the run (lib/train/spike-guard.ts); 0 = stop on NaN/inf only.
   */
  spikeFactor: number;
  /** Data parallel over processes: 'auto' = on when a launcher (mpirun, srun) started this process; 'off' = alone. */
  distributed: 'auto' | 'off';
  /** Seconds a collective may make no progress before the run stops, naming the stall (a lost or stalled rank). */
  commTimeout: number;
  /** Gradient all-reduce bucket, in MB of f32 values (buckets finished early overlap the rest of the backward pass). */
  bucketMb: number;
}

export const defaultConfig: PretrainConfig = {
  data: 'mnist',
  imgSize: 0,
  patchSize: 0,
  model: 'mini',
  encoding: 'sparse',
  teacher: 'auto',
  teacherDim: 128,
  teacherDepth: 4,
  teacherHeads: 4,
  teacherMlpRatio: 4,
  teacherLayer: 0,
  teacherPool: 'auto',
  teacherNormalize: 'auto',
  decoderDim: 64,
  decoderDepth: 2,
  decoderHeads: 4,
  mask: 'block',
  maskRatio: 0.4,
  maskCluster: 'hc',
  maskLambda: 0,
  evolveEpochs: 0,
  evolveGamma: 0.2,
  wTok: 1,
  wCls: 0.4,
  wPix: 1,
  tau: 0.1,
  lossBalance: 'static',
  balanceMomentum: 0.99,
  epochs: 40,
  batchSize: 128,
  lr: 1.5e-3,
  lrBatchRef: 256,
  warmupEpochs: 1,
  minLr: 1e-5,
  warmupLr: 1e-5,
  weightDecay: 0.05,
  weightDecayEnd: 0,
  clipGrad: 3.0,
  dropPath: 0.1,
  layerScale: 0.1,
  normalize: 'auto',
  cropScale: 0.2,
  hflip: -1,
  colorJitter: 0,
  device: 'auto',
  precision: 'fp32',
  threads: 0,
  workers: 1,
  prefetch: 2,
  seed: 0,
  out: 'runs/latest',
  evalEvery: 0,
  checkpointEvery: 1,
  knnK: [10, 20],
  eval: 'knn',
  stepsPerEpoch: 0,
  knnLimit: 0,
  stopAfter: 0,
  logEvery: 0,
  spikeFactor: 100,
  distributed: 'auto',
  commTimeout: 300,
  bucketMb: 25,
};

/** The evaluations `pretrain --eval` can run at the end (kNN always runs: it also tracks the run). */
export const EVALUATIONS = ['knn', 'linear', 'finetune'] as const;

/** The evaluations of a config besides kNN, in a fixed order. */
export function extraEvaluations(c: PretrainConfig): ('linear' | 'finetune')[] {
  const list = String(c.eval)
    .split(',')
    .map((e) => e.trim());
  return (['linear', 'finetune'] as const).filter((e) => list.includes(e));
}

type Key = keyof PretrainConfig;
const numeric: Key[] = [
  'imgSize',
  'patchSize',
  'teacherDim',
  'teacherDepth',
  'teacherHeads',
  'teacherMlpRatio',
  'decoderDim',
  'decoderDepth',
  'decoderHeads',
  'maskRatio',
  'wTok',
  'wCls',
  'wPix',
  'tau',
  'balanceMomentum',
  'epochs',
  'batchSize',
  'lr',
  'lrBatchRef',
  'warmupEpochs',
  'minLr',
  'warmupLr',
  'weightDecay',
  'weightDecayEnd',
  'clipGrad',
  'dropPath',
  'layerScale',
  'threads',
  'workers',
  'seed',
  'evalEvery',
  'checkpointEvery',
  'stepsPerEpoch',
  'knnLimit',
  'cropScale',
  'hflip',
  'colorJitter',
  'stopAfter',
  'logEvery',
  'prefetch',
  'spikeFactor',
  'teacherLayer',
  'maskLambda',
  'evolveEpochs',
  'evolveGamma',
  'commTimeout',
  'bucketMb',
];

/** The command-line flag of a config key: wTok -> --w-tok. */
export function flagOf(key: string): string {
  return '--' + key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

function fail(key: string, expected: string, got: unknown): never {
  throw new Error(`${flagOf(key)}: expected ${expected}, got ${JSON.stringify(got)}`);
}

/** Validates a complete config; throws naming the flag, what was expected and what was found. */
export function validateConfig(c: PretrainConfig): void {
  for (const k of numeric) if (typeof c[k] !== 'number' || !Number.isFinite(c[k] as number)) fail(k, 'a number', c[k]);
  const posInt = (k: Key) => {
    const v = c[k] as number;
    if (!Number.isInteger(v) || v < 1) fail(k, 'a positive integer', v);
  };
  const nonNegInt = (k: Key) => {
    const v = c[k] as number;
    if (!Number.isInteger(v) || v < 0) fail(k, 'a non-negative integer', v);
  };
  const nonNeg = (k: Key) => {
    if ((c[k] as number) < 0) fail(k, 'a non-negative number', c[k]);
  };
  for (const k of [
    'imgSize',
    'patchSize',
    'teacherDim',
    'teacherDepth',
    'teacherHeads',
    'decoderDim',
    'decoderDepth',
    'decoderHeads',
    'epochs',
    'batchSize',
    'lrBatchRef',
    'prefetch',
  ] as Key[])
    posInt(k);
  for (const k of [
    'threads',
    'workers',
    'seed',
    'evalEvery',
    'checkpointEvery',
    'stepsPerEpoch',
    'knnLimit',
    'warmupEpochs',
    'stopAfter',
    'logEvery',
    'teacherLayer',
    'evolveEpochs',
  ] as Key[])
    nonNegInt(k);
  for (const k of ['maskLambda', 'evolveGamma'] as Key[]) nonNeg(k);
  for (const k of [
    'wTok',
    'wCls',
    'wPix',
    'lr',
    'minLr',
    'warmupLr',
    'weightDecay',
    'weightDecayEnd',
    'clipGrad',
    'spikeFactor',
  ] as Key[])
    nonNeg(k);
  // The seed travels to the native drop-path RNG as an i32 word: keep it in range rather than wrap.
  if (c.seed >= 2 ** 31) fail('seed', 'an integer below 2^31', c.seed);
  if (typeof c.device !== 'string') fail('device', 'auto, cpu, cuda or cuda:N', c.device);
  parseDevice(c.device); // throws naming --device, what was expected and what was found
  if (!['fp32', 'bf16', 'auto'].includes(c.precision)) fail('precision', 'fp32, bf16 or auto', c.precision);
  if (!(c.model in studentPresets)) fail('model', `one of ${Object.keys(studentPresets).join(', ')}`, c.model);
  if (c.encoding !== 'sparse' && c.encoding !== 'dense') fail('encoding', 'sparse or dense', c.encoding);
  if (c.mask !== 'block' && c.mask !== 'random' && c.mask !== 'evolved')
    fail('mask', 'block, random or evolved', c.mask);
  if (c.maskCluster !== 'em' && c.maskCluster !== 'hc') fail('maskCluster', 'em or hc', c.maskCluster);
  if (!['static', 'ema', 'uncertainty'].includes(c.lossBalance))
    fail('lossBalance', 'static, ema or uncertainty', c.lossBalance);
  if (!(c.balanceMomentum >= 0 && c.balanceMomentum < 1))
    fail('balanceMomentum', 'a number in [0, 1)', c.balanceMomentum);
  if (c.distributed !== 'auto' && c.distributed !== 'off') fail('distributed', 'auto or off', c.distributed);
  if (!(c.commTimeout > 0)) fail('commTimeout', 'a positive number of seconds', c.commTimeout);
  if (!(c.bucketMb > 0)) fail('bucketMb', 'a positive number of MB', c.bucketMb);
  if (!['imagenet', 'clip', 'mnist'].includes(c.normalize) && !/^[^/]+\/[^/]+$/.test(c.normalize))
    fail('normalize', "imagenet, clip, mnist or 'm1,m2,m3/s1,s2,s3'", c.normalize);
  if (typeof c.teacherNormalize !== 'string' || !validTeacherNormalize(c.teacherNormalize))
    fail(
      'teacherNormalize',
      "auto, student, imagenet, clip or 'm1,m2,m3/s1,s2,s3' (3 means, 3 positive stds)",
      c.teacherNormalize,
    );
  if (!(c.cropScale > 0 && c.cropScale <= 1)) fail('cropScale', 'a number in (0, 1]', c.cropScale);
  if (!(c.hflip >= 0 && c.hflip <= 1)) fail('hflip', 'a probability in [0, 1]', c.hflip);
  if (!(c.colorJitter >= 0 && c.colorJitter < 1)) fail('colorJitter', 'a number in [0, 1)', c.colorJitter);
  if (!(c.maskRatio > 0 && c.maskRatio < 1)) fail('maskRatio', 'a number in (0, 1)', c.maskRatio);
  if (!(c.tau > 0)) fail('tau', 'a positive number', c.tau);
  if (!(c.teacherMlpRatio > 0)) fail('teacherMlpRatio', 'a positive number', c.teacherMlpRatio);
  if (!(c.dropPath >= 0 && c.dropPath < 1)) fail('dropPath', 'a number in [0, 1)', c.dropPath);
  if (c.imgSize % c.patchSize !== 0) fail('imgSize', `a multiple of --patch-size ${c.patchSize}`, c.imgSize);
  if (c.wTok === 0 && c.wCls === 0 && c.wPix === 0)
    throw new Error('--w-tok, --w-cls, --w-pix: at least one loss weight must be non-zero');
  const s = studentPresets[c.model];
  if (s.dim % s.heads) fail('model', 'a width divisible by its heads', c.model);
  if (c.teacherDim % c.teacherHeads)
    fail('teacherDim', `a multiple of --teacher-heads ${c.teacherHeads}`, c.teacherDim);
  if (c.decoderDim % c.decoderHeads)
    fail('decoderDim', `a multiple of --decoder-heads ${c.decoderHeads}`, c.decoderDim);
  if (!Array.isArray(c.knnK) || !c.knnK.every((k) => Number.isInteger(k) && k > 0))
    fail('knnK', 'a list of positive integers', c.knnK);
  const evals = String(c.eval)
    .split(',')
    .map((e) => e.trim());
  if (!evals.every((e) => EVALUATIONS.includes(e as never)) || !evals.includes('knn'))
    fail('eval', `a comma-separated list of ${EVALUATIONS.join(', ')} that includes knn`, c.eval);
  if (typeof c.data !== 'string' || !c.data) fail('data', 'a data spec (folder, idx:<dir>, mnist, synthetic)', c.data);
  if (!['auto', 'cls', 'avg'].includes(c.teacherPool)) fail('teacherPool', 'auto, cls or avg', c.teacherPool);
  if (typeof c.teacher !== 'string' || !c.teacher)
    fail('teacher', "a ViT checkpoint path, 'digits', 'random' or 'auto'", c.teacher);
  if (!TEACHER_KEYWORDS.has(c.teacher) && !existsSync(c.teacher))
    fail('teacher', 'an existing ViT checkpoint file (or digits, random, auto)', c.teacher);
  if (typeof c.out !== 'string' || !c.out) fail('out', 'a run folder path', c.out);
}

function validTeacherNormalize(v: string): boolean {
  if (v === 'auto' || v === 'student' || v === 'imagenet' || v === 'clip') return true;
  try {
    resolveNormalization(v);
    return /\//.test(v);
  } catch {
    return false;
  }
}

/** Reads a --config JSON file: an object of config keys (camelCase, as printed in config.json). */
export function readConfigFile(path: string): Partial<PretrainConfig> {
  if (!existsSync(path)) throw new Error(`--config ${path}: no such file`);
  let obj: unknown;
  try {
    obj = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`--config ${path}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj))
    throw new Error(`--config ${path}: expected a JSON object of settings`);
  checkConfigKeys(obj, `--config ${path}`);
  return obj as Partial<PretrainConfig>;
}

/** Throws on the first key that is not a config key, naming it and where it came from. */
export function checkConfigKeys(obj: object, where: string): void {
  for (const k of Object.keys(obj)) {
    if (!(k in defaultConfig))
      throw new Error(`${where}: unknown setting '${k}' (known: ${Object.keys(defaultConfig).join(', ')})`);
  }
}

/** Settings as flags carry them: each a config key, its value typed or as the command line's string. */
export type ConfigFlags = { [K in keyof PretrainConfig]?: PretrainConfig[K] | string };

/**
 * defaults < file < flags; flags given as strings are converted by the type of the default. An
 * unknown key is a type error, and (from JavaScript or parsed JSON) an error naming it at run time.
 */
export function resolveConfig(file: Partial<PretrainConfig> = {}, flags: ConfigFlags = {}): PretrainConfig {
  checkConfigKeys(file, 'config');
  checkConfigKeys(flags, 'flags');
  const c: Record<string, unknown> = { ...defaultConfig, ...file };
  for (const [k, v] of Object.entries(flags)) {
    if (v === undefined) continue;
    const def = (defaultConfig as unknown as Record<string, unknown>)[k];
    if (typeof def === 'number') {
      const n = typeof v === 'number' ? v : Number(v);
      if (typeof v === 'string' && (v.trim() === '' || !Number.isFinite(n))) fail(k, 'a number', v);
      c[k] = n;
    } else if (Array.isArray(def)) {
      c[k] = typeof v === 'string' ? v.split(',').map((x) => Number(x)) : v;
    } else {
      c[k] = v;
    }
  }
  const cfg = finalizeConfig(c as unknown as PretrainConfig);
  validateConfig(cfg);
  return cfg;
}

/** Digit data (the bundled MNIST, IDX files): small grayscale glyphs. */
export function isDigitData(data: string): boolean {
  return data === 'mnist' || data.startsWith('idx:');
}

/** Resolves the 'auto' values from the data, so the printed config shows what runs. */
export function finalizeConfig(c: PretrainConfig): PretrainConfig {
  const digits = isDigitData(String(c.data));
  const out = { ...c };
  if (out.imgSize === 0) out.imgSize = digits ? 28 : 224;
  // 7 px patches on 28 px digits: 16 tokens, each holding a stroke. With a random teacher, 4 px patches
  // (49 mostly-empty tokens) train 4x slower and gain less kNN over random init in the same minutes.
  if (out.patchSize === 0) out.patchSize = digits ? 7 : 16;
  if (out.hflip === -1) out.hflip = digits ? 0 : 0.5;
  if (out.normalize === 'auto') out.normalize = digits ? 'mnist' : 'imagenet';
  if (out.teacher === 'auto') out.teacher = fitsDigitsTeacher(out) ? 'digits' : 'random';
  return out;
}

/** The teachers named by a word instead of a file. */
const TEACHER_KEYWORDS = new Set(['auto', 'random', 'digits']);

/**
 * The bundled digits teacher (assets/teachers, made by scripts/train-digits-teacher.mjs): a mini ViT
 * trained with the labels of the bundled digits' train split, standing in for CLIP where no CLIP weights
 * can be downloaded (docs/TEACHER.md). Two folders up from lib/train (source) and dist/train (built).
 */
export const DIGITS_TEACHER = fileURLToPath(new URL('../../assets/teachers/digits-mini.safetensors', import.meta.url));

/** 'auto' picks the digits teacher for the data and geometry it was trained on: the bundled digits, 28 px, 7 px patches. */
function fitsDigitsTeacher(c: PretrainConfig): boolean {
  return c.data === 'mnist' && c.imgSize === 28 && c.patchSize === 7;
}

/** The teacher's checkpoint file, or null for the seeded random teacher. */
export function teacherFile(c: Pick<PretrainConfig, 'teacher'>): string | null {
  if (c.teacher === 'random' || c.teacher === 'auto') return null;
  return c.teacher === 'digits' ? DIGITS_TEACHER : c.teacher;
}

/** Mean/std of a normalize setting, in the loader's 'm1,m2,m3/s1,s2,s3' form where needed. */
export function normalizationOf(c: PretrainConfig): string {
  // MNIST digits: mean 0.1307, std 0.3081 (the usual statistics), on all three replicated channels.
  return c.normalize === 'mnist' ? '0.1307,0.1307,0.1307/0.3081,0.3081,0.3081' : c.normalize;
}

/** The effective config as aligned "key value" lines (config.json holds the same). */
export function formatConfig(c: PretrainConfig): string {
  const width = Math.max(...Object.keys(c).map((k) => k.length));
  return Object.entries(c)
    .map(([k, v]) => `  ${k.padEnd(width)}  ${Array.isArray(v) ? v.join(',') : String(v)}`)
    .join('\n');
}

const show = (v: unknown) => (Array.isArray(v) ? v.join(',') : String(v));

/**
 * The settings that differ from the defaults for this data (the 'auto' values resolved the same way),
 * as flags: "--model micro --batch-size 8". Empty when everything is at its default.
 */
export function formatConfigChanges(c: PretrainConfig): string {
  const base = finalizeConfig({ ...defaultConfig, data: c.data });
  // A teacher checkpoint brings its own architecture into these keys: not a setting the user changed.
  const fromFile = new Set<Key>(
    teacherFile(c) ? ['teacherDim', 'teacherDepth', 'teacherHeads', 'teacherMlpRatio', 'teacherPool'] : [],
  );
  return (Object.keys(c) as Key[])
    .filter((k) => !fromFile.has(k) && show(c[k]) !== show(base[k]))
    .map((k) => `${flagOf(k)} ${show(c[k])}`)
    .join(' ');
}

/**
 * The config as a run folder and its checkpoints record it: file paths absolute (the data folder, the
 * teacher checkpoint, the run folder), so that resuming or evaluating from another working directory
 * finds them.
 */
export function absolutePaths(c: PretrainConfig): PretrainConfig {
  const data = c.data.startsWith('idx:')
    ? `idx:${resolve(c.data.slice(4))}`
    : isNamedData(c.data)
      ? c.data
      : resolve(c.data);
  return { ...c, data, teacher: TEACHER_KEYWORDS.has(c.teacher) ? c.teacher : resolve(c.teacher), out: resolve(c.out) };
}

function isNamedData(data: string): boolean {
  return data === 'mnist' || data === 'synthetic' || data.startsWith('synthetic:');
}
