// Gradient-norm clipping, as torch.nn.utils.clip_grad_norm_ (L2, foreach): the global norm
// over every gradient, and every gradient scaled by min(1, maxNorm / (norm + 1e-6)).
//
// Everything stays on the device and the norm comes back as a tensor: reading it would
// wait for the whole backward pass, and the training loop only needs its value on logging
// steps, so it calls .item() there and nowhere else.
import { native } from '../native.js';
import { noGrad } from '../tensor/autograd.js';
import { argError } from '../tensor/check.js';
import { add, affine, clamp, reciprocal, sqrt, square } from '../tensor/ops/elementwise.js';
import { sum } from '../tensor/ops/reduce.js';
import { cast } from '../tensor/ops/shape.js';
import { scope } from '../tensor/scope.js';
import { checkTensor, zeros, type Tensor } from '../tensor/tensor.js';

/**
 * Scales the gradients of `params` in place so that their global L2 norm is at most
 * maxNorm; returns the norm before clipping (f32, shape [], on the gradients' device).
 * Parameters without a gradient are skipped; with none at all the norm is 0.
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): Tensor {
  const op = 'clipGradNorm';
  if (typeof maxNorm !== 'number' || !(maxNorm > 0) || !Number.isFinite(maxNorm)) throw argError(op, 'maxNorm', 'a finite number > 0', maxNorm);
  if (params === null || typeof (params as Iterable<unknown>)?.[Symbol.iterator] !== 'function') throw argError(op, 'params', 'an iterable of tensors', params);
  const grads: Tensor[] = [];
  let i = 0;
  for (const p of params) {
    checkTensor(op, `params[${i++}]`, p);
    if (p.grad) grads.push(p.grad);
  }
  if (grads.length === 0) return zeros([]);
  const device = grads[0]!.device;
  for (const g of grads) {
    if (g.device !== device) throw new Error(`${op}: expected every gradient on ${device}, got one on ${g.device}`);
    if (g.dtype === 'i32') throw new Error(`${op}: expected f32 or bf16 gradients, got ${g.toString()}`);
  }
  return noGrad(() =>
    scope(() => {
      let total: Tensor | null = null;
      for (const g of grads) {
        const squares = sum(square(g.dtype === 'f32' ? g : cast(g, 'f32')));
        total = total ? add(total, squares) : squares;
      }
      const norm = sqrt(total!);
      const coef = clamp(affine(reciprocal(affine(norm, 1, 1e-6)), maxNorm), -Infinity, 1);
      const coefBf16 = grads.some((g) => g.dtype === 'bf16') ? cast(coef, 'bf16') : null;
      for (const g of grads) native.binary('mul', g, g.dtype === 'f32' ? coef : coefBf16!, g);
      return norm;
    }),
  );
}
