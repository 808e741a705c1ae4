// `medic-native masks`: a PNG grid that shows what each masking strategy does to a few images: one
// column per image, rows = the image, then each strategy (masked patches greyed out). Evolved masking
// runs the teacher (a checkpoint, or the seeded random one) on the images, as a training step would.
import sharp from 'sharp';
import type { Command } from 'commander';

import { DataLoader, openData, resolveNormalization } from '../data/index.js';
import { Engine } from '../engine/index.js';
import { compile, GraphState } from '../graph/index.js';
import { describeTeacherInput, loadClipTeacher, renormalizeTeacherInput } from '../io/teacher.js';
import { buildTeacherStep } from '../models/index.js';
import { applyTeacherCheckpoint, medicConfigOf, teacherInputOf } from '../train/build.js';
import { normalizationOf, resolveConfig, teacherFile, type PretrainConfig } from '../train/config.js';
import { clusterInputOf, evolvedConfigOf, evolvedMasks, type ClusterInput } from '../train/evolved.js';
import { makeMasks } from '../train/masking.js';

export interface MasksOptions {
  data?: string;
  out: string;
  mask: string;
  images: string;
  epoch: string;
  scale: string;
  [flag: string]: unknown;
}

const STRATEGIES = ['block', 'random', 'evolved'] as const;
type Strategy = (typeof STRATEGIES)[number];

/** The strategies of a --mask list ('block,random,evolved' or one of them). */
export function parseStrategies(s: string): Strategy[] {
  const out = s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  for (const x of out)
    if (!(STRATEGIES as readonly string[]).includes(x))
      throw new Error(`--mask: expected a comma list of block, random, evolved, got '${x}'`);
  if (!out.length) throw new Error('--mask: expected at least one of block, random, evolved');
  return out as Strategy[];
}

/** What --mask-cluster reads of the teacher on the images (attn or its Gram, [n, N, N]), and what the teacher was given. */
async function teacherMaps(
  c: PretrainConfig,
  images: Float32Array,
  n: number,
): Promise<{ maps: ClusterInput; lines: string[] }> {
  const engine = Engine.create({ device: c.device, threads: c.threads });
  try {
    const mc = medicConfigOf(c, n);
    const which = clusterInputOf(c.maskCluster);
    const cg = compile(buildTeacherStep({ ...mc, clusterInput: which }).graph);
    const state = new GraphState(engine, cg);
    try {
      await state.initNative(c.seed, ['frozen']); // the seeded random teacher of a run with this seed
      const file = teacherFile(c);
      const info = file ? loadClipTeacher(state, file, { ...mc.teacher, img: c.imgSize }) : null;
      // the teacher sees its own input normalisation, as in a training run (lib/train/setup.ts)
      const tin = teacherInputOf(c, info);
      if (!tin.same) renormalizeTeacherInput(state, mc.teacher.width, tin.student, tin.norm);
      using prog = state.program();
      const r = await prog.run({ images });
      const out = r.outputs[which] as Float32Array;
      return {
        maps: which === 'gram' ? { gram: out } : { attn: out },
        lines: [...tin.notes, describeTeacherInput(tin, c.normalize)],
      };
    } finally {
      state.dispose();
    }
  } finally {
    engine.dispose();
  }
}

