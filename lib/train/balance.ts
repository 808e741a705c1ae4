// Loss balancing on the host (docs/METHOD.md, Losses): what the step needs besides the batch, and the
// state a checkpoint keeps so that a resumed run balances exactly as the uninterrupted one.
//
// - static: the weights as given; nothing to feed.
// - ema: each term is divided by the running mean of its own magnitude, so the weights express
//   relative importance whatever each loss's scale. The mean is an exponential moving average of the
//   detached terms of the steps before (bias-corrected as Adam's moments); the first step, which has
//   no history, runs with scales of 1.
// - uncertainty: the scales are learned on the device (loss.logvar); the host only reads them back.

export type LossBalanceMode = 'static' | 'ema' | 'uncertainty';

/** What a checkpoint stores of the balancer (ema only; the uncertainty state is a parameter). */
export interface BalanceState {
  ema: [number, number, number];
  count: number;
}

/** The smallest running mean a scale divides by: a term that is (near) zero is not blown up. */
const MIN_MEAN = 1e-8;

export class LossBalancer {
  private ema: [number, number, number] = [0, 0, 0];
  private count = 0;

  constructor(
    readonly mode: LossBalanceMode,
    private readonly momentum: number,
  ) {
    if (!(momentum >= 0 && momentum < 1))
      throw new Error(`--balance-momentum: expected a number in [0, 1), got ${momentum}`);
  }

  /** The program inputs of the next step: loss_scale [3] under 'ema', nothing otherwise. */
  inputs(): { loss_scale?: Float32Array } {
    return this.mode === 'ema' ? { loss_scale: this.scales() } : {};
  }

  /** 1 / bias-corrected running mean of each term; ones before the first step. */
  scales(): Float32Array {
    if (this.count === 0) return Float32Array.from([1, 1, 1]);
    const corr = 1 - this.momentum ** this.count;
    return Float32Array.from(this.ema, (m) => 1 / Math.max(m / corr, MIN_MEAN));
  }

  /** Records a step's losses [4] = (total, L_tok, L_cls, L_pix) (ema only). */
  observe(losses: ArrayLike<number>): void {
    if (this.mode !== 'ema') return;
    for (let k = 0; k < 3; k++) {
      const l = Math.abs(losses[1 + k]);
      if (Number.isFinite(l)) this.ema[k] = this.momentum * this.ema[k] + (1 - this.momentum) * l;
    }
    this.count += 1;
  }

  state(): BalanceState | undefined {
    return this.mode === 'ema' ? { ema: [...this.ema], count: this.count } : undefined;
  }

  /** Restores a checkpoint's state; `source` names the checkpoint in errors. */
  restore(s: unknown, source: string): void {
    if (this.mode !== 'ema') return;
    if (s === undefined) return; // a checkpoint from before balancing: the run restarts its averages
    const st = s as Partial<BalanceState>;
    const ok =
      Array.isArray(st.ema) &&
      st.ema.length === 3 &&
      st.ema.every((x) => Number.isFinite(x) && x >= 0) &&
      Number.isInteger(st.count) &&
      st.count! >= 0;
    if (!ok)
      throw new Error(
        `${source}: field 'balance' must be {ema: three non-negative numbers, count: a non-negative integer}, found ${JSON.stringify(s)}`,
      );
    this.ema = [st.ema![0], st.ema![1], st.ema![2]];
    this.count = st.count!;
  }
}
