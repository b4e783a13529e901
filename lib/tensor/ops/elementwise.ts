// Elementwise ops: unary math and activations, and binary arithmetic with numpy-style
// broadcasting. A number in place of a tensor is a scalar operand.
import { native } from '../../native.js';
import { attachGrad } from '../autograd.js';
import { argError, shapeStr } from '../check.js';
import { empty, emptyLike, Tensor, type DType } from '../tensor.js';
import { sumTo } from './reduce.js';
import { cast } from './shape.js';
import { floatTensor, sameDevice } from './util.js';

export type UnaryName =
  | 'neg' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'abs' | 'square' | 'reciprocal' | 'sigmoid' | 'tanh' | 'relu'
  | 'geluErf' | 'geluTanh' | 'quickGelu' | 'affine' | 'pow' | 'clamp';

function unaryOp(name: UnaryName, xIn: Tensor, p0 = 0, p1 = 0, opName: string = name): Tensor {
  const x = floatTensor(opName, 'x', xIn);
  const y = emptyLike(x);
  native.unary(name, x, y, p0, p1);
  return attachGrad(y, opName, [x], [x], (gy, [xs]) => {
    const dx = emptyLike(xs!);
    native.unaryBackward(name, xs!, gy, dx, p0, p1);
    return [dx];
  });
}

export const neg = (x: Tensor): Tensor => unaryOp('neg', x);
export const exp = (x: Tensor): Tensor => unaryOp('exp', x);
export const log = (x: Tensor): Tensor => unaryOp('log', x);
export const sqrt = (x: Tensor): Tensor => unaryOp('sqrt', x);
export const rsqrt = (x: Tensor): Tensor => unaryOp('rsqrt', x);
export const abs = (x: Tensor): Tensor => unaryOp('abs', x);
export const square = (x: Tensor): Tensor => unaryOp('square', x);
export const reciprocal = (x: Tensor): Tensor => unaryOp('reciprocal', x);
export const sigmoid = (x: Tensor): Tensor => unaryOp('sigmoid', x);
export const tanh = (x: Tensor): Tensor => unaryOp('tanh', x);
export const relu = (x: Tensor): Tensor => unaryOp('relu', x);
/** QuickGELU: x * sigmoid(1.702 x), as in OpenAI's CLIP. */
export const quickGelu = (x: Tensor): Tensor => unaryOp('quickGelu', x);

/** GELU, exact (erf, default) or with the tanh approximation. */
export function gelu(x: Tensor, opts: { approximate?: 'none' | 'tanh' } = {}): Tensor {
  const approx = opts.approximate ?? 'none';
  if (approx !== 'none' && approx !== 'tanh') throw argError('gelu', 'approximate', "'none' or 'tanh'", approx);
  return unaryOp(approx === 'tanh' ? 'geluTanh' : 'geluErf', x, 0, 0, 'gelu');
}

/** x raised to a constant power. */
export function pow(x: Tensor, exponent: number): Tensor {
  if (typeof exponent !== 'number' || Number.isNaN(exponent)) throw argError('pow', 'exponent', 'a number', exponent);
  return unaryOp('pow', x, exponent);
}

/** Limits x to [min, max]; the gradient is zero outside. */
export function clamp(x: Tensor, min = -Infinity, max = Infinity): Tensor {
  if (typeof min !== 'number' || Number.isNaN(min)) throw argError('clamp', 'min', 'a number', min);
  if (typeof max !== 'number' || Number.isNaN(max)) throw argError('clamp', 'max', 'a number', max);
  if (min > max) throw new Error(`clamp: expected min <= max, got ${min} > ${max}`);
  return unaryOp('clamp', x, min, max);
}

/** scale * x + shift. */
export function affine(x: Tensor, scale: number, shift = 0): Tensor {
  for (const [n, v] of [['scale', scale], ['shift', shift]] as const) {
    if (typeof v !== 'number' || Number.isNaN(v)) throw argError('affine', n, 'a number', v);
  }
  return unaryOp('affine', x, scale, shift);
}

type BinaryName = 'add' | 'sub' | 'mul' | 'div' | 'maximum' | 'minimum';

function broadcastShape(op: string, a: readonly number[], b: readonly number[]): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let d = 0; d < r; d++) {
    const sa = a[d - (r - a.length)] ?? 1;
    const sb = b[d - (r - b.length)] ?? 1;
    if (sa !== sb && sa !== 1 && sb !== 1) throw new Error(`${op}: shapes ${shapeStr(a)} and ${shapeStr(b)} do not broadcast`);
    out.push(sa === 1 ? sb : sa);
  }
  return out;
}

