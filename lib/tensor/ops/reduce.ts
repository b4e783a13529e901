// sum, mean and max over an axis (or all elements), and sumTo, which reduces a broadcast
// gradient back to an input's shape.
import { native } from '../../native.js';
import { attachGrad, noGrad } from '../autograd.js';
import { argError, checkAxis, checkBoolean, sameShape } from '../check.js';
import { empty, emptyLike, type DType, type Tensor } from '../tensor.js';
import { sameOrWider } from './promote.js';
import { cast } from './shape.js';
import { floatTensor, numel } from './util.js';

export interface ReduceOptions {
  /** Keep the reduced axis with size 1 (default false). */
  keepDims?: boolean;
}

export interface SumOptions extends ReduceOptions {
  /**
   * The result's dtype: x's (default), or 'f32' for a bf16 x, summed as always in f32 and
   * kept so (a bf16 gradient's sum for an f32 parameter is not rounded to bf16 on the way).
   */
  dtype?: DType;
}

type Axis = number | null | undefined;

function reducedShape(shape: readonly number[], axis: number, keepDims: boolean): number[] {
  if (keepDims) return shape.map((d, i) => (i === axis ? 1 : d));
  return shape.filter((_, i) => i !== axis);
}

function reduceAxis(op: 'sum' | 'mean', x: Tensor, axis: number, keepDims: boolean, dtype: DType): Tensor {
  const kept = reducedShape(x.shape, axis, true);
  const out = empty(kept, { dtype, device: x.device });
  native.reduce(op, x, out, axis);
  const y = keepDims ? out : reshapeOwned(out, reducedShape(x.shape, axis, false));
  const n = x.shape[axis]!;
  return attachGrad(y, op, [x], [], (gy) => {
    const narrowed = noGrad(() => cast(gy.view(kept), x.dtype));
    const g = expandTo(narrowed, x.shape);
    narrowed.dispose();
    return [op === 'mean' ? scaleOwned(g, 1 / n) : g];
  });
}

function reshapeOwned(t: Tensor, shape: readonly number[]): Tensor {
  const v = t.view(shape);
  t.dispose();
  return v;
}

function scaleOwned(t: Tensor, s: number): Tensor {
  native.unary('affine', t, t, s, 0);
  return t;
}

/** A new tensor of `shape` holding x broadcast to it. */
export function expandTo(x: Tensor, shape: readonly number[]): Tensor {
  const out = empty(shape, { dtype: x.dtype, device: x.device });
  native.fill(out, 0);
  native.binary('add', out, x, out);
  return out;
}

function flatAll(x: Tensor): Tensor {
  return x.view([numel(x.shape)]);
}

/** Sum over `axis` (all elements when axis is null or omitted). */
export function sum(x: Tensor, axis?: Axis, opts: SumOptions = {}): Tensor {
  return reduceEntry('sum', x, axis, opts);
}

/** Mean over `axis` (all elements when axis is null or omitted). */
export function mean(x: Tensor, axis?: Axis, opts: ReduceOptions = {}): Tensor {
  return reduceEntry('mean', x, axis, opts);
}

function reduceEntry(op: 'sum' | 'mean', xIn: Tensor, axis: Axis, opts: SumOptions): Tensor {
  const x = floatTensor(op, 'x', xIn);
  const keepDims = opts.keepDims === undefined ? false : checkBoolean(op, 'keepDims', opts.keepDims);
  const dtype = opts.dtype ?? x.dtype;
  if (!sameOrWider(x.dtype, dtype)) throw argError(op, 'dtype', `x's dtype ${x.dtype}${x.dtype === 'bf16' ? " or 'f32'" : ''}`, opts.dtype);
  if (axis === null || axis === undefined) {
    const flat = flatAll(x);
    const flatG = attachGrad(flat, 'reshape', [x], [], (gy) => [gy.view(x.shape)]);
    const r = reduceAxis(op, flatG, 0, false, dtype);
    flat.dispose();
    return keepDims ? reshapeGrad(r, x.shape.map(() => 1)) : r;
  }
  return reduceAxis(op, x, checkAxis(op, 'axis', axis, x.rank), keepDims, dtype);
}

function reshapeGrad(t: Tensor, shape: number[]): Tensor {
  const v = t.view(shape);
  const r = attachGrad(v, 'reshape', [t], [], (gy) => [gy.view(t.shape)]);
  t.dispose();
  return r;
}

/** Maximum over `axis`, and the index of the first maximum (i32). */
export function maxWithIndices(xIn: Tensor, axisIn: number, opts: ReduceOptions = {}): { values: Tensor; indices: Tensor } {
  const x = floatTensor('max', 'x', xIn);
  const axis = checkAxis('max', 'axis', axisIn, x.rank);
  const keepDims = opts.keepDims ?? false;
  const kept = reducedShape(x.shape, axis, true);
  const values = empty(kept, { dtype: x.dtype, device: x.device });
  const indices = empty(kept, { dtype: 'i32', device: x.device });
  native.reduce('max', x, values, axis, indices);
  const finalShape = reducedShape(x.shape, axis, keepDims);
  const v = keepDims ? values : reshapeOwned(values, finalShape);
  const idxOut = keepDims ? indices.view(kept) : indices.view(finalShape);
  attachGrad(v, 'max', [x], [indices], (gy, [idx]) => {
    const dx = emptyLike(x);
    native.reduceMaxBackward(gy.view(kept), idx!, dx, axis);
    return [dx];
  });
  indices.dispose();
  return { values: v, indices: idxOut };
}

/** Maximum over `axis` (all elements when axis is null or omitted). */
export function max(x: Tensor, axis?: Axis, opts: ReduceOptions = {}): Tensor {
  floatTensor('max', 'x', x);
  if (axis === null || axis === undefined) {
    const flat = attachGrad(flatAll(x), 'reshape', [x], [], (gy) => [gy.view(x.shape)]);
    const { values, indices } = maxWithIndices(flat, 0);
    indices.dispose();
    flat.dispose();
    return opts.keepDims ? reshapeGrad(values, x.shape.map(() => 1)) : values;
  }
  const { values, indices } = maxWithIndices(x, axis, opts);
  indices.dispose();
  return values;
}

/**
 * Sums x down to `shape`, the inverse of numpy broadcasting (used for the gradients of
 * broadcast ops). Returns x itself when the shapes already match.
 */
export function sumTo(x: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(x.shape, shape)) return x;
  const lead = x.rank - shape.length;
  let cur = x;
  // Leading dims that the target does not have: one reduction over their product.
  if (lead > 0) {
    const leadN = numel(x.shape.slice(0, lead));
    const flat = cur.view([leadN, ...x.shape.slice(lead)]);
    const out = empty([1, ...x.shape.slice(lead)], { dtype: x.dtype, device: x.device });
    native.reduce('sum', flat, out, 0);
    flat.dispose();
    cur = reshapeOwned(out, x.shape.slice(lead));
  }
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1 && cur.shape[d] !== 1) {
      const out = empty(cur.shape.map((s, i) => (i === d ? 1 : s)), { dtype: x.dtype, device: x.device });
      native.reduce('sum', cur, out, d);
      if (cur !== x) cur.dispose();
      cur = out;
    }
  }
  return cur === x ? emptyCopy(x) : cur;
}

function emptyCopy(x: Tensor): Tensor {
  const c = emptyLike(x);
  native.copy(x, c);
  return c;
}
