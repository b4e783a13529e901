// slice, concat and split along one axis, all on one native slab copy (sliceCopy).
// A slice whose dims before the axis are all 1 (the leading axis, typically) is one
// contiguous block of x, so it is a view: it shares x's memory (a write through either shows
// in both) and keeps that memory alive after x is disposed. Other slices are copies.
import { native } from '../../native.js';
import { attachGrad } from '../autograd.js';
import { argError, checkAxis, checkInteger, isInteger, shapeStr } from '../check.js';
import { checkTensor, empty, zeros, type Tensor } from '../tensor.js';
import { mixedFloats, onCast } from './promote.js';
import { numel, sameDevice, sameKind } from './util.js';

function rankedTensor(op: string, arg: string, x: unknown): Tensor {
  const t = checkTensor(op, arg, x);
  if (t.rank === 0) throw new Error(`${op}: expected a tensor of rank 1 or more for ${arg}, got shape []`);
  return t;
}

/** x[..., start : start + count, ...] along axis, without autograd: a view when contiguous. */
function slab(x: Tensor, axis: number, start: number, count: number): Tensor {
  const shape = x.shape.map((d, i) => (i === axis ? count : d));
  if (x.shape.slice(0, axis).every((d) => d === 1)) return x.view(shape, start * numel(x.shape.slice(axis + 1)));
  const out = empty(shape, { dtype: x.dtype, device: x.device });
  native.sliceCopy(x, out, axis, start, 0, count);
  return out;
}

/** An index into an axis of size len: an integer in [-len, len], negative from the end. */
function axisIndex(op: string, arg: string, v: unknown, axis: number, len: number): number {
  if (!isInteger(v) || v < -len || v > len) throw argError(op, arg, `an index in [-${len}, ${len}] (axis ${axis} has size ${len})`, v);
  return v < 0 ? v + len : v;
}

/**
 * x[..., start:end, ...] along `axis`, numpy style: negative indices count from the end, end
 * defaults to the axis size; indices outside [-size, size] or start after end are errors.
 */
export function slice(xIn: Tensor, axis: number, start: number, end?: number): Tensor {
  const op = 'slice';
  const x = rankedTensor(op, 'x', xIn);
  const ax = checkAxis(op, 'axis', axis, x.rank);
  const len = x.shape[ax]!;
  const s = axisIndex(op, 'start', start, ax, len);
  const e = end === undefined ? len : axisIndex(op, 'end', end, ax, len);
  if (e < s) throw argError(op, 'end', `an index at or after start (${s}) on axis ${ax} of size ${len}`, end);
  const y = slab(x, ax, s, e - s);
  const { shape, dtype, device } = x;
  return attachGrad(y, op, [x], [], (gy) => {
    const g = zeros(shape, { dtype, device });
    native.sliceCopy(gy, g, ax, 0, s, e - s);
    return [g];
  });
}

/** Joins tensors of one dtype and device along `axis`; their shapes agree on every other axis. */
export function concat(tensors: readonly Tensor[], axis = 0): Tensor {
  const op = 'concat';
  if (!Array.isArray(tensors) || tensors.length === 0) throw argError(op, 'tensors', 'a non-empty array of Tensors', tensors);
  const ts = tensors.map((t, i) => rankedTensor(op, `tensors[${i}]`, t));
  const first = ts[0]!;
  const names = ts.map((_, i) => `tensors[${i}]`);
  if (mixedFloats(...ts) && ts.every((t) => t.dtype !== 'i32')) {
    // f32 beside bf16 (a bf16 product under autocast beside an f32 parameter): the bf16 ones
    // are widened first and the result is f32, as PyTorch's cat promotes them.
    sameDevice(op, names, ...ts);
    return onCast(ts, 'f32', (widened) => concat(widened as Tensor[], axis));
  }
  sameKind(op, names, ...ts);
  const ax = checkAxis(op, 'axis', axis, first.rank);
  ts.forEach((t, i) => {
    if (t.rank !== first.rank || t.shape.some((d, k) => k !== ax && d !== first.shape[k])) {
      throw new Error(`${op}: expected a shape equal to ${shapeStr(first.shape)} except on axis ${ax} for tensors[${i}], got ${shapeStr(t.shape)}`);
    }
  });
  const lens = ts.map((t) => t.shape[ax]!);
  const offsets: number[] = [];
  let total = 0;
  for (const n of lens) {
    offsets.push(total);
    total += n;
  }
  const out = empty(first.shape.map((d, k) => (k === ax ? total : d)), { dtype: first.dtype, device: first.device });
  ts.forEach((t, i) => {
    if (t.size > 0) native.sliceCopy(t, out, ax, 0, offsets[i]!, lens[i]!);
  });
  return attachGrad(out, op, ts, [], (gy, _saved, needs) => lens.map((n, i) => (needs[i] ? slab(gy, ax, offsets[i]!, n) : null)));
}

/**
 * Splits x along `axis` into `sizes` pieces of equal size (a count that divides the axis) or
 * into pieces of the given sizes (summing to the axis size). Each piece is a slice, so pieces
 * of the leading axis are views; in backward each piece's gradient is padded to x's shape
 * with zeros and the pieces' gradients are summed.
 */
export function split(xIn: Tensor, sizes: number | readonly number[], axis = 0): Tensor[] {
  const op = 'split';
  const x = rankedTensor(op, 'x', xIn);
  const ax = checkAxis(op, 'axis', axis, x.rank);
  const len = x.shape[ax]!;
  let parts: number[];
  if (typeof sizes === 'number') {
    const n = checkInteger(op, 'sizes', sizes, 1);
    if (len % n !== 0) throw argError(op, 'sizes', `a count that divides ${len} (axis ${ax} of ${shapeStr(x.shape)})`, sizes);
    parts = new Array<number>(n).fill(len / n);
  } else if (Array.isArray(sizes)) {
    parts = sizes.map((v, i) => checkInteger(op, `sizes[${i}]`, v, 0));
    const sum = parts.reduce((a, b) => a + b, 0);
    if (sum !== len) throw new Error(`${op}: expected sizes summing to ${len} (axis ${ax} of ${shapeStr(x.shape)}) for sizes, got ${shapeStr(parts)}`);
  } else {
    throw argError(op, 'sizes', 'a count or an array of sizes', sizes);
  }
  let start = 0;
  return parts.map((n) => {
    const y = slice(x, ax, start, start + n);
    start += n;
    return y;
  });
}
