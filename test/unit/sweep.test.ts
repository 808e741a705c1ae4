// Sweep specs (grid files, presets), the statistics of the table, and the markdown it prints.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { parseSets } from '../../lib/cli/sweep.js';
import {
  meanStd,
  parseGrid,
  planSweep,
  presetSpec,
  readGridFile,
  summarize,
  sweepMarkdown,
  type RepResult,
} from '../../lib/sweep/index.js';

const dir = mkdtempSync(join(tmpdir(), 'medic-sweep-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('grid files', () => {
  it('a grid is the cartesian product, named by its settings', () => {
    const s = parseGrid({ base: { epochs: 3 }, grid: { wCls: [0.1, 0.4], wPix: [0, 1, 2] }, seeds: 2 }, 'g.json');
    expect(s.cells.map((c) => c.name)).toEqual([
      'wCls=0.1,wPix=0',
      'wCls=0.1,wPix=1',
      'wCls=0.1,wPix=2',
      'wCls=0.4,wPix=0',
      'wCls=0.4,wPix=1',
      'wCls=0.4,wPix=2',
    ]);
    expect(s.cells[4].overrides).toEqual({ wCls: 0.4, wPix: 1 });
    expect(s.seeds).toBe(2);
    expect(s.plot).toEqual({ kind: 'bars' });
    expect(parseGrid({ grid: { wCls: [0.1, 1] } }, 'g').plot).toEqual({ kind: 'curves', keys: ['wCls'] });
  });

  it('a runs list keeps its names and order', () => {
    const s = parseGrid({ runs: [{ name: 'tok', wCls: 0, wPix: 0 }, { mask: 'random' }] }, 'r.json');
    expect(s.cells).toEqual([
      { name: 'tok', overrides: { wCls: 0, wPix: 0 } },
      { name: 'mask=random', overrides: { mask: 'random' } },
    ]);
  });

  it('bad files are refused naming the file and what is wrong', () => {
    const path = join(dir, 'bad.json');
    writeFileSync(path, '{"grid": ');
    expect(() => readGridFile(path)).toThrow(/bad\.json: not valid JSON/);
    expect(() => readGridFile(join(dir, 'none.json'))).toThrow(/none\.json: no such file/);
    expect(() => parseGrid({ grid: { wCsl: [1] } }, 'g.json')).toThrow(/g\.json: grid: unknown setting 'wCsl'/);
    expect(() => parseGrid({ grid: { wCls: [] } }, 'g.json')).toThrow(/grid key 'wCls' needs a non-empty list/);
    expect(() => parseGrid({ grid: { wCls: [1] }, runs: [{}] }, 'g.json')).toThrow(/exactly one of "grid"/);
    expect(() => parseGrid({ runs: [{ out: 'x' }] }, 'g.json')).toThrow(/runs\[0\]: 'out' is set by the sweep/);
    expect(() => parseGrid({ runs: [{ name: 'a' }, { name: 'a' }] }, 'g.json')).toThrow(/two runs are named 'a'/);
    expect(() => parseGrid({ grid: { wCls: [1] }, seeds: 0 }, 'g.json')).toThrow(/"seeds" must be a positive integer/);
    expect(() => parseGrid({ grid: { wCls: [1] }, sedes: 2 }, 'g.json')).toThrow(/unknown field 'sedes'/);
  });

  it('every cell is validated before anything runs, naming the cell', () => {
    const s = parseGrid(
      {
        runs: [
          { name: 'ok', wCls: 1 },
          { name: 'broken', maskRatio: 1.5 },
        ],
      },
      'g.json',
    );
    expect(() => planSweep(s, { out: dir, fixed: {} })).toThrow(
      /cell 'broken': --mask-ratio: expected a number in \(0, 1\)/,
    );
  });

  it('plans one folder per cell and seed, seeds counting up from the base seed', () => {
    const s = parseGrid({ base: { seed: 7 }, grid: { wPix: [0, 1] }, seeds: 2 }, 'g.json');
    const reps = planSweep(s, { out: '/tmp/sw', fixed: { epochs: 2 } });
    expect(reps.map((r) => [r.folder, r.config.seed, r.config.wPix, r.config.epochs])).toEqual([
      ['/tmp/sw/wPix=0/seed-7', 7, 0, 2],
      ['/tmp/sw/wPix=0/seed-8', 8, 0, 2],
      ['/tmp/sw/wPix=1/seed-7', 7, 1, 2],
      ['/tmp/sw/wPix=1/seed-8', 8, 1, 2],
    ]);
  });

  it('--set parses settings by the type of their default and refuses unknown keys', () => {
    expect(parseSets(['epochs=5', 'data=idx:./x', 'knnK=5,10'])).toEqual({ epochs: 5, data: 'idx:./x', knnK: [5, 10] });
    expect(() => parseSets(['epochs=five'])).toThrow(/'epochs' expects a number/);
    expect(() => parseSets(['bogus=1'])).toThrow(/unknown setting 'bogus'/);
    expect(() => parseSets(['epochs'])).toThrow(/expected key=value/);
  });
});

