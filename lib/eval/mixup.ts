// Mixup and CutMix of a training batch with its reverse (timm's Mixup in 'batch' mode: image b is mixed
// with image B-1-b), and the label-smoothed mixed targets the soft cross entropy reads.
//
// Per step: with probability `prob` the batch is mixed; CutMix is chosen with probability switchProb
// when both alphas are > 0; lam ~ Beta(alpha, alpha). CutMix pastes a box of area ~ (1 - lam) and lam
// is corrected to the box actually pasted (timm's correct_lam). Targets: off = smoothing / K,
// on = 1 - smoothing + off, t = lam * onehot(y) + (1 - lam) * onehot(flip(y)).
// Every draw is keyed by (seed, step), so a resumed run mixes exactly as the uninterrupted one.
import { Rng } from '../util/rng.js';

export interface MixupConfig {
  /** Beta alpha of mixup (0 = off). BEiT/MAE: 0.8. */
  mixup: number;
  /** Beta alpha of CutMix (0 = off). BEiT/MAE: 1.0. */
  cutmix: number;
  /** Probability that a batch is mixed at all (timm mixup_prob, 1). */
  prob: number;
  /** Probability of CutMix when both are on (0.5). */
  switchProb: number;
  /** Label smoothing folded into the targets (0.1). */
  smoothing: number;
}

export interface MixDraw {
  kind: 'none' | 'mixup' | 'cutmix';
  lam: number;
  /** CutMix box [y0, y1, x0, x1) in pixels. */
  box?: [number, number, number, number];
}

const MIX_KEY = 0x6d697875; // 'mixu': the stream of these draws

/** Gamma(a, 1) by Marsaglia-Tsang (a < 1 boosted by U^(1/a)). */
function gamma(rng: Rng, a: number): number {
  if (a < 1) return gamma(rng, a + 1) * Math.pow(rng.uniform(), 1 / a);
  const d = a - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = rng.normal();
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = rng.uniform();
    if (u < 1 - 0.0331 * x ** 4 || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

export function betaSample(rng: Rng, a: number): number {
  const x = gamma(rng, a);
  const y = gamma(rng, a);
  return x / (x + y);
}

/** The mix of step `step` for images of side `size`. */
export function drawMix(cfg: MixupConfig, size: number, seed: number, step: number): MixDraw {
  const rng = new Rng(seed, MIX_KEY, step);
  if (!(cfg.mixup > 0 || cfg.cutmix > 0) || rng.uniform() >= cfg.prob) return { kind: 'none', lam: 1 };
  const useCutmix = cfg.cutmix > 0 && (cfg.mixup <= 0 || rng.uniform() < cfg.switchProb);
  const lam = betaSample(rng, useCutmix ? cfg.cutmix : cfg.mixup);
  if (!useCutmix) return { kind: 'mixup', lam };
  const ratio = Math.sqrt(1 - lam);
  const ch = Math.floor(size * ratio);
  const cw = Math.floor(size * ratio);
  const cy = rng.int(size);
  const cx = rng.int(size);
  const clip = (v: number) => Math.min(Math.max(v, 0), size);
  const box: [number, number, number, number] = [
    clip(cy - (ch >> 1)),
    clip(cy + (ch >> 1)),
    clip(cx - (cw >> 1)),
    clip(cx + (cw >> 1)),
  ];
  return { kind: 'cutmix', lam: 1 - ((box[1] - box[0]) * (box[3] - box[2])) / (size * size), box };
}

/** Mixes images [B, Ch, S, S] (CHW per image) with their reverse, in place. */
export function applyMix(images: Float32Array, batch: number, size: number, draw: MixDraw): void {
  if (draw.kind === 'none') return;
  const per = images.length / batch;
  const plane = size * size;
  const chans = per / plane;
  for (let b = 0; b < batch >> 1; b++) {
    const o = batch - 1 - b;
    const A = images.subarray(b * per, (b + 1) * per);
    const Bm = images.subarray(o * per, (o + 1) * per);
    if (draw.kind === 'mixup') {
      const lam = draw.lam;
      for (let i = 0; i < per; i++) {
        const a = A[i];
        const c = Bm[i];
        A[i] = a * lam + c * (1 - lam);
        Bm[i] = c * lam + a * (1 - lam);
      }
    } else {
      const [y0, y1, x0, x1] = draw.box!;
      for (let ch = 0; ch < chans; ch++)
        for (let y = y0; y < y1; y++)
          for (let x = x0; x < x1; x++) {
            const i = ch * plane + y * size + x;
            const t = A[i];
            A[i] = Bm[i];
            Bm[i] = t;
          }
    }
  }
}

/** Label-smoothed mixed targets [B, K] (labels mixed with their reverse). */
export function mixTargets(
  labels: ArrayLike<number>,
  numClasses: number,
  lam: number,
  smoothing: number,
): Float32Array {
  const B = labels.length;
  const K = numClasses;
  const off = smoothing / K;
  const on = 1 - smoothing + off;
  const t = new Float32Array(B * K);
  for (let b = 0; b < B; b++) {
    const y1 = labels[b];
    const y2 = labels[B - 1 - b];
    for (let k = 0; k < K; k++) t[b * K + k] = lam * (k === y1 ? on : off) + (1 - lam) * (k === y2 ? on : off);
  }
  return t;
}
