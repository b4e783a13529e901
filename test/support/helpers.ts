// Test helpers: the backends to run on, closeness checks, finite-difference gradient checks
// and a seeded random source for shapes and values.
import * as assert from 'uvu/assert';
import { backendInfo, fromArray, native, noGrad, scope, sum, mul, type Tensor, type Device } from '../../lib/index.js';

let announced = false;

/**
 * Devices to run kernel tests on: 'cpu', plus 'cuda:0' when a GPU is present. Without one
 * the CUDA half prints one line saying it did not run; with CLIPFORGE_REQUIRE_CUDA=1 that is
 * an error instead.
 */
export function devices(): Device[] {
  const info = backendInfo();
  if (info.devices.length > 0) return ['cpu', 'cuda:0'];
  const why = info.cudaUnavailable ?? 'no CUDA device';
  if (process.env.CLIPFORGE_REQUIRE_CUDA === '1') throw new Error(`CUDA is required (CLIPFORGE_REQUIRE_CUDA=1) but unavailable: ${why}`);
  if (!announced) {
    console.log(`CUDA tests did not run: ${why}`);
    announced = true;
  }
  return ['cpu'];
}

/**
 * Runs `body` under each CUDA kernel family of the contrastive losses on `device`: 'auto' (on
 * Hopper GPUs the wgmma path, here in chunks of 128 rows so that small inputs cover several
 * chunks) and 'mma.sync' (every GPU's tiles); restores the defaults afterwards.
 */
export function eachLossKernel(device: string, body: (kernel: 'auto' | 'mma.sync') => void): void {
  for (const kernel of ['auto', 'mma.sync'] as const) {
    native.cudaGemmKernel(device, kernel);
    native.cudaLossChunkRows(device, 128);
    try {
      body(kernel);
    } finally {
      native.cudaGemmKernel(device, 'auto');
      native.cudaLossChunkRows(device, 0);
    }
  }
}

export function hasCuda(): boolean {
  return backendInfo().devices.length > 0;
}

/** Deterministic pseudo-random numbers (mulberry32). */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  normal(): number {
    const u = Math.max(this.next(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
  array(n: number, scale = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.normal() * scale;
    return a;
  }
  /** n rows of d normal values scaled to unit L2 norm (features as contrastive losses get them). */
  unitRows(n: number, d: number): Float32Array {
    const x = this.array(n * d);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += x[i * d + k]! ** 2;
      const r = 1 / Math.sqrt(s);
      for (let k = 0; k < d; k++) x[i * d + k]! *= r;
    }
    return x;
  }
  shape(rank: number, maxDim = 7): number[] {
    return Array.from({ length: rank }, () => this.int(1, maxDim));
  }
}

export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Asserts |a - e| <= atol + rtol * |e| elementwise, naming the first bad index. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, opts: { rtol?: number; atol?: number; what?: string } = {}): void {
  const rtol = opts.rtol ?? 1e-5;
  const atol = opts.atol ?? 1e-6;
  assert.is(actual.length, expected.length, `${opts.what ?? 'values'}: length`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (Number.isNaN(e) && Number.isNaN(a)) continue;
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      assert.unreachable(`${opts.what ?? 'values'}[${i}]: got ${a}, expected ${e} (rtol ${rtol}, atol ${atol})`);
    }
  }
}

/** The values rounded to bf16 (as a bf16 tensor stores them), as f32. */
export function bf16Rounded(a: Float32Array): Float32Array {
  return scope(() => fromArray(a, [a.length], { dtype: 'bf16' }).toArray() as Float32Array);
}

/**
 * Runs fn with the named native calls recorded: each call appends describe[name](args) to the
 * list (a string, or null to leave it out) and then runs. The addon is restored afterwards.
 */
export function recordNativeCalls<R>(describe: Record<string, (args: unknown[]) => string | null>, fn: () => R): { result: R; calls: string[] } {
  const addon = native as unknown as Record<string, (...a: unknown[]) => unknown>;
  const originals = Object.fromEntries(Object.keys(describe).map((k) => [k, addon[k]!]));
  const calls: string[] = [];
  for (const [k, what] of Object.entries(describe)) {
    addon[k] = (...a: unknown[]) => {
      const line = what(a);
      if (line !== null) calls.push(line);
      return originals[k]!.apply(native, a);
    };
  }
  try {
    return { result: fn(), calls };
  } finally {
    Object.assign(addon, originals);
  }
}

/** Largest |a - e| / max(|e|, floor) over all elements. */
export function maxRelError(actual: ArrayLike<number>, expected: ArrayLike<number>, floor = 1e-3): number {
  let m = 0;
  for (let i = 0; i < actual.length; i++) m = Math.max(m, Math.abs(actual[i]! - expected[i]!) / Math.max(Math.abs(expected[i]!), floor));
  return m;
}