describe('presets', () => {
  it("ablation: the paper's four loss combinations", () => {
    const s = presetSpec('ablation', 3);
    expect(s.cells.map((c) => [c.name, c.overrides.wTok, c.overrides.wCls, c.overrides.wPix])).toEqual([
      ['token', 1, 0, 0],
      ['token+pixel', 1, 0, 1],
      ['token+cls', 1, 0.4, 0],
      ['token+cls+pixel', 1, 0.4, 1],
    ]);
  });

  it('weights: one weight at a time around the defaults', () => {
    const s = presetSpec('weights', 3);
    expect(s.cells.map((c) => c.name)).toEqual([
      'wCls=0.1',
      'wCls=0.2',
      'wCls=0.4',
      'wCls=1',
      'wCls=2',
      'wPix=0.5',
      'wPix=2',
    ]);
    expect(s.plot).toEqual({ kind: 'curves', keys: ['wCls', 'wPix'] });
    expect(() => presetSpec('bogus', 1)).toThrow(/--preset: expected one of ablation, masking, weights/);
  });
});

describe('the table', () => {
  it('mean and sample standard deviation', () => {
    expect(meanStd([])).toEqual({ mean: null, std: null });
    expect(meanStd([0.5])).toEqual({ mean: 0.5, std: null });
    const { mean, std } = meanStd([0.6, 0.7, 0.8]);
    expect(mean).toBeCloseTo(0.7, 12);
    expect(std).toBeCloseTo(0.1, 12);
  });

  it('summarises per cell: diverged runs are counted, not averaged; spread and best cell', () => {
    const spec = parseGrid({ grid: { wCls: [0.1, 1] }, seeds: 2 }, 'g');
    const rep = (cell: string, seed: number, knn: number | null, status: RepResult['status'] = 'done'): RepResult => ({
      cell,
      seed,
      status,
      knn: knn === null ? null : { 10: knn - 0.01, 20: knn },
      knnRandom: { 10: 0.3, 20: 0.32 },
      seconds: 1,
      folder: '',
    });
    const s = summarize(
      spec,
      [rep('wCls=0.1', 0, 0.7), rep('wCls=0.1', 1, 0.74), rep('wCls=1', 0, 0.6), rep('wCls=1', 1, null, 'diverged')],
      20,
    );
    expect(s.cells[0].knnMean).toBeCloseTo(0.72, 12);
    expect(s.cells[0].knnStd).toBeCloseTo(Math.sqrt(0.0008), 12);
    expect(s.cells[1]).toMatchObject({ knnMean: 0.6, knnStd: null, diverged: 1, n: 2 });
    expect(s.spread).toBeCloseTo(0.12, 12);
    expect(s.best).toBe('wCls=0.1');
    const md = sweepMarkdown(s);
    expect(md).toContain('| wCls=0.1 | 72.00 ± 2.83 | 32.00 | 2 | 0 |');
    expect(md).toContain('| wCls=1 | 60.00 | 32.00 | 2 | 1 |');
    expect(md).toContain('Spread (max - min of the cell means): 12.00 points; best cell: wCls=0.1.');
    expect(md).not.toContain('linear probe'); // no run probed: no probe columns
  });

  it('adds the linear probe (mean ± std and its twin) when the runs made one (--set eval=knn,linear)', () => {
    const spec = parseGrid({ grid: { wCls: [0.1, 1] }, seeds: 2 }, 'g');
    const rep = (cell: string, seed: number, linear: number | null): RepResult => ({
      cell,
      seed,
      status: 'done',
      knn: { 20: 0.7 },
      knnRandom: { 20: 0.3 },
      linear,
      linearRandom: linear === null ? null : 0.5,
      seconds: 1,
      folder: '',
    });
    const s = summarize(
      spec,
      [rep('wCls=0.1', 0, 0.8), rep('wCls=0.1', 1, 0.84), rep('wCls=1', 0, null), rep('wCls=1', 1, null)],
      20,
    );
    expect(s.cells[0]).toMatchObject({ linearRandomMean: 0.5 });
    expect(s.cells[0].linearMean).toBeCloseTo(0.82, 12);
    expect(s.cells[1]).toMatchObject({ linearMean: null, linearStd: null });
    const md = sweepMarkdown(s);
    expect(md).toContain(
      '| cell | kNN k=20 (%) | random init (%) | linear probe (%) | random init (%) | runs | diverged |',
    );
    expect(md).toContain('| wCls=0.1 | 70.00 ± 0.00 | 30.00 | 82.00 ± 2.83 | 50.00 | 2 | 0 |');
    expect(md).toContain('| wCls=1 | 70.00 ± 0.00 | 30.00 | n/a | n/a | 2 | 0 |');
  });
});
