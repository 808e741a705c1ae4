// Seeded pseudo-random numbers for the TypeScript side (masks, data order, augmentation).
//
// Streams are keyed: rngFor(seed, ...keys) gives the same sequence for the same keys on any machine
// and in any order of calls, so a resumed run draws exactly what the uninterrupted one drew
// (e.g. keys = [step, sample] for masks).

/** 32-bit mix (murmur3 finaliser). */
export function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Hash a seed and integer keys into four 32-bit words of state. */
function seedState(seed: number, keys: number[]): [number, number, number, number] {
  let h = mix32((seed >>> 0) ^ 0x9e3779b9) ^ mix32(Math.floor(seed / 2 ** 32) >>> 0);
  const s: number[] = [];
  for (let i = 0; i < 4; i++) {
    h = mix32(h + 0x6a09e667 + i);
    for (const k of keys) h = mix32(h ^ mix32((k >>> 0) + 0x7f4a7c15) ^ mix32(Math.floor(k / 2 ** 32) >>> 0));
    s.push(h);
  }
  if ((s[0] | s[1] | s[2] | s[3]) === 0) s[0] = 1;
  return s as [number, number, number, number];
}

/** sfc32: small, fast, good statistical quality. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number, ...keys: number[]) {
    [this.a, this.b, this.c, this.d] = seedState(seed, keys);
    for (let i = 0; i < 12; i++) this.u32();
  }
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    return this.u32() / 4294967296;
  }
  /** Uniform in [lo, hi) (as Python's random.uniform, lo may exceed hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  /** Integer in [lo, hi] inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  /** In-place Fisher-Yates shuffle. */
  shuffle<T>(a: T[] | Int32Array | Uint32Array): void {
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
  }
}
