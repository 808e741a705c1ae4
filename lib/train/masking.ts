// Masks for masked image modeling: a new mask per sample, exactly M = floor(N * ratio) patches.
//
// block  (default): BEiT's block-wise generator, then random flips to hit M exactly.
// random (MAE):     uniform noise, argsort, keep the lowest N - M.
// Every mask is a pure function of (seed, step, sample), so resumed runs reproduce masks exactly.
// maskInputs() turns a mask into the index inputs the MEDiC step reads (lib/models/medic.ts), and
// stepMasks() does both for one training step: the only place masks are made.
import type { MedicGraph } from '../models/medic.js';
import { permutation, Rng, Stream } from '../util/rng.js';

export type MaskKind = 'block' | 'random';

export interface MaskConfig {
  kind: MaskKind;
  ratio: number;
  /** Grid of patches (rows, cols). */
  gridH: number;
  gridW: number;
  /** Block masking: smallest block area (BEiT: 16) and aspect range (0.3 .. 1/0.3). */
  minBlock?: number;
  minAspect?: number;
}

/** A batch of masks in the three layouts the graph consumes. */
export interface MaskBatch {
  B: number;
  N: number;
  M: number;
  V: number;
  /** [B, N], 1 = masked. */
  mask: Uint8Array;
  /** [B, V] visible patch indices, ascending (spatial order). */
  visible: Int32Array;
  /** [B, M] masked patch indices, ascending. */
  masked: Int32Array;
}

export function maskedCount(N: number, ratio: number): number {
  return Math.floor(N * ratio + 1e-9);
}

export function validateMaskConfig(c: MaskConfig): void {
  if (c.kind !== 'block' && c.kind !== 'random') throw new Error(`--mask: expected block or random, got '${c.kind}'`);
  if (!(c.ratio > 0 && c.ratio < 1)) throw new Error(`--mask-ratio: expected a number in (0, 1), got ${c.ratio}`);
  const N = c.gridH * c.gridW;
  const M = maskedCount(N, c.ratio);
  if (M < 1 || M >= N)
    throw new Error(
      `--mask-ratio ${c.ratio} masks ${M} of ${N} patches: at least one patch must be masked and one visible`,
    );
}

/** BEiT block masking on an H x W grid; returns a 0/1 mask with exactly `target` ones. */
export function blockMask(rng: Rng, H: number, W: number, target: number, minBlock = 16, minAspect = 0.3): Uint8Array {
  const mask = new Uint8Array(H * W);
  const logLo = Math.log(minAspect);
  const logHi = Math.log(1 / minAspect);
  let count = 0;
  while (count < target) {
    const maxPatches = target - count;
    let delta = 0;
    for (let attempt = 0; attempt < 10; attempt++) {
      const area = rng.range(minBlock, maxPatches);
      const aspect = Math.exp(rng.range(logLo, logHi));
      const h = Math.round(Math.sqrt(area * aspect));
      const w = Math.round(Math.sqrt(area / aspect));
      if (h < 1 || w < 1 || h >= H || w >= W) continue;
      const top = rng.int(H - h + 1);
      const left = rng.int(W - w + 1);
      let already = 0;
      for (let i = top; i < top + h; i++) for (let j = left; j < left + w; j++) already += mask[i * W + j];
      const fresh = h * w - already;
      if (fresh > 0 && fresh <= maxPatches) {
        for (let i = top; i < top + h; i++) for (let j = left; j < left + w; j++) mask[i * W + j] = 1;
        delta = fresh;
        break;
      }
    }
    if (delta === 0) break;
    count += delta;
  }
  // Hit the exact count: flip random unmasked (or masked) patches.
  if (count !== target) {
    const want = count < target ? 0 : 1;
    const pool: number[] = [];
    for (let i = 0; i < mask.length; i++) if (mask[i] === want) pool.push(i);
    const order = permutation(pool.length, rng);
    const flips = Math.abs(target - count);
    for (let k = 0; k < flips; k++) mask[pool[order[k]]] = 1 - want;
  }
  return mask;
}

