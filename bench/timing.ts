// Clocks and the median-of-runs timer shared by the benches. 'cpu' is the process's CPU time (user +
// system), for a machine shared with other work, where wall time says little; 'wall' is elapsed time.
import type { Engine } from '../lib/engine/index.js';
import type { BenchCase } from './cases/types.js';

export type ClockName = 'wall' | 'cpu';

/** --clock's value checked, with the flag named. */
export function clockName(value: string): ClockName {
  if (value !== 'wall' && value !== 'cpu') throw new Error(`--clock: expected wall or cpu, got '${value}'`);
  return value;
}

/** A clock in milliseconds. */
export function clockOf(name: ClockName): () => number {
  if (name === 'wall') return () => performance.now();
  return () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e3;
  };
}

/** Median time of c's run() over >= minMs (wall) and >= minRuns runs, after a warm-up: ms on `clock`. */
export function timeCase(
  engine: Engine,
  c: BenchCase,
  minMs: number,
  minRuns: number,
  clock: ClockName = 'wall',
): number {
  const now = clockOf(clock);
  const inst = c.setup(engine);
  try {
    inst.run(); // warm-up (page faults, packing buffers)
    const times: number[] = [];
    const start = performance.now();
    while (times.length < minRuns || performance.now() - start < minMs) {
      const t0 = now();
      inst.run();
      times.push(now() - t0);
    }
    times.sort((a, b) => a - b);
    return times[times.length >> 1];
  } finally {
    inst.dispose();
  }
}
