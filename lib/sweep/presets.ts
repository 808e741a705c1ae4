// The paper's comparisons as presets (docs/METHOD.md, Losses and Masking), runnable on any data:
//   ablation  which losses: token / token+pixel / token+CLS / all three (the paper's kNN ablation:
//             68.6 / 71.4 / 72.3 / 73.9 on ImageNet-1k), each with the default encoding (sparse, the
//             published MEDiC) and the default weights for the terms that are on;
//   masking   block 0.4 (the default), random 0.4, random 0.75, evolved em, evolved hc (the paper's
//             finding: evolved masking does not beat block masking under a strong teacher);
//   weights   the loss-weight sensitivity, one weight at a time around the defaults (w_cls 0.4,
//             w_pix 1): w_cls in {0.1, 0.2, 0.4, 1, 2} and w_pix in {0.5, 1, 2}.
import type { SweepCell, SweepSpec } from './grid.js';

export const presetNames = ['ablation', 'masking', 'weights'] as const;
export type PresetName = (typeof presetNames)[number];

const ablation: SweepCell[] = [
  { name: 'token', overrides: { wTok: 1, wCls: 0, wPix: 0 } },
  { name: 'token+pixel', overrides: { wTok: 1, wCls: 0, wPix: 1 } },
  { name: 'token+cls', overrides: { wTok: 1, wCls: 0.4, wPix: 0 } },
  { name: 'token+cls+pixel', overrides: { wTok: 1, wCls: 0.4, wPix: 1 } },
];

const masking: SweepCell[] = [
  { name: 'block-0.4', overrides: { mask: 'block', maskRatio: 0.4 } },
  { name: 'random-0.4', overrides: { mask: 'random', maskRatio: 0.4 } },
  { name: 'random-0.75', overrides: { mask: 'random', maskRatio: 0.75 } },
  {
    name: 'evolved-em',
    overrides: { mask: 'evolved', maskRatio: 0.75, maskCluster: 'em' },
  },
  {
    name: 'evolved-hc',
    overrides: { mask: 'evolved', maskRatio: 0.75, maskCluster: 'hc' },
  },
];

const weights: SweepCell[] = [
  ...[0.1, 0.2, 0.4, 1, 2].map((w) => ({ name: `wCls=${w}`, overrides: { wCls: w, wPix: 1 } })),
  ...[0.5, 2].map((w) => ({ name: `wPix=${w}`, overrides: { wCls: 0.4, wPix: w } })),
];

export function presetSpec(name: string, seeds: number): SweepSpec {
  switch (name) {
    case 'ablation':
      return { source: 'preset ablation', base: {}, cells: ablation, seeds, plot: { kind: 'bars' } };
    case 'masking':
      return { source: 'preset masking', base: {}, cells: masking, seeds, plot: { kind: 'bars' } };
    case 'weights':
      return {
        source: 'preset weights',
        base: {},
        cells: weights,
        seeds,
        plot: { kind: 'curves', keys: ['wCls', 'wPix'] },
      };
    default:
      throw new Error(`--preset: expected one of ${presetNames.join(', ')}, got '${name}'`);
  }
}