/** MAE random masking: the M patches with the highest noise are masked. */
export function randomMask(rng: Rng, N: number, target: number): Uint8Array {
  const noise = new Float64Array(N);
  for (let i = 0; i < N; i++) noise[i] = rng.uniform();
  const order = Array.from({ length: N }, (_, i) => i).sort((a, b) => noise[a] - noise[b]);
  const mask = new Uint8Array(N);
  for (let k = N - target; k < N; k++) mask[order[k]] = 1;
  return mask;
}

/** Masks for one batch: sample b of step `step` uses the stream (seed, step, row0 + b), row0 the batch's offset in the global batch. */
export function makeMasks(c: MaskConfig, B: number, seed: number, step: number, row0 = 0): MaskBatch {
  validateMaskConfig(c);
  const N = c.gridH * c.gridW;
  const M = maskedCount(N, c.ratio);
  const V = N - M;
  const out: MaskBatch = {
    B,
    N,
    M,
    V,
    mask: new Uint8Array(B * N),
    visible: new Int32Array(B * V),
    masked: new Int32Array(B * M),
  };
  for (let b = 0; b < B; b++) {
    const rng = new Rng(seed, Stream.mask, step, row0 + b);
    const m =
      c.kind === 'block'
        ? blockMask(rng, c.gridH, c.gridW, M, c.minBlock ?? 16, c.minAspect ?? 0.3)
        : randomMask(rng, N, M);
    out.mask.set(m, b * N);
    let v = 0;
    let k = 0;
    for (let i = 0; i < N; i++) {
      if (m[i]) out.masked[b * M + k++] = i;
      else out.visible[b * V + v++] = i;
    }
  }
  return out;
}

/**
 * Every index input of the step from a mask [B, N] u8 (1 = masked, exactly M per row). Visible and
 * masked indices are in spatial (ascending) order.
 */
export function maskInputs(
  mask: Uint8Array,
  B: number,
  N: number,
  scored: MedicGraph['scored'],
): Record<string, Uint8Array | Int32Array> {
  const M = mask.subarray(0, N).reduce((a, b) => a + (b ? 1 : 0), 0);
  const V = N - M;
  const visible = new Int32Array(B * V);
  const masked = new Int32Array(B * M);
  for (let b = 0; b < B; b++) {
    let iv = 0;
    let im = 0;
    for (let n = 0; n < N; n++) {
      if (mask[b * N + n]) {
        if (im === M) throw new Error(`maskInputs: sample ${b} masks more than ${M} patches`);
        masked[b * M + im++] = n;
      } else {
        if (iv === V) throw new Error(`maskInputs: sample ${b} masks fewer than ${M} patches`);
        visible[b * V + iv++] = n;
      }
    }
  }
  const rows = (idx: Int32Array, K: number, withCls: boolean): Int32Array => {
    const w = K + (withCls ? 1 : 0);
    const out = new Int32Array(B * w);
    for (let b = 0; b < B; b++) for (let k = 0; k < K; k++) out[b * w + k + (withCls ? 1 : 0)] = idx[b * K + k] + 1;
    return out;
  };
  const out: Record<string, Uint8Array | Int32Array> = {
    mask,
    visible,
    masked,
    masked_rows: rows(masked, M, false),
    visible_rows: rows(visible, V, true),
  };
  if (scored === 'visible') out.scored_rows = out.visible_rows;
  if (scored === 'masked') out.scored_rows = rows(masked, M, true);
  return out;
}

/**
 * The mask inputs of training step `step`: makeMasks, then maskInputs for the graph's scored rows.
 * row0: the first sample's index in the global batch (a data-parallel rank's offset).
 */
export function stepMasks(
  c: MaskConfig,
  medic: Pick<MedicGraph, 'N' | 'scored'>,
  B: number,
  seed: number,
  step: number,
  row0 = 0,
): Record<string, Uint8Array | Int32Array> {
  return maskInputs(makeMasks(c, B, seed, step, row0).mask, B, medic.N, medic.scored);
}
