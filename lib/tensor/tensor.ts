// Tensor: shape, dtype and device over a reference-counted native storage.
// Tensors are contiguous and row-major; reshape and views of leading-dim ranges share
// storage. Memory is released by dispose(), by leaving a scope(), or, as a backstop only,
// when the garbage collector finalizes a tensor that was never disposed.
import { native } from '../native.js';
import { backward, type GradNode } from './autograd.js';
import { argError, checkInteger, checkShape, describe, shapeStr } from './check.js';
import { track } from './scope.js';

export type DType = 'f32' | 'bf16' | 'i32';
export type Device = string;

export const DTYPES: readonly DType[] = ['f32', 'bf16', 'i32'];

export function dtypeBytes(dtype: DType): number {
  return dtype === 'bf16' ? 2 : 4;
}

export function checkDType(op: string, arg: string, dtype: unknown): DType {
  if (dtype !== 'f32' && dtype !== 'bf16' && dtype !== 'i32') throw argError(op, arg, "'f32', 'bf16' or 'i32'", dtype);
  return dtype;
}

/** Canonical device name: 'cpu' or 'cuda:N' ('cuda' means 'cuda:0'). */
export function checkDevice(op: string, arg: string, device: unknown): Device {
  if (device === 'cpu') return 'cpu';
  if (device === 'cuda') return 'cuda:0';
  if (typeof device === 'string' && /^cuda:\d{1,3}$/.test(device)) return `cuda:${Number(device.slice(5))}`;
  throw argError(op, arg, "'cpu', 'cuda' or 'cuda:N'", device);
}

/** A block of native memory shared by a tensor and its views. */
export class Storage {
  refs = 1;
  constructor(
    readonly handle: unknown,
    readonly nbytes: number,
    readonly device: Device,
  ) {}

  static allocate(nbytes: number, device: Device): Storage {
    return new Storage(native.alloc(nbytes, device), nbytes, device);
  }

  retain(): void {
    this.refs++;
  }

  release(): void {
    if (this.refs <= 0) return;
    if (--this.refs === 0) native.free(this.handle);
  }
}

let liveTensors = 0;

// The backstop for tensors dropped without dispose(): the collector finalizes them. A
// finalizer must never throw (it would surface as an uncaught exception).
const finalizer = new FinalizationRegistry<Storage>((s) => {
  liveTensors--;
  try {
    s.release();
  } catch {
    // a hand-built Storage over a handle the addon refuses: nothing to release
  }
});

/** Number of tensors created and not yet disposed (finalized ones excluded). */
export function liveTensorCount(): number {
  return liveTensors;
}

export interface TensorOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

export class Tensor {
  readonly isTensor = true;
  readonly handle: unknown;
  /** Gradient accumulated by backward(); owned by this tensor. */
  grad: Tensor | null = null;
  /** The node that produced this tensor, when it is part of a recorded graph. */
  gradFn: GradNode | null = null;
  requiresGrad = false;
  /** Optional name (parameters carry their state-dict key). */
  name: string | undefined;
  /** @internal the scope this tensor belongs to, if any. */
  scopeSet: Set<Tensor> | null = null;
  private disposedFlag = false;

  /** @internal use the creation functions (zeros, fromArray, ...) instead. */
  constructor(
    readonly storage: Storage,
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly offset: number,
  ) {
    if (!(storage instanceof Storage)) throw argError('Tensor', 'storage', 'a Storage', storage);
    this.handle = storage.handle;
    liveTensors++;
    finalizer.register(this, storage, this);
    track(this);
  }

  get device(): Device {
    return this.storage.device;
  }

  /** Number of elements. */
  get size(): number {
    let n = 1;
    for (const d of this.shape) n *= d;
    return n;
  }

  get rank(): number {
    return this.shape.length;
  }

  get isDisposed(): boolean {
    return this.disposedFlag;
  }

  /** Releases this tensor's reference to its memory; idempotent. */
  dispose(): void {
    // Not `=== true`: an object that only borrowed the prototype (never constructed) has no
    // flag and nothing to release; it must not be counted off the live tensors.
    if (this.disposedFlag !== false) return;
    this.disposedFlag = true;
    liveTensors--;
    finalizer.unregister(this);
    this.scopeSet?.delete(this);
    this.scopeSet = null;
    this.gradFn?.unref();
    this.gradFn = null;
    this.grad?.dispose();
    this.grad = null;
    this.storage.release();
  }

  /** Throws if the tensor has been disposed; returns it otherwise. */
  assertAlive(op: string, arg: string): this {
    if (this.disposedFlag !== false) {
      if (this.disposedFlag) throw new Error(`${op}: ${arg} has been disposed`);
      throw new Error(`${op}: expected a Tensor for ${arg}, got an object that no Tensor constructor made`);
    }
    return this;
  }

  /** Copies the values to a new typed array (bf16 is widened to f32). Waits for the device. */
  toArray(): Float32Array | Int32Array {
    this.assertAlive('toArray', 'tensor');
    return native.download(this);
  }

  /** The single value of a one-element tensor. */
  item(): number {
    this.assertAlive('item', 'tensor');
    if (this.size !== 1) throw new Error(`item: expected a tensor with one element, got shape ${shapeStr(this.shape)}`);
    return native.download(this)[0]!;
  }

  /** A new tensor sharing this one's memory, with another shape or a leading-dim window. */
  view(shape: readonly number[], elementOffset = 0): Tensor {
    this.assertAlive('view', 'tensor');
    const s = checkShape('view', 'shape', shape);
    checkInteger('view', 'elementOffset', elementOffset, 0);
    let n = 1;
    for (const d of s) n *= d;
    if ((this.offset + elementOffset + n) * dtypeBytes(this.dtype) > this.storage.nbytes) {
      throw new Error(`view: shape ${shapeStr(s)} at element offset ${elementOffset} does not fit ${this.toString()} (storage of ${this.storage.nbytes} bytes)`);
    }
    this.storage.retain();
    return new Tensor(this.storage, Object.freeze([...s]), this.dtype, this.offset + elementOffset);
  }

