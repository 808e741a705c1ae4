// Counter-based random numbers for everything random on the TypeScript side (data order, augmentation,
// masks, host-side init).
//
// Every draw is a pure function of (key words, counter): a stream is named by the values that identify
// what it decides (seed, purpose, epoch or step, sample index, ...), so sample i at epoch e gets the same
// crop, and step s the same masks, whichever worker handles it and whatever came before: this is what
// makes resumed runs reproduce uninterrupted ones. 32-bit integer mixing (Math.imul) keeps it fast in
// JS; it need not match native/include/medic/rng.h, which serves the native kernels.

/** Purposes, so that streams for different decisions never share keys. */
export const Stream = {
  shuffle: 1,
  split: 2,
  crop: 3,
  flip: 4,
  jitter: 5,
  replace: 6,
  synthetic: 7,
  mask: 8,
  init: 9,
} as const;

/** lowbias32 finaliser (Wellons): good avalanche for a 32-bit hash. */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

const TWO32 = 4294967296;

export class Rng {
  private k0: number;
  private k1: number;
  private counter = 0;

  /** Keys are non-negative integers (up to 2^53); order matters. */
  constructor(...keys: number[]) {
    let a = 0x243f6a88;
    let b = 0x85a308d3;
    for (const key of keys) {
      if (!Number.isSafeInteger(key) || key < 0)
        throw new RangeError(`Rng: keys must be non-negative safe integers, got ${key}`);
      const lo = key >>> 0;
      const hi = Math.floor(key / TWO32) >>> 0;
      a = mix32(a ^ mix32(lo + 0x9e3779b9));
      b = mix32(b ^ mix32(hi ^ a ^ 0x632be59b));
    }
    this.k0 = a;
    this.k1 = b;
  }

  /** 32 uniform random bits. */
  u32(): number {
    const c = this.counter++;
    return mix32(this.k0 ^ mix32((c + this.k1) >>> 0) ^ Math.imul(c, 0x2545f491));
  }

  /** Uniform in [0, 1) with 53 bits. */
  uniform(): number {
    const hi = this.u32() >>> 5; // 27 bits
    const lo = this.u32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform in [a, b). */
  range(a: number, b: number): number {
    return a + (b - a) * this.uniform();
  }

  /** Integer uniform in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    const u = 1 - this.uniform(); // (0, 1]
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.uniform());
  }
}

/** Fisher-Yates shuffle of 0..n-1 driven by one stream. */
export function permutation(n: number, rng: Rng): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}