export interface GradCheckOptions {
  eps?: number;
  rtol?: number;
  atol?: number;
  /** Check at most this many elements per input (spread evenly). */
  maxElements?: number;
  /** Indices of inputs to check (default: all f32 inputs). */
  check?: number[];
}

/**
 * Finite-difference gradient check in f32. The scalar checked is sum(fn(inputs) * w) for a
 * fixed random w, so every output element contributes. Central differences with step eps;
 * tolerances default to rtol 2e-2, atol 2e-3 (f32 central differences with eps 1e-2 on
 * O(1) values carry errors around 1e-3).
 */
export function gradCheck(fn: (...xs: Tensor[]) => Tensor, inputs: { data: Float32Array | Int32Array; shape: number[]; dtype?: 'f32' | 'i32' }[], opts: GradCheckOptions = {}): void {
  const eps = opts.eps ?? 1e-2;
  const rtol = opts.rtol ?? 2e-2;
  const atol = opts.atol ?? 2e-3;
  const toCheck = opts.check ?? inputs.map((_, i) => i).filter((i) => (inputs[i]!.dtype ?? 'f32') === 'f32');
  const rng = new Rng(1234);
  let weights: Float32Array | null = null;
  let outShape: readonly number[] = [];

  const evaluate = (datas: (Float32Array | Int32Array)[]): number =>
    noGrad(() =>
      scope(() => {
        const ts = datas.map((d, i) => fromArray(d, inputs[i]!.shape, { dtype: inputs[i]!.dtype ?? 'f32' }));
        const y = fn(...ts);
        if (!weights) {
          outShape = y.shape;
          weights = rng.array(y.size);
        }
        const w = fromArray(weights, [...y.shape]);
        let acc = 0;
        const yv = y.toArray();
        const wv = w.toArray();
        for (let i = 0; i < yv.length; i++) acc += yv[i]! * wv[i]!;
        return acc;
      }),
    );

  const base = inputs.map((i) => i.data);
  evaluate(base);
  const analytic = scope(() => {
    const ts = inputs.map((inp, i) => fromArray(inp.data, inp.shape, { dtype: inp.dtype ?? 'f32', requiresGrad: toCheck.includes(i) }));
    const y = fn(...ts);
    assert.equal([...y.shape], [...outShape], 'output shape is stable');
    const loss = sum(mul(y, fromArray(weights!, [...y.shape])));
    loss.backward();
    return toCheck.map((i) => {
      const g = ts[i]!.grad;
      return g ? g.toArray() : new Float32Array(numelOf(inputs[i]!.shape));
    });
  });

  toCheck.forEach((idx, k) => {
    const data = inputs[idx]!.data as Float32Array;
    const n = data.length;
    const limit = opts.maxElements ?? 64;
    const stride = Math.max(1, Math.floor(n / limit));
    for (let e = 0; e < n; e += stride) {
      const plus = Float32Array.from(data);
      const minus = Float32Array.from(data);
      plus[e] = data[e]! + eps;
      minus[e] = data[e]! - eps;
      const fp = evaluate(base.map((d, j) => (j === idx ? plus : d)));
      const fm = evaluate(base.map((d, j) => (j === idx ? minus : d)));
      const numeric = (fp - fm) / (2 * eps);
      const got = analytic[k]![e]!;
      if (!(Math.abs(got - numeric) <= atol + rtol * Math.abs(numeric))) {
        assert.unreachable(`gradient of input ${idx} at ${e}: analytic ${got}, numeric ${numeric} (rtol ${rtol}, atol ${atol})`);
      }
    }
  });
}

/**
 * Asserts that `p` (a promise, or a function whose call throws or rejects) fails with a message
 * matching `pattern`.
 */
export async function rejects(p: Promise<unknown> | (() => unknown), pattern: RegExp): Promise<void> {
  let message = '';
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    message = (e as Error).message;
  }
  assert.ok(message !== '', `expected an error matching ${pattern}`);
  assert.match(message, pattern);
}

/**
 * Asserts that `fn` throws a message matching both `shape` (by default the argument checks'
 * "<op>: expected <what> for <arg>, got <value>") and `pattern`.
 */
export function throwsShaped(fn: () => unknown, pattern: RegExp, shape: RegExp = /^[\w.]+: expected .+ for .+, got /): void {
  let message = '';
  try {
    fn();
  } catch (e) {
    message = (e as Error).message;
  }
  assert.ok(message !== '', `expected a throw matching ${pattern}`);
  assert.match(message, shape);
  assert.match(message, pattern);
}
