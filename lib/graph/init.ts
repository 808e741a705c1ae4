// Parameter initialisation from the param table's init specs, two ways:
//   - initProgramSpec(): a program of native init ops (init_normal / init_uniform / fill) over the
//     param windows of the flat buffers: the normal path, seeded by the counter-based native RNG;
//   - hostInit(): the same distributions drawn in TypeScript (the keyed generator of lib/util/rng.ts + Box-Muller), for
//     tools and tests that must not depend on the init kernels. The two draw
//     different numbers.
// Each param draws from its own stream, a hash of its name (paramStream): its initial values depend on
// (seed, name) only, not on which other params the graph registers before it. So the same seed gives
// the same random teacher and the same student blocks whether or not the decoder (w_pix = 0) or the
// dense mask token exist: runs of a loss-weight sweep differ only in what they sweep.
import type { CompiledBuffer, CompiledGraph, CompiledOp } from './compile.js';
import { Rng, Stream } from '../util/rng.js';
import type { InitSpec, ParamInfo } from './value.js';

/** A spec whose ops initialise every param of the graph (bound: params and/or frozen). */
export function initProgramSpec(
  cg: CompiledGraph,
  seed: number,
  groups: ('train' | 'frozen')[] = ['train', 'frozen'],
): { buffers: CompiledBuffer[]; ops: CompiledOp[] } {
  const buffers: CompiledBuffer[] = [];
  const ops: CompiledOp[] = [];
  const sizes = { train: cg.sizes.train, frozen: cg.sizes.frozen };
  for (const grp of groups) {
    if (!sizes[grp]) continue;
    const flat = grp === 'train' ? 'params' : 'frozen';
    buffers.push({ name: flat, shape: [sizes[grp]], dtype: 'f32', kind: 'bound', state: flat });
  }
  for (const p of cg.params) {
    if (!groups.includes(p.group)) continue;
    const name = `init:${p.name}`;
    buffers.push({
      name,
      shape: [p.numel],
      dtype: 'f32',
      kind: 'view',
      of: p.group === 'train' ? 'params' : 'frozen',
      offset: p.offset,
    });
    ops.push(initOp(p.init, name, seed, paramStream(p.name)));
  }
  return { buffers, ops };
}

function initOp(init: InitSpec, buf: string, seed: number, stream: number): CompiledOp {
  switch (init.kind) {
    case 'trunc_normal':
      return {
        op: 'init_normal',
        in: [],
        out: [buf],
        attrs: { mean: init.mean ?? 0, std: init.std, lo: init.lo ?? -2, hi: init.hi ?? 2, seed, stream },
      };
    case 'uniform':
      return { op: 'init_uniform', in: [], out: [buf], attrs: { lo: init.lo, hi: init.hi, seed, stream } };
    case 'zeros':
      return { op: 'fill', in: [], out: [buf], attrs: { value: 0 } };
    case 'ones':
      return { op: 'fill', in: [], out: [buf], attrs: { value: 1 } };
    case 'const':
      return { op: 'fill', in: [], out: [buf], attrs: { value: init.value } };
  }
}

/** Host-side initial values of the flat buffers (train and frozen), deterministic in `seed`. */
export function hostInit(
  params: ParamInfo[],
  sizes: { train: number; frozen: number },
  seed: number,
): { train: Float32Array; frozen: Float32Array } {
  const out = { train: new Float32Array(sizes.train), frozen: new Float32Array(sizes.frozen) };
  for (const p of params)
    fillInit(out[p.group].subarray(p.offset, p.offset + p.numel), p.init, seed, paramStream(p.name));
  return out;
}

export function fillInit(dst: Float32Array, init: InitSpec, seed: number, stream: number): void {
  const rng = new Rng(seed, Stream.init, stream);
  switch (init.kind) {
    case 'trunc_normal': {
      const mean = init.mean ?? 0;
      const lo = init.lo ?? -2;
      const hi = init.hi ?? 2;
      for (let i = 0; i < dst.length; i++) {
        let x: number;
        do x = mean + init.std * rng.normal();
        while (x < lo || x > hi);
        dst[i] = x;
      }
      return;
    }
    case 'uniform':
      for (let i = 0; i < dst.length; i++) dst[i] = init.lo + (init.hi - init.lo) * rng.uniform();
      return;
    case 'zeros':
      dst.fill(0);
      return;
    case 'ones':
      dst.fill(1);
      return;
    case 'const':
      dst.fill(init.value);
      return;
  }
}

/** A param's RNG stream: a 53-bit hash of its name (cyrb53), an integer the init ops' attrs hold exactly. */
export function paramStream(name: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < name.length; i++) {
    const ch = name.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (h2 & 0x1fffff) + (h1 >>> 0);
}
