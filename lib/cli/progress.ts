// Progress display: a redrawn bar on a terminal, plain lines when not a TTY or under CI.
export interface ProgressState {
  epoch: number;
  epochs: number;
  step: number; // steps done in this epoch
  steps: number; // steps in this epoch
  loss: number;
  imagesPerSec: number;
  etaSec: number;
  /** What runs (evaluations: 'features', 'linear', 'finetune'); shown first when set. */
  phase?: string;
}

export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '--:--';
  const s = Math.round(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h ? `${h}:${String(m).padStart(2, '0')}:${String(r).padStart(2, '0')}` : `${m}:${String(r).padStart(2, '0')}`;
}

export class Progress {
  private readonly tty: boolean;
  private last = -Infinity;
  private drawn = false;

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    /** Plain lines at most every this many ms. */
    private readonly plainEveryMs = 10_000,
    /** Bar redraws at most every this many ms (a fast step would otherwise write to the terminal every step). */
    private readonly barEveryMs = 100,
  ) {
    this.tty = !!stream.isTTY && !process.env.CI;
  }

  update(p: ProgressState, force = false): void {
    const now = Date.now();
    // The bar is always drawn full at an epoch's end; plain lines keep their interval.
    const due = this.tty ? p.step === p.steps || now - this.last >= this.barEveryMs : now - this.last >= this.plainEveryMs;
    if (!force && !due) return;
    this.last = now;
    const where = p.phase === 'features' ? `features ${p.step}/${p.steps} images` : `epoch ${p.epoch + 1}/${p.epochs} step ${p.step}/${p.steps}`;
    const loss = Number.isFinite(p.loss) ? ` loss ${p.loss.toFixed(4)}` : '';
    const text = `${p.phase && p.phase !== 'features' ? `${p.phase} ` : ''}${where}${loss} ${p.imagesPerSec.toFixed(1)} img/s ETA ${formatDuration(p.etaSec)}`;
    if (this.tty) {
      const width = 24;
      const filled = Math.round((width * p.step) / Math.max(1, p.steps));
      const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
      this.stream.write(`\r[${bar}] ${text}\x1b[K`);
      this.drawn = true;
    } else {
      this.stream.write(text + '\n');
    }
  }

  /** Ends the bar's line before other output. */
  clear(): void {
    if (this.tty && this.drawn) this.stream.write('\n');
    this.drawn = false;
  }
}
