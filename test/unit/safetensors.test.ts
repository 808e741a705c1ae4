import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { bf16ToF32, f16ToF32, f32ToBf16, SafetensorsFile, writeSafetensors } from '../../lib/io/safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'medic-st-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function rawFile(name: string, header: object, data: Uint8Array): string {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const p = join(dir, name);
  writeFileSync(p, Buffer.concat([len, json, data]));
  return p;
}

describe('safetensors', () => {
  it('writes and reads F32, BF16, I32 and U8 tensors with metadata', () => {
    const p = join(dir, 'a.safetensors');
    const w = new Float32Array([1, -2.5, 3e-3, 65504]);
    writeSafetensors(
      p,
      {
        w: { dtype: 'F32', shape: [2, 2], data: w },
        h: { dtype: 'BF16', shape: [4], data: f32ToBf16(w) },
        i: { dtype: 'I32', shape: [3], data: new Int32Array([1, -1, 7]) },
        u: { dtype: 'U8', shape: [2], data: new Uint8Array([0, 255]) },
      },
      { note: 'hi' },
    );
    using f = new SafetensorsFile(p);
    expect(f.names().sort()).toEqual(['h', 'i', 'u', 'w']);
    expect(f.metadata.note).toBe('hi');
    expect(f.info('w').shape).toEqual([2, 2]);
    expect(Array.from(f.readF32('w'))).toEqual(Array.from(w));
    const back = f.readF32('h');
    for (let k = 0; k < 4; k++) expect(Math.abs(back[k] - w[k])).toBeLessThanOrEqual(Math.abs(w[k]) * 2 ** -8);
    expect(Array.from(f.read('i') as Int32Array)).toEqual([1, -1, 7]);
    expect(() => f.readF32('i')).toThrow(/is I32, expected a float tensor/);
    expect(() => f.info('zz')).toThrow(/no tensor named 'zz'/);
  });

  it('converts half precision exactly', () => {
    expect(Array.from(f16ToF32(new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00])))).toEqual([
      1,
      -2,
      65504,
      2 ** -24,
      Infinity,
    ]);
    expect(Array.from(bf16ToF32(new Uint16Array([0x3f80, 0x4049])))).toEqual([1, 3.140625]);
    expect(Array.from(f32ToBf16(new Float32Array([1.00390625])))).toEqual([0x3f80]); // ties round to even
  });

  it('validates the header: dtype, byte ranges, overlaps, truncation', () => {
    const data = new Uint8Array(16);
    expect(
      () => new SafetensorsFile(rawFile('d.st', { x: { dtype: 'Q8', shape: [1], data_offsets: [0, 1] } }, data)),
    ).toThrow(/unsupported dtype "Q8"/);
    expect(
      () => new SafetensorsFile(rawFile('s.st', { x: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, data)),
    ).toThrow(/needs 12 bytes, its offsets span 8/);
    expect(
      () =>
        new SafetensorsFile(
          rawFile(
            'o.st',
            {
              x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
              y: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
            },
            data,
          ),
        ),
    ).toThrow(/overlap/);
    expect(
      () => new SafetensorsFile(rawFile('t.st', { x: { dtype: 'F32', shape: [8], data_offsets: [0, 32] } }, data)),
    ).toThrow(/truncated/);
    const p = join(dir, 'short.st');
    writeFileSync(p, Buffer.from([1, 2, 3]));
    expect(() => new SafetensorsFile(p)).toThrow(/shorter than the 8-byte header length/);
  });
});
