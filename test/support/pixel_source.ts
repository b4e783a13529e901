// Sample sources for the loader tests, loaded by worker threads through a 'module' spec:
// generated RGB pixels with captions and labels (the built-in dataset's sample shape), and
// sources that fail in the ways the loader must report.
import type { RawSample, SkippedSample, StreamSource } from '../../lib/data/source.js';

export interface PixelSourceOptions {
  count: number;
  size: number;
  /** Indices whose get() throws (bad samples). */
  failing?: number[];
}

/** Samples read so far in this thread (the prefetch test watches how far the loader runs ahead). */
export const reads = { count: 0 };

export function createPixelSource(options: PixelSourceOptions): { length: number; get(i: number): { image: Uint8Array; width: number; height: number; caption: string; label: number } } {
  const { count, size } = options;
  const failing = new Set(options.failing ?? []);
  return {
    length: count,
    get(i: number) {
      reads.count++;
      if (failing.has(i)) throw new Error(`sample ${i} is unreadable on purpose`);
      const image = new Uint8Array(size * size * 3);
      for (let p = 0; p < size * size; p++) {
        image[3 * p] = (i * 40 + p) & 255;
        image[3 * p + 1] = (i * 7) & 255;
        image[3 * p + 2] = p % size < size / 2 ? 0 : 255;
      }
      return { image, width: size, height: size, caption: `picture number ${i}`, label: i % 5 };
    },
  };
}

export function createFailingFactory(): never {
  throw new Error('this source cannot open');
}

/** A source whose reads end the thread they run in (process.exit in a worker ends the worker). */
export function createExitingSource(): { length: number; get(i: number): never } {
  return {
    length: 4,
    get() {
      process.exit(7);
    },
  };
}

/** A stream that yields two samples, then its iterator throws. */
export function createBrokenStream(options: { size: number }): StreamSource {
  const good = createPixelSource({ count: 2, size: options.size });
  return {
    kind: 'stream',
    numSamples: null,
    async *samples(): AsyncGenerator<RawSample | SkippedSample> {
      for (let i = 0; i < 2; i++) {
        const s = good.get(i);
        yield { key: `k${i}`, image: { data: s.image, width: s.width, height: s.height }, caption: s.caption };
      }
      throw new Error('the stream broke');
    },
  };
}
