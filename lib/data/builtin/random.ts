// The built-in dataset's random numbers: every sample draws from its own generator, seeded by
// hashing (seed, split, index) with the data pipeline's hash, so a sample is a pure function of
// those three and any index can be generated alone, in any order, in any worker.
import { SeededRandom } from '../seeded.js';

export { hashSeed, mix32 } from '../seeded.js';

/** A sample's generator: the pipeline's seeded draws plus the choices scenes need. */
export class SampleRandom extends SeededRandom {
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  /** An index drawn with probability proportional to its weight. */
  weighted(weights: readonly number[]): number {
    let total = 0;
    for (const w of weights) total += w;
    let r = this.next() * total;
    for (let i = 0; i < weights.length; i++) {
      r -= weights[i] as number;
      if (r < 0) return i;
    }
    return weights.length - 1;
  }
}