  /** Back-propagates from this tensor (see autograd.backward). */
  backward(grad?: Tensor): void {
    backward(this, grad);
  }

  toString(): string {
    return `Tensor(${shapeStr(this.shape)}, ${this.dtype}, ${this.device}${this.disposedFlag ? ', disposed' : ''})`;
  }
}

export function isTensor(x: unknown): x is Tensor {
  return x instanceof Tensor;
}

/** Checks that x is a live Tensor; returns it. */
export function checkTensor(op: string, arg: string, x: unknown): Tensor {
  if (!(x instanceof Tensor)) throw argError(op, arg, 'a Tensor', x);
  return x.assertAlive(op, arg);
}

/** An uninitialized tensor. */
export function empty(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  const s = checkShape('empty', 'shape', shape);
  const dtype = checkDType('empty', 'dtype', opts.dtype ?? 'f32');
  const device = checkDevice('empty', 'device', opts.device ?? 'cpu');
  const n = s.reduce((a, b) => a * b, 1);
  const t = new Tensor(Storage.allocate(n * dtypeBytes(dtype), device), Object.freeze([...s]), dtype, 0);
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

// The *Like functions read only shape, dtype and device, so a disposed tensor is fine
// (gradient functions make their outputs like inputs that may be gone by then).
function likeTensor(op: string, t: unknown): void {
  if (!(t instanceof Tensor)) throw argError(op, 't', 'a Tensor', t);
}

/** An uninitialized tensor like `t` (same shape, dtype and device unless overridden). */
export function emptyLike(t: Tensor, shape?: readonly number[], dtype?: DType): Tensor {
  likeTensor('emptyLike', t);
  return empty(shape ?? t.shape, { dtype: dtype ?? t.dtype, device: t.device });
}

export function full(shape: readonly number[], value: number, opts: TensorOptions = {}): Tensor {
  if (typeof value !== 'number') throw argError('full', 'value', 'a number', value);
  const t = empty(shape, { dtype: opts.dtype, device: opts.device });
  try {
    native.fill(t, value);
  } catch (e) {
    t.dispose();
    throw e;
  }
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

export function zeros(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return full(shape, 0, opts);
}

export function ones(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return full(shape, 1, opts);
}

export function zerosLike(t: Tensor): Tensor {
  likeTensor('zerosLike', t);
  return zeros(t.shape, { dtype: t.dtype, device: t.device });
}

export function onesLike(t: Tensor): Tensor {
  likeTensor('onesLike', t);
  return ones(t.shape, { dtype: t.dtype, device: t.device });
}

/** [start, end) by step, as in numpy: arange(n) or arange(start, end, step). */
export function arange(startOrEnd: number, end?: number, step = 1, opts: Omit<TensorOptions, 'requiresGrad'> = {}): Tensor {
  const start = end === undefined ? 0 : startOrEnd;
  const stop = end === undefined ? startOrEnd : end;
  for (const [name, v] of [['start', start], ['end', stop], ['step', step]] as const) {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw argError('arange', name, 'a finite number', v);
  }
  if (step === 0) throw argError('arange', 'step', 'a non-zero number', step);
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const t = empty([n], { dtype: opts.dtype ?? 'i32', device: opts.device });
  native.arange(t, start, step);
  return t;
}

type HostData = ArrayLike<number> | Float32Array | Int32Array | Uint16Array;

/**
 * A tensor holding `data` (row-major). bf16 accepts f32 values (rounded to nearest even) or
 * raw bf16 bits in a Uint16Array. Shape defaults to [data.length].
 */
export function fromArray(data: HostData, shape?: readonly number[], opts: TensorOptions = {}): Tensor {
  if (data === null || typeof data !== 'object' || typeof (data as ArrayLike<number>).length !== 'number') {
    throw argError('fromArray', 'data', 'an array or typed array of numbers', data);
  }
  const dtype = checkDType('fromArray', 'dtype', opts.dtype ?? (data instanceof Int32Array ? 'i32' : 'f32'));
  const s = checkShape('fromArray', 'shape', shape ?? [data.length]);
  const n = s.reduce((a, b) => a * b, 1);
  if (n !== data.length) {
    throw new Error(`fromArray: expected ${n} values for shape ${shapeStr(s)}, got ${data.length}`);
  }
  let host: Float32Array | Int32Array | Uint16Array;
  if (dtype === 'i32') {
    host = data instanceof Int32Array ? data : Int32Array.from(data as ArrayLike<number>);
    if (!(data instanceof Int32Array)) {
      for (let i = 0; i < data.length; i++) {
        const v = (data as ArrayLike<number>)[i]!;
        if (!Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) throw argError('fromArray', `data[${i}]`, 'a 32-bit integer', v);
      }
    }
  } else if (dtype === 'bf16' && data instanceof Uint16Array) {
    host = data;
  } else {
    host = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
  }
  const t = empty(s, { dtype, device: opts.device });
  try {
    native.upload(t, host);
  } catch (e) {
    t.dispose();
    throw e;
  }
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/** A one-element tensor of shape []. */
export function scalar(value: number, opts: TensorOptions = {}): Tensor {
  if (typeof value !== 'number') throw argError('scalar', 'value', 'a number', value);
  return fromArray([value], [], opts);
}

export function describeTensor(x: unknown): string {
  return x instanceof Tensor ? x.toString() : describe(x);
}
