// A sweep's table: per cell, the mean and sample standard deviation over seeds of the headline kNN
// (the largest k), beside the random-init twin's, the same for the linear probe when the runs made one
// (--set eval=knn,linear), and how many repetitions diverged.
import { hasLinear, meanStdText } from '../report/sweep.js';
import type { SweepSpec } from './grid.js';
import type { RepResult } from './run.js';

export interface CellSummary {
  cell: string;
  overrides: Record<string, unknown>;
  n: number;
  diverged: number;
  knnMean: number | null;
  knnStd: number | null;
  knnRandomMean: number | null;
  knnValues: number[];
  /** Linear-probe top-1 over seeds (null: no run of the cell probed). */
  linearMean: number | null;
  linearStd: number | null;
  linearRandomMean: number | null;
}

export interface SweepSummary {
  source: string;
  k: number;
  seeds: number;
  cells: CellSummary[];
  /** max - min of the cell means: the sensitivity of the result to what the sweep varies. */
  spread: number | null;
  best: string | null;
}

export function summarize(spec: SweepSpec, results: RepResult[], k: number): SweepSummary {
  const cells = spec.cells.map((cell): CellSummary => {
    const reps = results.filter((r) => r.cell === cell.name);
    const knnValues = reps.flatMap((r) => (r.status === 'done' && r.knn ? [r.knn[k]] : []));
    const randoms = reps.flatMap((r) => (r.knnRandom ? [r.knnRandom[k]] : []));
    const { mean, std } = meanStd(knnValues);
    return {
      cell: cell.name,
      overrides: cell.overrides,
      n: reps.length,
      diverged: reps.filter((r) => r.status === 'diverged').length,
      knnMean: mean,
      knnStd: std,
      knnRandomMean: meanStd(randoms).mean,
      knnValues,
      ...linearOf(reps),
    };
  });
  const means = cells.flatMap((c) => (c.knnMean === null ? [] : [c.knnMean]));
  const best = cells.reduce<CellSummary | null>(
    (b, c) => (c.knnMean !== null && (b === null || c.knnMean > b.knnMean!) ? c : b),
    null,
  );
  return {
    source: spec.source,
    k,
    seeds: spec.seeds,
    cells,
    spread: means.length ? Math.max(...means) - Math.min(...means) : null,
    best: best?.cell ?? null,
  };
}

function linearOf(reps: RepResult[]): Pick<CellSummary, 'linearMean' | 'linearStd' | 'linearRandomMean'> {
  const done = reps.filter((r) => r.status === 'done');
  const probe = meanStd(done.flatMap((r) => (typeof r.linear === 'number' ? [r.linear] : [])));
  const twin = meanStd(done.flatMap((r) => (typeof r.linearRandom === 'number' ? [r.linearRandom] : [])));
  return { linearMean: probe.mean, linearStd: probe.std, linearRandomMean: twin.mean };
}

/** Mean and sample standard deviation (n - 1; null for fewer than two values). */
export function meanStd(xs: number[]): { mean: number | null; std: number | null } {
  if (!xs.length) return { mean: null, std: null };
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  if (xs.length < 2) return { mean, std: null };
  const v = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1);
  return { mean, std: Math.sqrt(v) };
}

const pct = (x: number | null) => (x === null ? 'n/a' : (100 * x).toFixed(2));

/** The table as in a paper: kNN mean +- std over seeds, per cell. */
export function sweepMarkdown(s: SweepSummary): string {
  const lin = hasLinear(s);
  const head = lin
    ? `| cell | kNN k=${s.k} (%) | random init (%) | linear probe (%) | random init (%) | runs | diverged |\n| --- | --- | --- | --- | --- | --- | --- |`
    : `| cell | kNN k=${s.k} (%) | random init (%) | runs | diverged |\n| --- | --- | --- | --- | --- |`;
  const rows = s.cells.map((c) => {
    const knn = meanStdText(c.knnMean, c.knnStd);
    const probe = lin ? ` ${meanStdText(c.linearMean, c.linearStd)} | ${pct(c.linearRandomMean)} |` : '';
    return `| ${c.cell} | ${knn} | ${pct(c.knnRandomMean)} |${probe} ${c.n} | ${c.diverged} |`;
  });
  const foot =
    s.spread === null ? '' : `\nSpread (max - min of the cell means): ${pct(s.spread)} points; best cell: ${s.best}.`;
  return `# Sweep: ${s.source}\n\n${s.seeds} seed(s) per cell; mean ± sample standard deviation over seeds.\n\n${head}\n${rows.join('\n')}\n${foot}\n`;
}
