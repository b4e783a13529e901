// Layer normalization over the last axis, with optional elementwise weight and bias.
import { native } from '../../native.js';
import { attachGrad } from '../autograd.js';
import { argError } from '../check.js';
import { empty, emptyLike, type DType, type Tensor } from '../tensor.js';
import { checkEps, lastAxis } from './rows.js';
import { onWidenedInput } from './promote.js';
import { expectShape, floatTensor, sameDevice } from './util.js';

/**
 * (x - mean) / sqrt(var + eps) * weight + bias over the last axis of x [..., D] (biased
 * variance, as PyTorch). weight and bias are [D] with x's dtype and device, or null (a bf16
 * x with f32 ones, as under autocast, is normalized in f32 and gives f32); eps is a finite
 * number >= 0. outDtype 'bf16' with an f32 x writes the result rounded to bf16 (for a bf16
 * product next, instead of an f32 result and a cast); null gives x's dtype. Gradients flow to
 * x, weight and bias; only those that are needed are computed. The saved per-row mean and
 * 1/std are f32 whatever the dtype.
 */
export function layerNorm(xIn: Tensor, weightIn: Tensor | null = null, biasIn: Tensor | null = null, eps = 1e-5, outDtype: DType | null = null): Tensor {
  const op = 'layerNorm';
  const x = floatTensor(op, 'x', xIn);
  if (outDtype !== null && outDtype !== 'f32' && outDtype !== 'bf16') throw argError(op, 'outDtype', "'f32', 'bf16' or null", outDtype);
  const d = lastAxis(op, 'x', x);
  const params: Tensor[] = [];
  const param = (arg: string, t: Tensor | null): Tensor | null => {
    if (t === null || t === undefined) return null;
    const p = floatTensor(op, arg, t);
    sameDevice(op, ['x', arg], x, p);
    expectShape(op, arg, p, [d]);
    params.push(p);
    return p;
  };
  const weight = param('weight', weightIn);
  const bias = param('bias', biasIn);
  checkEps(op, eps);
  const widened = onWidenedInput(op, x, [['weight', weight], ['bias', bias]], (x32) => layerNorm(x32, weight, bias, eps, outDtype));
  if (widened) return widened;
  const yDtype = outDtype ?? x.dtype;
  if (yDtype !== x.dtype && x.dtype !== 'f32') throw argError(op, 'outDtype', `null or '${x.dtype}' for a ${x.dtype} x (only f32 rows can be written as bf16)`, outDtype);
  const rows = x.shape.slice(0, -1);
  const y = emptyLike(x, x.shape, yDtype);
  const mean = empty(rows, { dtype: 'f32', device: x.device });
  const rstd = empty(rows, { dtype: 'f32', device: x.device });
  native.layerNorm(x, weight, bias, y, mean, rstd, eps);
  // Inputs are [x, weight?, bias?]; saved are [x, mean, rstd, weight?].
  const wi = weight ? 1 : -1;
  const bi = bias ? params.length : -1;
  attachGrad(y, op, [x, ...params], weight ? [x, mean, rstd, weight] : [x, mean, rstd], (gy, saved, needs, pendingGrad) => {
    const [xs, ms, rs, ws] = saved;
    // A pre-norm residual block's x has the residual's gradient already: add into it.
    const sum = pendingGrad(0);
    const dx = needs[0] ? (sum ?? emptyLike(xs!)) : null;
    const dw = wi > 0 && needs[wi] ? empty([d], { dtype: xs!.dtype, device: xs!.device }) : null;
    const db = bi > 0 && needs[bi] ? empty([d], { dtype: xs!.dtype, device: xs!.device }) : null;
    native.layerNormBackward(xs!, ws ?? null, ms!, rs!, gy, dx, dw, db, sum !== null);
    const grads: (Tensor | null)[] = [dx];
    if (weight) grads.push(dw);
    if (bias) grads.push(db);
    return grads;
  });
  mean.dispose();
  rstd.dispose();
  return y;
}
