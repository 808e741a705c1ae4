// `medic-native sweep` end to end on tiny runs: one folder per cell and seed, the table, the report,
// and resuming (finished runs skipped, a run whose record is missing continued from its checkpoint).
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { jsonLines, runCli } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'medic-sweep-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base = {
  data: 'synthetic:160:4',
  imgSize: 16,
  patchSize: 4,
  model: 'micro',
  teacherDim: 32,
  teacherDepth: 1,
  teacherHeads: 2,
  decoderDim: 16,
  decoderDepth: 1,
  decoderHeads: 2,
  batchSize: 16,
  epochs: 1,
  stepsPerEpoch: 2,
  warmupEpochs: 0,
  workers: 1,
  threads: 2,
  knnLimit: 64,
};

describe('medic-native sweep', () => {
  it('runs every cell and seed, writes the table, and resumes by skipping finished runs', async () => {
    const grid = join(dir, 'grid.json');
    writeFileSync(grid, JSON.stringify({ base, grid: { wPix: [0, 1] }, seeds: 2 }));
    const out = join(dir, 'sw');
    const r = await runCli(['sweep', grid, '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const ev = jsonLines(r.stdout);
    expect(ev.filter((e) => e.event === 'run').map((e) => [e.cell, e.seed, e.how])).toEqual([
      ['wPix=0', 0, 'new'],
      ['wPix=0', 1, 'new'],
      ['wPix=1', 0, 'new'],
      ['wPix=1', 1, 'new'],
    ]);
    const results = ev.filter((e) => e.event === 'result') as {
      cell: string;
      seed: number;
      knn: Record<string, number>;
    }[];
    for (const res of results)
      expect(existsSync(join(out, res.cell, `seed-${res.seed}`, 'student-timm.safetensors'))).toBe(true);
    // the table's mean is the mean of the runs' kNN at the largest k
    const j = JSON.parse(readFileSync(join(out, 'sweep.json'), 'utf8'));
    const knn = (cell: string) => results.filter((x) => x.cell === cell).map((x) => x.knn['20']);
    const cellMean = (cell: string) => j.summary.cells.find((c: { cell: string }) => c.cell === cell).knnMean;
    expect(cellMean('wPix=1')).toBeCloseTo((knn('wPix=1')[0] + knn('wPix=1')[1]) / 2, 12);
    expect(readFileSync(join(out, 'sweep.md'), 'utf8')).toMatch(/\| wPix=0 \| \d+\.\d\d ± \d+\.\d\d \|/);
    expect(readFileSync(join(out, 'sweep.html'), 'utf8')).toMatch(/<svg/);

    // again: everything is skipped and the table is the same
    rmSync(join(out, 'wPix=1', 'seed-1', 'cell.json')); // as if killed after the run's checkpoint
    const again = await runCli(['sweep', grid, '--out', out, '--json']);
    expect(again.code, again.stderr).toBe(0);
    const hows = jsonLines(again.stdout)
      .filter((e) => e.event === 'run')
      .map((e) => e.how);
    expect(hows).toEqual(['skipped', 'skipped', 'skipped', 'resumed']);
    const j2 = JSON.parse(readFileSync(join(out, 'sweep.json'), 'utf8'));
    expect(j2.summary.cells).toEqual(j.summary.cells);
  });

  it('refuses a preset cell the config cannot run before any run starts, naming the cell', async () => {
    const r = await runCli(['sweep', '--preset', 'ablation', '--set', 'maskRatio=2', '--out', join(dir, 'bad')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/preset ablation, cell 'token': --mask-ratio/);
    expect(existsSync(join(dir, 'bad', 'token'))).toBe(false);
  });
});