/** RGB pixels of image b (de-normalised), scaled by an integer factor, masked patches greyed. */
function drawCell(
  rgb: Uint8Array,
  W: number,
  x0: number,
  y0: number,
  img: Float32Array,
  b: number,
  S: number,
  k: number,
  mean: number[],
  std: number[],
  mask: Uint8Array | null,
  patch: number,
  N: number,
): void {
  const g = S / patch;
  for (let y = 0; y < S * k; y++)
    for (let x = 0; x < S * k; x++) {
      const sy = Math.floor(y / k),
        sx = Math.floor(x / k);
      const masked = mask ? mask[b * N + Math.floor(sy / patch) * g + Math.floor(sx / patch)] : 0;
      for (let ch = 0; ch < 3; ch++) {
        let v = (img[((b * 3 + ch) * S + sy) * S + sx] * std[ch] + mean[ch]) * 255;
        if (masked) v = 0.25 * v + 0.75 * 128;
        rgb[((y0 + y) * W + x0 + x) * 3 + ch] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
}

export async function runMasks(
  o: MasksOptions,
): Promise<{ path: string; rows: string[]; images: number; teacher: string[] }> {
  const strategies = parseStrategies(o.mask);
  const n = Number(o.images);
  if (!Number.isInteger(n) || n < 1 || n > 64)
    throw new Error(`--images: expected an integer in 1..64, got ${o.images}`);
  const epoch = Number(o.epoch);
  if (!Number.isInteger(epoch) || epoch < 0)
    throw new Error(`--epoch: expected a non-negative integer, got ${o.epoch}`);
  const k = Number(o.scale);
  if (!Number.isInteger(k) || k < 1 || k > 16) throw new Error(`--scale: expected an integer in 1..16, got ${o.scale}`);
  const { out, mask: _m, images: _i, epoch: _e, scale: _s, ...rest } = o;
  const c = applyTeacherCheckpoint(resolveConfig({}, { ...rest, batchSize: n })).config;
  const data = await openData(c.data);
  const set = data.val && data.val.length >= n ? data.val : data.train;
  if (set.length < n) throw new Error(`--images ${n}: the data '${c.data}' holds only ${set.length} images`);
  const loader = new DataLoader(set, {
    batchSize: n,
    imageSize: c.imgSize,
    train: false,
    workers: 0,
    transform: { normalize: normalizationOf(c) },
  });
  const first = await loader.next();
  await loader.close();
  if (first.done) throw new Error(`the data '${c.data}' gave no batch`);
  const images = first.value.images;
  const S = c.imgSize,
    g = S / c.patchSize,
    N = g * g;
  const masks: { name: string; mask: Uint8Array }[] = [];
  const teacher: string[] = [];
  for (const s of strategies) {
    if (s === 'evolved') {
      const { maps, lines } = await teacherMaps(c, images, n);
      teacher.push(...lines);
      const cfg = evolvedConfigOf(c, 1);
      masks.push({
        name: `evolved (${c.maskCluster}, epoch ${epoch})`,
        mask: evolvedMasks(cfg, maps, n, c.seed, 0, epoch).mask,
      });
    } else {
      masks.push({ name: s, mask: makeMasks({ kind: s, ratio: c.maskRatio, gridH: g, gridW: g }, n, c.seed, 0).mask });
    }
  }
  const { mean, std } = resolveNormalization(normalizationOf(c));
  const cell = S * k,
    gap = 2;
  const W = n * (cell + gap) + gap,
    H = (1 + masks.length) * (cell + gap) + gap;
  const rgb = new Uint8Array(W * H * 3).fill(255);
  for (let b = 0; b < n; b++) {
    const x0 = gap + b * (cell + gap);
    drawCell(rgb, W, x0, gap, images, b, S, k, mean, std, null, c.patchSize, N);
    masks.forEach((m, r) =>
      drawCell(rgb, W, x0, gap + (r + 1) * (cell + gap), images, b, S, k, mean, std, m.mask, c.patchSize, N),
    );
  }
  await sharp(Buffer.from(rgb), { raw: { width: W, height: H, channels: 3 } })
    .png()
    .toFile(out);
  return { path: out, rows: ['image', ...masks.map((m) => m.name)], images: n, teacher };
}

export function registerMasks(program: Command): void {
  program
    .command('masks')
    .description(
      'write a PNG grid of a few images and their masks (block, random, evolved), to see what each strategy does',
    )
    .requiredOption('--out <file.png>', 'the PNG to write')
    .option('--data <spec>', 'images to show (as pretrain --data)', 'mnist')
    .option(
      '--mask <list>',
      'strategies, one row each: block, random, evolved (comma separated)',
      'block,random,evolved',
    )
    .option('--images <n>', 'images (columns)', '8')
    .option('--epoch <n>', 'evolved masking: the epoch whose schedule to show (parts and noise mix)', '0')
    .option('--scale <k>', 'pixels per image pixel', '4')
    .option('--mask-ratio <r>', 'fraction of patches masked')
    .option('--img-size <px>', 'image side (0 = auto)')
    .option('--patch-size <px>', 'patch side (0 = auto)')
    .option('--teacher <path>', "evolved masking's teacher (a ViT checkpoint, or random)")
    .option('--teacher-layer <n>', 'the teacher block whose attention is used (0 = the last)')
    .option('--teacher-dim <n>', 'random teacher width')
    .option('--teacher-depth <n>', 'random teacher depth')
    .option('--teacher-heads <n>', 'random teacher heads')
    .option(
      '--teacher-normalize <kind>',
      "the teacher's input normalisation (auto, student, imagenet, clip, m1,m2,m3/s1,s2,s3; as pretrain)",
    )
    .option('--mask-cluster <kind>', 'evolved: hc or em')
    .option('--mask-lambda <l>', 'evolved, hc: weight of the grid distance')
    .option('--epochs <n>', 'evolved: the run length the schedule refers to')
    .option('--evolve-epochs <n>', 'evolved: epochs of the part schedule (0 = --epochs)')
    .option('--evolve-gamma <g>', 'evolved: part-noise exponent')
    .option('--normalize <kind>', 'input normalisation (auto, imagenet, clip, mnist, m1,m2,m3/s1,s2,s3)')
    .option('--seed <n>', 'seed of the masks and of the random teacher')
    .option('--device <dev>', 'auto, cpu, cuda or cuda:N')
    .option('--threads <n>', 'CPU threads (0 = all cores)')
    .action(async (o: MasksOptions) => {
      const r = await runMasks(o);
      for (const line of r.teacher) console.log(line);
      console.log(`${r.path}: ${r.images} images x rows ${r.rows.join(' / ')}`);
    });
}
