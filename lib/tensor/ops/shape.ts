// Views and copies: reshape, flatten, detach, clone, moving between devices, dtype casts.
import { native } from '../../native.js';
import { attachGrad } from '../autograd.js';
import { checkShape, shapeStr } from '../check.js';
import { checkDevice, checkDType, checkTensor, empty, emptyLike, type DType, type Device, type Tensor } from '../tensor.js';
import { numel } from './util.js';

/** Resolves one -1 in a requested shape against an element count. */
function resolveShape(op: string, shape: readonly number[], n: number, from: readonly number[]): number[] {
  const s = [...shape];
  const infer = s.indexOf(-1);
  if (infer >= 0) {
    if (s.lastIndexOf(-1) !== infer) throw new Error(`${op}: at most one -1 in shape ${shapeStr(s)}`);
    const rest = numel(s.filter((_, i) => i !== infer));
    if (rest === 0 || n % rest !== 0) throw new Error(`${op}: cannot reshape ${shapeStr(from)} to ${shapeStr(shape)}`);
    s[infer] = n / rest;
  }
  checkShape(op, 'shape', s);
  if (numel(s) !== n) throw new Error(`${op}: cannot reshape ${shapeStr(from)} (${n} elements) to ${shapeStr(shape)}`);
  return s;
}

/** The same memory with another shape (one dim may be -1). */
export function reshape(xIn: Tensor, shape: readonly number[]): Tensor {
  const x = checkTensor('reshape', 'x', xIn);
  if (!Array.isArray(shape)) throw new Error(`reshape: expected an array for shape, got ${typeof shape}`);
  const s = resolveShape('reshape', shape, x.size, x.shape);
  return attachGrad(x.view(s), 'reshape', [x], [], (gy) => [gy.view(x.shape)]);
}

/** Merges dims [start, end] (inclusive) into one. */
export function flatten(x: Tensor, start = 0, end = -1): Tensor {
  checkTensor('flatten', 'x', x);
  const r = x.rank;
  const s = start < 0 ? start + r : start;
  const e = end < 0 ? end + r : end;
  if (r === 0) return reshape(x, [1]);
  if (!(s >= 0 && e < r && s <= e)) throw new Error(`flatten: invalid dims ${start}..${end} for shape ${shapeStr(x.shape)}`);
  return reshape(x, [...x.shape.slice(0, s), numel(x.shape.slice(s, e + 1)), ...x.shape.slice(e + 1)]);
}

/** A view that is cut off from the graph (no gradient flows through it). */
export function detach(x: Tensor): Tensor {
  return checkTensor('detach', 'x', x).view(x.shape);
}

/** A copy in new memory (gradient flows through). */
export function clone(xIn: Tensor): Tensor {
  const x = checkTensor('clone', 'x', xIn);
  const y = emptyLike(x);
  native.copy(x, y);
  return attachGrad(y, 'clone', [x], [], (gy) => [gy]);
}

/** A copy on another device (the tensor itself when it is already there). */
export function to(xIn: Tensor, device: Device): Tensor {
  const x = checkTensor('to', 'x', xIn);
  const d = checkDevice('to', 'device', device);
  if (d === x.device) return x;
  const y = empty(x.shape, { dtype: x.dtype, device: d });
  native.copy(x, y);
  return attachGrad(y, 'to', [x], [], (gy) => {
    const g = empty(gy.shape, { dtype: gy.dtype, device: x.device });
    native.copy(gy, g);
    return [g];
  });
}

/** A copy with another dtype (the tensor itself when it already has it). */
export function cast(xIn: Tensor, dtype: DType): Tensor {
  const x = checkTensor('cast', 'x', xIn);
  const dt = checkDType('cast', 'dtype', dtype);
  if (dt === x.dtype) return x;
  const y = emptyLike(x, x.shape, dt);
  native.cast(x, y);
  if (dt === 'i32' || x.dtype === 'i32') return y;
  return attachGrad(y, 'cast', [x], [], (gy, _saved, _needs, pendingGrad) => {
    // An f32 x (wider than gy) that has a gradient from elsewhere (the residual stream beside a
    // bf16 branch) takes this one added in place: no widened copy of gy and no separate sum.
    const sum = x.dtype === 'f32' ? pendingGrad(0) : null;
    if (sum) {
      native.binary('add', sum, gy, sum);
      return [sum];
    }
    const g = emptyLike(gy, gy.shape, x.dtype);
    native.cast(gy, g);
    return [g];
  });
}
