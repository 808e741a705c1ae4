// The engine's contract with JS: tensors, eager ops, programs (planning, async steps), dispose and
// memory accounting, and clear errors for misuse.
import { readFileSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { Engine, type ProgramSpec } from '../../lib/engine/index.js';
import { loadBinding } from '../../lib/engine/loader.js';

const engine = Engine.create({ device: 'cpu', threads: 2 });
afterAll(() => engine.dispose());

describe('tensors', () => {
  it('round-trips data of every dtype and reports shape and dtype', () => {
    const f = engine.tensor([2, 3], 'f32', new Float32Array([1, 2, 3, 4, 5, 6]));
    const i = engine.tensor([4], 'i32', new Int32Array([-1, 0, 7, 2 ** 30]));
    const u = engine.tensor([3], 'u8', new Uint8Array([0, 255, 9]));
    const b = engine.tensor([2], 'bf16', new Uint16Array([0x3f80, 0xc000]));
    try {
      expect(f.shape).toEqual([2, 3]);
      expect(f.dtype).toBe('f32');
      expect(Array.from(f.read())).toEqual([1, 2, 3, 4, 5, 6]);
      expect(Array.from(i.read())).toEqual([-1, 0, 7, 2 ** 30]);
      expect(Array.from(u.read())).toEqual([0, 255, 9]);
      expect(Array.from(b.read())).toEqual([0x3f80, 0xc000]);
      expect(Array.from(engine.tensor([3]).read())).toEqual([0, 0, 0]); // zero-filled (disposed below with the engine check)
    } finally {
      for (const t of [f, i, u, b]) t.dispose();
    }
  });

  it('accepts typed arrays over a SharedArrayBuffer (zero-copy loader batches)', async () => {
    const shared = new Float32Array(new SharedArrayBuffer(4 * 8), 8, 4); // non-zero byte offset
    shared.set([1, 2, 3, 4]);
    using t = engine.tensor([4], 'f32', shared);
    expect(Array.from(t.read())).toEqual([1, 2, 3, 4]);
    using b = engine.tensor([4], 'f32', new Float32Array([10, 10, 10, 10]));
    using p = engine.program(smallSpec(b, 4));
    expect(Array.from((await p.run({ x: shared })).outputs.y)).toEqual([22, 24, 26, 28]);
  });

  it('rejects data of the wrong kind or length, naming what was expected', () => {
    expect(() => engine.tensor([2, 2], 'f32', new Float32Array(3))).toThrow(/expected 4 elements, got 3/);
    expect(() => engine.tensor([2], 'i32', new Float32Array(2))).toThrow(/Int32Array/);
    expect(() => engine.tensor([-1], 'f32')).toThrow(/non-negative integer/);
    expect(() => engine.tensor([2], 'f64' as never)).toThrow(/unknown dtype 'f64'/);
  });

  it('throws a clear error when a disposed tensor is used again', () => {
    const t = engine.tensor([2]);
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(() => t.read()).toThrow(/tensor was disposed/);
    expect(() => engine.op('fill', [], [t], { value: 1 })).toThrow(/disposed/);
    t.dispose(); // idempotent
  });
});

describe('eager ops', () => {
  it('runs an op and validates the call before running it', () => {
    using a = engine.tensor([2, 3], 'f32', new Float32Array([1, 2, 3, 4, 5, 6]));
    using b = engine.tensor([3], 'f32', new Float32Array([10, 20, 30]));
    using y = engine.tensor([2, 3]);
    engine.op('add', [a, b], [y]);
    expect(Array.from(y.read())).toEqual([11, 22, 33, 14, 25, 36]);
    expect(() => engine.op('add', [b, a], [y])).toThrow(/add: input 1 \[2, 3\] has more dims than input 0 \[3\]/);
    // @ts-expect-error an unknown op name fails tsc; from untyped JS the engine rejects it by name
    expect(() => engine.op('nope', [], [])).toThrow(/unknown op 'nope'/);
    expect(() => engine.op('add', [a], [y])).toThrow(/add: expected 2 inputs, got 1/);
    expect(() => engine.op('add', [a, { handle: {} } as never], [y])).toThrow(/add: input 1: expected a Tensor/);
  });

  it('allows only the elementwise in-place forms and rejects any other overlap', () => {
    using a = engine.tensor([2, 2], 'f32', new Float32Array([1, 2, 3, 4]));
    using b = engine.tensor([2], 'f32', new Float32Array([10, 20]));
    using st = engine.tensor([2]);
    engine.op('add', [a, b], [a]); // y = a: allowed
    expect(Array.from(a.read())).toEqual([11, 22, 13, 24]);
    expect(() => engine.op('gemm', [a, a], [a])).toThrow(/gemm: output 0 f32\[2, 2\] on cpu overlaps input 0 .*cannot write over that input/);
    expect(() =>
      engine.program({
        buffers: [
          { name: 'x', shape: [3], kind: 'input' },
          { name: 'lo', shape: [2], kind: 'view', of: 'x' },
          { name: 'hi', shape: [2], kind: 'view', of: 'x', offset: 1 },
        ],
        ops: [{ op: 'copy', in: ['lo'], out: ['hi'] }],
      }),
    ).toThrow(/op 0: copy: output 0 f32\[2\] on cpu overlaps input 0 f32\[2\] on cpu \(in place needs the very same tensor\)/);
    expect(() => engine.op('layernorm', [a], [a, st, st])).toThrow(/layernorm: output 0 .* overlaps input 0/);
    using y = engine.tensor([2, 2]);
    expect(() => engine.op('layernorm', [a], [y, st, st])).toThrow(/layernorm: output 2 f32\[2\] on cpu overlaps output 1/);
  });

  it('lists the whole op table', () => {
    const names = loadBinding('cpu').binding.opNames();
    for (const op of ['gemm', 'attention', 'attention_bwd', 'layernorm', 'medic_loss', 'adamw', 'patchify', 'init_normal'])
      expect(names).toContain(op);
  });
});

// y = (x + b) * 2 via add then copy(alpha=2): a two-op program with an input, a temp and an output.
function smallSpec(b: ReturnType<Engine['tensor']>, n: number): ProgramSpec {
  return {
    buffers: [
      { name: 'x', shape: [n], kind: 'input' },
      { name: 'b', shape: [n], kind: 'bound', tensor: b },
      { name: 't', shape: [n], kind: 'temp' },
      { name: 'y', shape: [n], kind: 'output' },
    ],
    ops: [
      { op: 'add', in: ['x', 'b'], out: ['t'] },
      { op: 'copy', in: ['t'], out: ['y'], attrs: { alpha: 2 } },
    ],
  };
}

describe('programs', () => {
  it('runs a step off the JS thread and returns only the outputs', async () => {
    using b = engine.tensor([4], 'f32', new Float32Array([1, 1, 1, 1]));
    using p = engine.program(smallSpec(b, 4));
    const r = await p.run({ x: new Float32Array([1, 2, 3, 4]) });
    expect(Array.from(r.outputs.y)).toEqual([4, 6, 8, 10]);
    expect(Object.keys(r.outputs)).toEqual(['y']);
    expect(r.ms).toBeGreaterThanOrEqual(0);
    const prof = await p.run({ x: new Float32Array(4) }, { profile: true });
    expect(prof.profile?.map((e) => e.op).sort()).toEqual(['add', 'copy']);
  });

  it('shares arena bytes between buffers whose lifetimes do not overlap', () => {
    // A chain x -> t1 -> t2 -> t3 -> y: t1 and t3 never live at the same time, so they can share.
    const n = 1024;
    const spec: ProgramSpec = {
      buffers: [
        { name: 'x', shape: [n], kind: 'input' },
        { name: 't1', shape: [n], kind: 'temp' },
        { name: 't2', shape: [n], kind: 'temp' },
        { name: 't3', shape: [n], kind: 'temp' },
        { name: 'y', shape: [n], kind: 'output' },
      ],
      ops: [
        { op: 'copy', in: ['x'], out: ['t1'] },
        { op: 'copy', in: ['t1'], out: ['t2'] },
        { op: 'copy', in: ['t2'], out: ['t3'] },
        { op: 'copy', in: ['t3'], out: ['y'] },
      ],
    };
    using p = engine.program(spec);
    const info = p.info();
    expect(info.naiveBytes).toBe(5 * 4096);
    expect(info.arenaBytes).toBeLessThanOrEqual(3 * 4096);
  });

  it('keeps an output that no op writes out of the shared bytes (the host reads it after the step)', async () => {
    // 'u' is declared first so it is placed first; t1 (live from op 0) would otherwise land on its bytes.
    const n = 64;
    using p = engine.program({
      buffers: [
        { name: 'u', shape: [n], kind: 'output' },
        { name: 'x', shape: [n], kind: 'input' },
        { name: 't1', shape: [n], kind: 'temp' },
        { name: 't2', shape: [n], kind: 'temp' },
        { name: 'y', shape: [n], kind: 'output' },
      ],
      ops: [
        { op: 'copy', in: ['x'], out: ['t1'], attrs: { alpha: 2 } },
        { op: 'copy', in: ['t1'], out: ['t2'], attrs: { alpha: 2 } },
        { op: 'copy', in: ['t2'], out: ['y'] },
      ],
    });
    p.write('u', new Float32Array(n).fill(7));
    const r = await p.run({ x: new Float32Array(n).fill(1) });
    expect(Array.from(r.outputs.y)).toEqual(new Array(n).fill(4));
    expect(Array.from(r.outputs.u)).toEqual(new Array(n).fill(7));
  });

  it('rejects a temp or output that an op reads before any op writes it', () => {
    const buffers = [
      { name: 'x', shape: [4], kind: 'input' as const },
      { name: 't', shape: [4], kind: 'temp' as const },
      { name: 'tv', shape: [2, 2], kind: 'view' as const, of: 't' },
      { name: 'y', shape: [4], kind: 'output' as const },
    ];
    expect(() => engine.program({ buffers, ops: [{ op: 'copy', in: ['tv'], out: ['y'] }, { op: 'copy', in: ['x'], out: ['t'] }] })).toThrow(
      /program: op 0 \(copy\) reads temp 't' before any op writes it/,
    );
    expect(() => engine.program({ buffers, ops: [{ op: 'add', in: ['x', 'y'], out: ['y'] }] })).toThrow(/op 0 \(add\) reads output 'y' before any op writes it/);
    // written first (through a view), then read: fine
    using ok = engine.program({ buffers, ops: [{ op: 'copy', in: ['x'], out: ['tv'] }, { op: 'copy', in: ['t'], out: ['y'] }] });
    expect(ok.info().ops).toBe(2);
  });

  it('supports views into a bound flat buffer (parameters as windows of one tensor)', async () => {
    using flat = engine.tensor([6], 'f32', new Float32Array([1, 2, 3, 4, 5, 6]));
    using p = engine.program({
      buffers: [
        { name: 'flat', shape: [6], kind: 'bound', tensor: flat },
        { name: 'w', shape: [2, 2], kind: 'view', of: 'flat', offset: 2 },
        { name: 'y', shape: [2, 2], kind: 'output' },
      ],
      ops: [{ op: 'copy', in: ['w'], out: ['y'] }],
    });
    const r = await p.run({});
    expect(Array.from(r.outputs.y)).toEqual([3, 4, 5, 6]);
  });

  it('rejects bad specs and bad inputs with errors that name the buffer', async () => {
    using b = engine.tensor([4]);
    expect(() =>
      engine.program({ buffers: [{ name: 'x', shape: [4], kind: 'input' }], ops: [{ op: 'copy', in: ['x'], out: ['zz'] }] }),
    ).toThrow(/unknown buffer 'zz'/);
    expect(() =>
      engine.program({
        buffers: [
          { name: 'x', shape: [4], kind: 'input' },
          { name: 'y', shape: [5], kind: 'output' },
        ],
        ops: [{ op: 'copy', in: ['x'], out: ['y'] }],
      }),
    ).toThrow(/op 0: copy: output 0 must have 4 elements/);
    expect(() => engine.program({ buffers: [{ name: 'v', shape: [8], kind: 'view', of: 'x' }], ops: [] })).toThrow(/unknown buffer 'x'/);
    using p = engine.program(smallSpec(b, 4));
    expect(() => p.run({})).toThrow(/input 'x' f32\[4\] was not given/);
    expect(() => p.run({ x: new Float32Array(3) })).toThrow(/expected 4 elements, got 3/);
    expect(() => p.run({ x: new Float32Array(4), extra: new Float32Array(1) })).toThrow(/'extra' is not an input/);
  });

  it('refuses a second run while one is in flight, and disposing a bound tensor first', async () => {
    using b = engine.tensor([4]);
    const p = engine.program(smallSpec(b, 4));
    const first = p.run({ x: new Float32Array(4) });
    expect(() => p.run({ x: new Float32Array(4) })).toThrow(/previous step has not finished/);
    // eager work and allocation wait for the step (it owns the device stream)
    expect(() => engine.tensor([2])).toThrow(/engine.tensor\(\): a program step is running/);
    expect(() => engine.op('fill', [], [b], { value: 1 })).toThrow(/engine.op\(\): a program step is running/);
    // another program of the same engine waits too (shared stream, workspace and bound tensors)
    using q = engine.program(smallSpec(b, 4));
    expect(() => q.run({ x: new Float32Array(4) })).toThrow(/another program's step is running on this engine/);
    expect(() => q.read('t')).toThrow(/program.read\(\): a program step is running on this engine/);
    expect(() => q.write('t', new Float32Array(4))).toThrow(/program.write\(\): a program step is running/);
    await first;
    await q.run({ x: new Float32Array(4) });
    expect(() => b.dispose()).toThrow(/bound to 2 live program/);
    q.dispose();
    expect(() => b.dispose()).toThrow(/bound to 1 live program/);
    p.dispose();
    expect(() => p.run({ x: new Float32Array(4) })).toThrow(/program was disposed/);
  });
});

describe('memory', () => {
  it('returns to its baseline after many steps and dispose', async () => {
    const e = Engine.create({ device: 'cpu', threads: 2 });
    try {
      const base = e.memory();
      expect(base.hostBytes).toBe(0);
      const n = 1 << 16;
      for (let round = 0; round < 3; round++) {
        const b = e.tensor([n]);
        const p = e.program(smallSpec(b, n));
        const x = new Float32Array(n).fill(round);
        for (let step = 0; step < 50; step++) await p.run({ x });
        const during = e.memory();
        expect(during.liveTensors).toBe(1);
        expect(during.livePrograms).toBe(1);
        expect(during.hostBytes).toBeGreaterThanOrEqual(4 * n + p.info().arenaBytes);
        p.dispose();
        b.dispose();
        expect(e.memory()).toMatchObject({ liveTensors: 0, livePrograms: 0, hostBytes: 0 });
      }
      expect(e.memory().peakHostBytes).toBeGreaterThan(0);
    } finally {
      e.dispose();
    }
  });

  // Large host buffers ask for transparent huge pages (native/core/engine.cpp, host_alloc): where the
  // kernel offers them on request ("madvise") or always, a fresh 32 MiB tensor is mostly backed by them.
  const thp = thpMode();
  it.skipIf(thp !== 'madvise' && thp !== 'always')(
    `backs a 32 MiB tensor with transparent huge pages (THP: ${thp ?? 'not available'})`,
    () => {
      const e = Engine.create({ device: 'cpu', threads: 1 });
      try {
        const before = anonHugeKiB();
        const t = e.tensor([8 << 20]); // 32 MiB of f32, zeroed (touched) by the allocation
        const grown = anonHugeKiB() - before;
        t.dispose();
        expect(grown).toBeGreaterThanOrEqual(16 * 1024);
      } finally {
        e.dispose();
      }
    },
  );

  it('engine.dispose() releases every child and leaves them unusable', () => {
    const e = Engine.create({ device: 'cpu', threads: 1 });
    const t = e.tensor([8]);
    const p = e.program({ buffers: [{ name: 'x', shape: [8], kind: 'input' }], ops: [] });
    e.dispose();
    expect(() => t.read()).toThrow(/disposed/);
    expect(() => p.info()).toThrow(/disposed/);
    expect(() => e.memory()).toThrow(/engine was disposed/);
  });
});

/** The bracketed mode of /sys/kernel/mm/transparent_hugepage/enabled, or null off Linux / without THP. */
function thpMode(): string | null {
  try {
    return /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1] ?? null;
  } catch {
    return null;
  }
}

/** This process's anonymous memory in transparent huge pages, KiB. */
function anonHugeKiB(): number {
  const m = /AnonHugePages:\s+(\d+) kB/.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'));
  if (!m) throw new Error('/proc/self/smaps_rollup has no AnonHugePages line');
  return Number(m[1]);
}
