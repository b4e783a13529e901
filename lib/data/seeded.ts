// Counter-free seeded randomness for the data pipeline. Every draw that shapes a batch (shard
// order, sample order, a sample's crop and jitter) comes from a generator seeded by hashing
// the integers it depends on (seed, epoch, sample index or key), never from shared state, so
// what a sample becomes does not depend on which worker made it or when.

/** A 32-bit avalanche hash (the murmur3 finalizer). */
export function mix32(x: number): number {
  let h = x >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Order-sensitive hash of integers and strings into 32 bits. */
export function hashSeed(...parts: ReadonlyArray<number | string>): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    if (typeof p === 'number') {
      // Seeds and indices may exceed 32 bits: fold the high half in too.
      h = mix32(h ^ mix32((p >>> 0) + 0x7f4a7c15));
      h = mix32(h ^ Math.floor(p / 4294967296));
    } else {
      let f = 0x811c9dc5;
      for (let i = 0; i < p.length; i++) f = Math.imul(f ^ p.charCodeAt(i), 0x01000193);
      h = mix32(h ^ mix32(f ^ p.length));
    }
  }
  return h;
}

/** mulberry32: uniform draws with the same sequence for a seed on every platform. */
export class SeededRandom {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(this.state ^ (this.state >>> 15), this.state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Fisher–Yates, in place. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = items[i]!;
      items[i] = items[j]!;
      items[j] = t;
    }
    return items;
  }
}
