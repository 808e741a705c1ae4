// Rendering of an evaluation run's events: text with a progress bar (plain lines off a terminal) or
// JSON lines (--json), the same shapes as pretraining's; and Ctrl-C handling (finish the step, write a
// checkpoint, exit 130; a second Ctrl-C quits at once).
import { formatEpoch, type EvalEvents } from '../eval/protocols.js';
import { Progress } from './progress.js';

export function cliEvents(json: boolean): { events: EvalEvents; progress: Progress } {
  const progress = new Progress(process.stderr);
  const out = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
  const events: EvalEvents = json
    ? {
        info: (message) => out({ event: 'info', message }),
        warn: (message) => out({ event: 'warning', message }),
        progress: () => {},
        metrics: (m) => out({ event: 'step', ...m }),
        epoch: (e) => out({ event: 'eval', ...e }),
      }
    : {
        info: (line) => {
          progress.clear();
          console.log(line);
        },
        warn: (line) => {
          progress.clear();
          console.warn(`warning: ${line}`);
        },
        progress: (p) => progress.update(p),
        metrics: () => {},
        epoch: (e) => {
          progress.clear();
          console.log(formatEpoch(e));
        },
      };
  return { events, progress };
}

/** Runs fn with SIGINT turned into a polite stop request. */
export async function withInterrupt<T>(events: EvalEvents, fn: (interrupted: () => boolean) => Promise<T>): Promise<T> {
  let stop = false;
  const onSigint = () => {
    if (stop) process.exit(130);
    stop = true;
    events.warn('interrupt: finishing this step, then writing a checkpoint (Ctrl-C again to quit at once)');
  };
  process.on('SIGINT', onSigint);
  try {
    return await fn(() => stop);
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/** A number flag, or undefined when absent; a clear error naming the flag otherwise. */
export function num(
  flag: string,
  v: string | undefined,
  opts: { integer?: boolean; min?: number } = {},
): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (
    v.trim() === '' ||
    !Number.isFinite(n) ||
    (opts.integer && !Number.isInteger(n)) ||
    (opts.min !== undefined && n < opts.min)
  )
    throw new Error(
      `${flag}: expected ${opts.integer ? 'an integer' : 'a number'}${opts.min !== undefined ? ` >= ${opts.min}` : ''}, got '${v}'`,
    );
  return n;
}
