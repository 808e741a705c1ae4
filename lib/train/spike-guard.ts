// The divergence guard: a step whose loss or gradient norm is not finite, or far above its recent
// running median, means the weights it was computed from have already left the basin. The loop stops
// there and keeps the last checkpoint whose state a later step showed healthy.
//
// Rule: with at least MIN_HISTORY earlier healthy steps, a value above `factor` x the median of the last
// WINDOW healthy values (loss and grad norm each) is a spike. Healthy training moves by a few x over
// 50 steps at most (warmup raises the grad norm by about that); a diverging one jumps by 1e3 to 1e30.
export const SPIKE_WINDOW = 50;
export const SPIKE_MIN_HISTORY = 2;

export interface SpikeGuardState {
  loss: number[];
  gradNorm: number[];
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

const fmt = (x: number) => (Number.isFinite(x) ? x.toPrecision(3) : String(x));

export class SpikeGuard {
  private readonly loss: number[];
  private readonly gradNorm: number[];

  /** `factor` 0 checks NaN/inf only. `state`: the history saved in a checkpoint, for an exact resume. */
  constructor(
    readonly factor: number,
    state?: unknown,
  ) {
    const ok = (v: unknown): v is number[] =>
      Array.isArray(v) && v.every((x) => typeof x === 'number' && Number.isFinite(x));
    const s = state as Partial<SpikeGuardState> | undefined;
    this.loss = ok(s?.loss) ? s.loss.slice(-SPIKE_WINDOW) : [];
    this.gradNorm = ok(s?.gradNorm) ? s.gradNorm.slice(-SPIKE_WINDOW) : [];
  }

  /** null when the step is healthy (its values join the window); else why it is not. */
  check(loss: number, gradNorm: number): string | null {
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) return `the loss is ${loss} (grad norm ${gradNorm})`;
    const spike = (what: string, v: number, hist: number[]): string | null => {
      if (this.factor <= 0 || hist.length < SPIKE_MIN_HISTORY) return null;
      const m = median(hist);
      return m > 0 && v > this.factor * m
        ? `the ${what} ${fmt(v)} is ${fmt(v / m)}x the median ${fmt(m)} of the last ${hist.length} steps (--spike-factor ${this.factor})`
        : null;
    };
    const why = spike('loss', loss, this.loss) ?? spike('grad norm', gradNorm, this.gradNorm);
    if (why) return why;
    this.loss.push(loss);
    this.gradNorm.push(gradNorm);
    if (this.loss.length > SPIKE_WINDOW) this.loss.shift();
    if (this.gradNorm.length > SPIKE_WINDOW) this.gradNorm.shift();
    return null;
  }

  state(): SpikeGuardState {
    return { loss: [...this.loss], gradNorm: [...this.gradNorm] };
  }
}
