import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import {
  checkConfigKeys,
  defaultConfig,
  flagOf,
  formatConfig,
  readConfigFile,
  resolveConfig,
  teacherFile,
  DIGITS_TEACHER,
  absolutePaths,
} from '../../lib/train/config.js';

const dir = mkdtempSync(join(tmpdir(), 'medic-cfg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('pretrain config', () => {
  it('merges defaults < file < flags and converts flag strings by type', () => {
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ epochs: 3, wCls: 1.0, mask: 'random' }));
    const c = resolveConfig(readConfigFile(file), { epochs: '7', batchSize: '64', knnK: '5,20' });
    expect(c.epochs).toBe(7); // flag beats file
    expect(c.wCls).toBe(1.0); // file beats default
    expect(c.mask).toBe('random');
    expect(c.batchSize).toBe(64);
    expect(c.knnK).toEqual([5, 20]);
    expect(c.wTok).toBe(defaultConfig.wTok);
    expect(formatConfig(c)).toMatch(/wCls\s+1\n/);
  });

  it('resolves the data-dependent auto values', () => {
    const digits = resolveConfig({}, {});
    expect([digits.imgSize, digits.patchSize, digits.hflip, digits.normalize]).toEqual([28, 7, 0, 'mnist']);
    const photos = resolveConfig({}, { data: '/some/folder' });
    expect([photos.imgSize, photos.patchSize, photos.hflip, photos.normalize]).toEqual([224, 16, 0.5, 'imagenet']);
    expect(resolveConfig({}, { data: 'idx:/x', imgSize: '32', patchSize: '4' }).imgSize).toBe(32);
  });

  it('names the flag, what was expected and what was found', () => {
    expect(flagOf('maskRatio')).toBe('--mask-ratio');
    expect(() => resolveConfig({}, { mask: 'grid' })).toThrow(/--mask: expected block, random or evolved, got "grid"/);
    expect(() => resolveConfig({}, { maskRatio: '1.5' })).toThrow(
      /--mask-ratio: expected a number in \(0, 1\), got 1.5/,
    );
    expect(() => resolveConfig({}, { epochs: 'ten' })).toThrow(/--epochs: expected a number, got "ten"/);
    expect(() => resolveConfig({}, { batchSize: '0' })).toThrow(/--batch-size: expected a positive integer, got 0/);
    expect(() => resolveConfig({}, { encoding: 'sparse2' })).toThrow(/--encoding: expected sparse or dense/);
    expect(() => resolveConfig({}, { model: 'huge' })).toThrow(
      /--model: expected one of micro, mini, tiny, small, base/,
    );
    expect(() => resolveConfig({}, { imgSize: '30' })).toThrow(
      /--img-size: expected a multiple of --patch-size 7, got 30/,
    );
    expect(() => resolveConfig({}, { seed: String(2 ** 31) })).toThrow(
      /--seed: expected an integer below 2\^31, got 2147483648/,
    );
    expect(resolveConfig({}, { workers: '0' }).workers).toBe(0);
    expect(() => resolveConfig({}, { hflip: '2' })).toThrow(/--hflip: expected a probability in \[0, 1\], got 2/);
    expect(() => resolveConfig({}, { wTok: '0', wCls: '0', wPix: '0' })).toThrow(/at least one loss weight/);
    expect(() => resolveConfig({}, { wPix: '-1' })).toThrow(/--w-pix: expected a non-negative number/);
    expect(() => resolveConfig({}, { teacher: join(dir, 'missing.safetensors') })).toThrow(
      /--teacher: expected an existing ViT checkpoint file \(or digits, random, auto\), got .*missing\.safetensors/,
    );
    expect(() => resolveConfig({}, { teacherPool: 'mean' })).toThrow(
      /--teacher-pool: expected auto, cls or avg, got "mean"/,
    );
  });

  it('--teacher auto: the bundled digits teacher where it fits (the bundled digits, 28 px, 7 px patches), else random', () => {
    expect(resolveConfig({}, {}).teacher).toBe('digits');
    expect(teacherFile(resolveConfig({}, {}))).toBe(DIGITS_TEACHER);
    expect(existsSync(DIGITS_TEACHER)).toBe(true);
    expect(resolveConfig({}, { patchSize: '4' }).teacher).toBe('random');
    expect(resolveConfig({}, { data: 'synthetic' }).teacher).toBe('random');
    expect(resolveConfig({}, { data: 'synthetic', teacher: 'digits', imgSize: '28', patchSize: '7' }).teacher).toBe(
      'digits',
    );
    expect(teacherFile(resolveConfig({}, { teacher: 'random' }))).toBeNull();
    // The keywords stay keywords in the saved config (a moved package still finds its teacher).
    expect(absolutePaths(resolveConfig({}, {})).teacher).toBe('digits');
  });

  it('rejects config files that are missing, malformed or hold unknown keys', () => {
    expect(() => readConfigFile(join(dir, 'none.json'))).toThrow(/--config .*none.json: no such file/);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{ epochs: 3 ');
    expect(() => readConfigFile(bad)).toThrow(/not valid JSON/);
    const unk = join(dir, 'unk.json');
    writeFileSync(unk, JSON.stringify({ epochz: 3 }));
    expect(() => readConfigFile(unk)).toThrow(/unknown setting 'epochz'/);
  });
});

describe('config keys at run time (JavaScript callers, parsed JSON, checkpoints)', () => {
  it('rejects an unknown key, naming it and where it came from', () => {
    expect(() => resolveConfig({}, { bogus: 1 } as never)).toThrow(/^flags: unknown setting 'bogus' \(known: data, /);
    expect(() => resolveConfig({ bogus: 1 } as never)).toThrow(/^config: unknown setting 'bogus'/);
    expect(() => checkConfigKeys({ epochs: 3, epochz: 3 }, 'checkpoint runs/x.safetensors')).toThrow(
      /^checkpoint runs\/x.safetensors: unknown setting 'epochz'/,
    );
    expect(() => checkConfigKeys({ ...defaultConfig }, 'checkpoint')).not.toThrow();
  });

  it('checks the device string', () => {
    expect(resolveConfig({}, { device: 'cuda:1' }).device).toBe('cuda:1');
    expect(() => resolveConfig({}, { device: 'tpu' })).toThrow(
      /--device: expected auto, cpu, cuda or cuda:N, got 'tpu'/,
    );
    expect(() => resolveConfig({ device: 3 } as never)).toThrow(/--device: expected auto, cpu, cuda or cuda:N, got 3/);
  });
});

describe('pretrain flags', () => {
  it('has one flag per config key', async () => {
    const { flags } = await import('../../lib/cli/pretrain.js');
    expect(flags.map((f) => f.key).sort()).toEqual(Object.keys(defaultConfig).sort());
  });
});
