// The loss and optimiser ops of one MEDiC step: medic_loss over the distill head ([B, 1+V, Dt]) and
// the pixel decoder ([B, M, P]); AdamW and the global grad norm over a flat parameter buffer of
// ViT-Tiny (5.7M) or ViT-Base (86M) size; cross-entropy of a linear probe. All memory-bound: GB/s.
import type { Engine, Tensor } from '../../lib/engine/index.js';
import type { Preset } from '../presets.js';
import type { BenchCase, CaseList } from './types.js';

const PARAMS = { tiny: 5_717_416, base: 85_798_656 }; // timm vit_tiny/base_patch16_224 without the head

function filled(e: Engine, n: number, shape: number[], scale = 1): Tensor<'f32'> {
  const a = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    a[i] = ((s >>> 8) / 16777216 - 0.5) * scale;
  }
  return e.tensor(shape, 'f32', a);
}

function disposeAll(ts: (Tensor | null)[]): void {
  for (const t of ts) t?.dispose();
}

export const cases: CaseList = (p: Preset): BenchCase[] => {
  const { B, V, M, Dt, P } = p;
  const R = 1 + V;
  const n = PARAMS[p.name];
  return [
    {
      name: `medic_loss s [${B}x${R}x${Dt}] pred [${B}x${M}x${P}]`,
      family: 'loss',
      bytes: 4 * 3 * (B * R * Dt + B * M * P), // read s, t, pred, target; write ds, dpred
      setup(e) {
        const s = filled(e, B * R * Dt, [B, R, Dt], 3);
        const t = filled(e, B * R * Dt, [B, R, Dt], 3);
        const pred = filled(e, B * M * P, [B, M, P]);
        const target = filled(e, B * M * P, [B, M, P]);
        const losses = e.tensor([4]);
        const ds = e.tensor([B, R, Dt]);
        const dpred = e.tensor([B, M, P]);
        return {
          run: () => e.op('medic_loss', [s, t, pred, target], [losses, ds, dpred], { w_cls: 0.4 }),
          dispose: () => disposeAll([s, t, pred, target, losses, ds, dpred]),
        };
      },
    },
    {
      name: `adamw + clip [${(n / 1e6).toFixed(1)}M params]`,
      family: 'loss',
      bytes: 29 * n, // read g, mask, p, m, v; write p, m, v
      setup(e) {
        const g = filled(e, n, [n], 1e-2);
        const p0 = filled(e, n, [n], 0.1);
        const m = e.tensor([n]);
        const v = e.tensor([n]);
        const mask = e.tensor([n], 'u8', new Uint8Array(n).fill(1));
        const hyper = e.tensor([3], 'f32', new Float32Array([1e-4, 0.05, 10]));
        const norm = e.tensor([1], 'f32', new Float32Array([5]));
        return {
          run: () => e.op('adamw', [g, mask, hyper, norm], [p0, m, v], { max_norm: 3 }),
          dispose: () => disposeAll([g, p0, m, v, mask, hyper, norm]),
        };
      },
    },
    {
      name: `grad_norm [${(n / 1e6).toFixed(1)}M]`,
      family: 'loss',
      bytes: 4 * n,
      setup(e) {
        const g = filled(e, n, [n], 1e-2);
        const out = e.tensor([1]);
        return { run: () => e.op('grad_norm', [g], [out]), dispose: () => disposeAll([g, out]) };
      },
    },
    {
      name: `cross_entropy [${256 * B}x1000] smoothing 0.1`,
      family: 'loss',
      bytes: 4 * 2 * 256 * B * 1000,
      setup(e) {
        const rows = 256 * B;
        const z = filled(e, rows * 1000, [rows, 1000], 8);
        const y = e.tensor(
          [rows],
          'i32',
          Int32Array.from({ length: rows }, (_, i) => (i * 7919) % 1000),
        );
        const loss = e.tensor([1]);
        const dz = e.tensor([rows, 1000]);
        const correct = e.tensor([1]);
        return {
          run: () => e.op('cross_entropy', [z, y], [loss, dz, correct], { smoothing: 0.1 }),
          dispose: () => disposeAll([z, y, loss, dz, correct]),
        };
      },
    },
  ];
};
