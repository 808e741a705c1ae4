import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { checkParamTable, loadCheckpoint, saveCheckpoint, type TrainState } from '../../lib/io/checkpoint.js';
import { SafetensorsFile, writeSafetensors } from '../../lib/io/safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'medic-ckpt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const state = (step: number): TrainState => ({
  step,
  epoch: 1,
  dataPosition: { epoch: 1, index: 64 },
  seed: 42,
  config: { model: 'tiny' },
  paramTable: [{ name: 'w', shape: [2, 3], offset: 0 }],
});

describe('checkpoints', () => {
  it('round-trips parameters, optimizer state and training state, and follows latest.json', () => {
    const params = Float32Array.from({ length: 6 }, (_, i) => i * 0.5);
    const m = params.map((x) => x / 10);
    const v = params.map((x) => x * x);
    saveCheckpoint(join(dir, 'run', 'checkpoints'), { state: state(10), params, m, v });
    const ck = loadCheckpoint(join(dir, 'run')); // a run folder works too
    expect(ck.state).toEqual(state(10));
    expect(Array.from(ck.params)).toEqual(Array.from(params));
    expect(Array.from(ck.m)).toEqual(Array.from(m));
    expect(Array.from(ck.v)).toEqual(Array.from(v));
  });

  it('keeps only the newest checkpoints and leaves no temporary files', () => {
    const d = join(dir, 'keep');
    const z = new Float32Array(4);
    for (const s of [1, 2, 3, 4]) saveCheckpoint(d, { state: state(s), params: z, m: z, v: z }, { keep: 2 });
    expect(readdirSync(d).sort()).toEqual(['latest.json', 'step-00000003.safetensors', 'step-00000004.safetensors']);
    expect(JSON.parse(readFileSync(join(d, 'latest.json'), 'utf8')).step).toBe(4);
  });

  it('names the file and the problem for missing, truncated or foreign files', () => {
    expect(() => loadCheckpoint(join(dir, 'nope'))).toThrow(/nope: no such file or folder/);
    const d = join(dir, 'bad');
    const z = new Float32Array(1000);
    const p = saveCheckpoint(d, { state: state(1), params: z, m: z, v: z });
    const bytes = readFileSync(p);
    writeFileSync(p, bytes.subarray(0, bytes.length - 100));
    expect(() => loadCheckpoint(p)).toThrow(/past the end of the file .*truncated/);
    const foreign = join(dir, 'foreign.safetensors');
    writeSafetensors(foreign, { x: { dtype: 'F32', shape: [1], data: new Float32Array(1) } });
    expect(() => loadCheckpoint(foreign)).toThrow(/not a medic-native checkpoint/);
    writeFileSync(join(dir, 'garbage.safetensors'), 'hello world, not safetensors');
    expect(() => new SafetensorsFile(join(dir, 'garbage.safetensors'))).toThrow(/not a valid safetensors file/);
  });

  it('reports how a checkpoint does not fit the model', () => {
    const saved = [
      { name: 'a', shape: [4, 4], offset: 0 },
      { name: 'b', shape: [4], offset: 16 },
    ];
    expect(() => checkParamTable('x', saved, saved)).not.toThrow();
    expect(() =>
      checkParamTable('x', saved, [
        { name: 'a', shape: [8, 4], offset: 0 },
        { name: 'b', shape: [4], offset: 32 },
      ]),
    ).toThrow(/a: checkpoint has \[4,4\], the model needs \[8,4\]/);
    expect(() => checkParamTable('x', saved, [{ name: 'a', shape: [4, 4], offset: 0 }])).toThrow(/unexpected b/);
  });
});
