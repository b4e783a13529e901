// Seeded random numbers. A Generator is a seed and a counter: each call takes the next
// `size` counters, and element i is Philox(seed, counter + i) on either backend, so the CPU
// and CUDA give the same numbers and no call has to wait for the device.
import { native } from '../native.js';
import { checkInteger } from './check.js';
import { empty, type Tensor, type TensorOptions } from './tensor.js';

export class Generator {
  private counter = 0;
  constructor(private seedValue = 0x5eed) {
    checkInteger('Generator', 'seed', seedValue, 0, Number.MAX_SAFE_INTEGER);
  }

  get seed(): number {
    return this.seedValue;
  }

  /** Restarts the sequence from `seed`. */
  manualSeed(seed: number): this {
    this.seedValue = checkInteger('manualSeed', 'seed', seed, 0, Number.MAX_SAFE_INTEGER);
    this.counter = 0;
    return this;
  }

  /** The position in the sequence, for checkpoints. */
  getState(): { seed: number; counter: number } {
    return { seed: this.seedValue, counter: this.counter };
  }

  setState(state: { seed: number; counter: number }): void {
    this.seedValue = checkInteger('setState', 'state.seed', state?.seed, 0, Number.MAX_SAFE_INTEGER);
    this.counter = checkInteger('setState', 'state.counter', state?.counter, 0, Number.MAX_SAFE_INTEGER);
  }

  /** Reserves n counters and returns the first. */
  take(n: number): number {
    const c = this.counter;
    this.counter += n;
    return c;
  }
}

export const defaultGenerator = new Generator();

/** Seeds the default generator. */
export function manualSeed(seed: number): void {
  defaultGenerator.manualSeed(seed);
}

export interface RandomOptions extends TensorOptions {
  generator?: Generator;
}

function randomTensor(shape: readonly number[], kind: 'uniform' | 'normal', a: number, b: number, opts: RandomOptions): Tensor {
  const t = empty(shape, { dtype: opts.dtype, device: opts.device });
  if (t.dtype === 'i32') {
    t.dispose();
    throw new Error(`${kind === 'uniform' ? 'rand' : 'randn'}: expected dtype 'f32' or 'bf16', got 'i32'`);
  }
  const g = opts.generator ?? defaultGenerator;
  try {
    // The counters are taken only once the draw succeeded: a refused call does not move the sequence.
    native.random(t, kind, g.seed, g.getState().counter, a, b);
    g.take(t.size);
  } catch (e) {
    t.dispose();
    throw e;
  }
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/** Uniform in [low, high) (default [0, 1)). */
export function rand(shape: readonly number[], opts: RandomOptions & { low?: number; high?: number } = {}): Tensor {
  return randomTensor(shape, 'uniform', opts.low ?? 0, opts.high ?? 1, opts);
}

/** Normal with mean and std (default 0 and 1). */
export function randn(shape: readonly number[], opts: RandomOptions & { mean?: number; std?: number } = {}): Tensor {
  return randomTensor(shape, 'normal', opts.mean ?? 0, opts.std ?? 1, opts);
}
