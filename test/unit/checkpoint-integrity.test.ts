// Checkpoint integrity (issue 10): CRC32C per tensor and of the training state, checked at load with
// the file and tensor named; older checkpoints without checksums load with a note; pruning never
// removes the checkpoint latest.json names.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadCheckpoint, saveCheckpoint, type TrainState } from '../../lib/io/checkpoint.js';
import { crc32c } from '../../lib/io/crc32c.js';
import { SafetensorsFile, writeSafetensors } from '../../lib/io/safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'medic-ckint-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const state = (step: number): TrainState => ({
  step,
  epoch: 0,
  dataPosition: { epoch: 0, index: 8 * step },
  seed: 1,
  config: { model: 'micro' },
  paramTable: [{ name: 'w', shape: [10, 10], offset: 0 }],
});
const ones = () => new Float32Array(100).fill(1);

describe('CRC32C', () => {
  it('matches the standard check values', () => {
    // RFC 3720 (iSCSI) appendix B.4 and the usual "123456789" check value
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });

  it("continues across chunks (any split gives the whole buffer's value)", () => {
    const b = Uint8Array.from({ length: 1000 }, (_, i) => (i * 131) & 255);
    for (const cut of [1, 7, 8, 9, 500, 999])
      expect(crc32c(b.subarray(cut), crc32c(b.subarray(0, cut)))).toBe(crc32c(b));
  });
});

describe('checkpoint checksums', () => {
  it('names the file and the tensor whose data changed', () => {
    const p = saveCheckpoint(join(dir, 'flip'), { state: state(3), params: ones(), m: ones(), v: ones() });
    const f = new SafetensorsFile(p);
    const at = f.info('adam.v').begin + 17;
    f.close();
    const b = readFileSync(p);
    b[at] ^= 0x10;
    writeFileSync(p, b);
    expect(() => loadCheckpoint(p)).toThrow(new RegExp(`${p}.*tensor 'adam\\.v'.*CRC32C`));
  });

  it('names the file when the training state changed', () => {
    const p = saveCheckpoint(join(dir, 'state'), { state: state(3), params: ones(), m: ones(), v: ones() });
    const b = readFileSync(p);
    const i = b.indexOf('\\"step\\":3');
    expect(i).toBeGreaterThan(0);
    b[i + '\\"step\\":'.length] = '7'.charCodeAt(0); // step 3 -> 7, still valid JSON
    writeFileSync(p, b);
    expect(() => loadCheckpoint(p)).toThrow(new RegExp(`${p}.*training state.*CRC32C`));
  });

  it('loads a checkpoint written before checksums, with a one-line note', () => {
    const p = join(dir, 'old.safetensors');
    const t = (d: Float32Array) => ({ dtype: 'F32' as const, shape: [100], data: d });
    writeSafetensors(
      p,
      { params: t(ones()), 'adam.m': t(ones()), 'adam.v': t(ones()) },
      { format: 'medic-native/checkpoint@1', medic: JSON.stringify(state(2)) },
    );
    const ck = loadCheckpoint(p);
    expect(ck.state.step).toBe(2);
    expect(ck.notes).toHaveLength(1);
    expect(ck.notes[0]).toMatch(/no checksums/);
    expect(ck.notes[0]).not.toContain('\n');
    const fresh = loadCheckpoint(
      saveCheckpoint(join(dir, 'new'), { state: state(2), params: ones(), m: ones(), v: ones() }),
    );
    expect(fresh.notes).toEqual([]);
  });
});

describe('pruning', () => {
  it('never removes the checkpoint latest.json names, nor a higher step it did not write', () => {
    const d = join(dir, 'prune');
    const z = ones();
    // a folder holding a longer run's checkpoints
    for (const s of [9, 10]) saveCheckpoint(d, { state: state(s), params: z, m: z, v: z });
    for (const s of [2, 4]) saveCheckpoint(d, { state: state(s), params: z, m: z, v: z });
    const latest = JSON.parse(readFileSync(join(d, 'latest.json'), 'utf8')) as { file: string };
    expect(latest.file).toBe('step-00000004.safetensors');
    expect(readdirSync(d).sort()).toEqual([
      'latest.json',
      'step-00000002.safetensors',
      'step-00000004.safetensors',
      'step-00000009.safetensors',
      'step-00000010.safetensors',
    ]);
    expect(loadCheckpoint(d).state.step).toBe(4);
  });
});