/** PyTorch's type promotion between float dtypes: f32 when either operand is f32. */
function promoted(a: Tensor, b: Tensor): DType {
  return a.dtype === 'bf16' && b.dtype === 'bf16' ? 'bf16' : 'f32';
}

/** g as `dtype`: a bf16 operand of a promoted op takes its gradient rounded to bf16. Frees g unless it is gy. */
function gradAs(g: Tensor, dtype: DType, gy: Tensor): Tensor {
  const c = cast(g, dtype);
  if (c !== g && g !== gy) g.dispose();
  return c;
}

/**
 * The broadcasting binary op. Operands may differ in dtype (f32 with bf16 gives f32, as in
 * PyTorch): under autocast a bf16 product then joins an f32 residual without a cast pass.
 */
function binaryOp(name: BinaryName, aIn: Tensor, bIn: Tensor): Tensor {
  const a = floatTensor(name, 'a', aIn);
  const b = floatTensor(name, 'b', bIn);
  sameDevice(name, ['a', 'b'], a, b);
  const out = empty(broadcastShape(name, a.shape, b.shape), { dtype: promoted(a, b), device: a.device });
  native.binary(name, a, b, out);
  const linear = name === 'add' || name === 'sub';
  return attachGrad(out, name, [a, b], linear ? [] : [a, b], (gy, saved, needs) => {
    const grad = (side: 0 | 1, like: Tensor): Tensor | null => {
      if (!needs[side]) return null;
      if (name === 'add' || (name === 'sub' && side === 0)) return gradAs(sumTo(gy, like.shape), like.dtype, gy);
      if (name === 'sub') {
        const r = gradAs(sumTo(gy, like.shape), like.dtype, gy);
        const n = emptyLike(r);
        native.unary('neg', r, n, 0, 0);
        if (r !== gy) r.dispose();
        return n;
      }
      const full = emptyLike(gy);
      native.binaryBackward(name, side, saved[0]!, saved[1]!, gy, full);
      const r = sumTo(full, like.shape);
      if (r !== full) full.dispose();
      return gradAs(r, like.dtype, gy);
    };
    return [grad(0, a), grad(1, b)];
  });
}

function scalarCheck(op: string, arg: string, v: number): number {
  if (typeof v !== 'number' || Number.isNaN(v)) throw argError(op, arg, 'a Tensor or a number', v);
  return v;
}

function operands(op: string, a: Tensor | number, b: Tensor | number): void {
  if (!(a instanceof Tensor) && !(b instanceof Tensor)) {
    throw new Error(`${op}: expected at least one Tensor operand, got ${typeof a} and ${typeof b}`);
  }
}

export function add(a: Tensor | number, b: Tensor | number): Tensor {
  operands('add', a, b);
  if (typeof b === 'number') return affine(a as Tensor, 1, scalarCheck('add', 'b', b));
  if (typeof a === 'number') return affine(b, 1, scalarCheck('add', 'a', a));
  return binaryOp('add', a, b);
}

export function sub(a: Tensor | number, b: Tensor | number): Tensor {
  operands('sub', a, b);
  if (typeof b === 'number') return affine(a as Tensor, 1, -scalarCheck('sub', 'b', b));
  if (typeof a === 'number') return affine(b, -1, scalarCheck('sub', 'a', a));
  return binaryOp('sub', a, b);
}

export function mul(a: Tensor | number, b: Tensor | number): Tensor {
  operands('mul', a, b);
  if (typeof b === 'number') return affine(a as Tensor, scalarCheck('mul', 'b', b), 0);
  if (typeof a === 'number') return affine(b, scalarCheck('mul', 'a', a), 0);
  return binaryOp('mul', a, b);
}

export function div(a: Tensor | number, b: Tensor | number): Tensor {
  operands('div', a, b);
  if (typeof b === 'number') return affine(a as Tensor, 1 / scalarCheck('div', 'b', b), 0);
  if (typeof a === 'number') {
    const r = reciprocal(b);
    const y = affine(r, scalarCheck('div', 'a', a), 0);
    r.dispose();
    return y;
  }
  return binaryOp('div', a, b);
}

export function maximum(a: Tensor, b: Tensor): Tensor {
  return binaryOp('maximum', a, b);
}

export function minimum(a: Tensor, b: Tensor): Tensor {
  return binaryOp('minimum', a, b);
}
