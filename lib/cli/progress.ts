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
  private readonly started = new Set<string>();

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
    const due = this.tty
      ? p.step === p.steps || now - this.last >= this.barEveryMs
      : now - this.last >= this.plainEveryMs;
    if (!force && !due) return;
    this.last = now;
    // Evaluations (p.phase) count images or epochs of their own and may have no loss.
    const where =
      p.phase === 'features'
        ? [`features`, `${p.step}/${p.steps} images`]
        : [`${p.phase ? `${p.phase} ` : ''}epoch ${p.epoch + 1}/${p.epochs}`, `step ${p.step}/${p.steps}`];
    const loss = Number.isFinite(p.loss) ? `loss ${p.loss.toFixed(4)}` : '';
    const parts = [...where, loss, `${p.imagesPerSec.toFixed(1)} img/s`, `ETA ${formatDuration(p.etaSec)}`].filter(
      Boolean,
    );
    const priority = loss ? [2, 1, 4, 0, 3] : [1, 3, 0, 2];
    if (this.tty) this.draw(parts, p.step / Math.max(1, p.steps), priority);
    else this.stream.write(parts.join(' ') + '\n');
  }

  /** Progress of other work (an evaluation embedding images): a bar on a terminal, else one line at its start. */
  activity(what: string, done: number, total: number): void {
    const now = Date.now();
    if (this.tty) {
      if (done < total && now - this.last < this.barEveryMs) return;
      this.last = now;
      this.draw([what, `${done}/${total}`], done / Math.max(1, total), [1, 0]);
    } else if (!this.started.has(what)) {
      this.started.add(what);
      this.stream.write(`${what}\n`);
    }
  }

  /**
   * One redraw, fitted to the terminal: a line as wide as the terminal wraps, and every later \r redraw
   * then leaves the wrapped part behind. The last column stays free (some terminals wrap on it). The
   * bar shrinks first (down to 10 cells), then parts go, least important first (`priority` lists the
   * parts' indices, most important first), then the bar.
   */
  private draw(parts: string[], fraction: number, priority: number[] = parts.map((_, i) => i)): void {
    const room = this.stream.columns ? this.stream.columns - 1 : Infinity;
    let kept = priority.length;
    const textOf = (n: number) => parts.filter((_, i) => priority.slice(0, n).includes(i)).join(' ');
    while (kept > 1 && textOf(kept).length + 13 > room) kept--; // 13: the narrowest bar "[----------] "
    const text = textOf(kept);
    const barWidth = Math.min(24, room - text.length - 3);
    let line = text.slice(0, room);
    if (barWidth >= 10) {
      const filled = Math.round(barWidth * Math.min(1, Math.max(0, fraction)));
      line = `[${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}] ${text}`;
    }
    this.stream.write(`\r${line}\x1b[K`);
    this.drawn = true;
  }

  /** Ends the bar's line before other output. */
  clear(): void {
    if (this.tty && this.drawn) this.stream.write('\n');
    this.drawn = false;
  }
}
