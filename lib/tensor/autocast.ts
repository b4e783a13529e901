// Mixed precision by op, as torch.autocast does it: inside `autocast('bf16', fn)` the matrix
// products (matmul and so linear and conv2d, attention) read bf16 copies of their f32 inputs,
// accumulate in f32 and hand back bf16, while everything else keeps its inputs' dtype: norms,
// softmax statistics, losses and the optimizer's master weights stay f32, and an op that meets
// a bf16 product and an f32 tensor (the residual add) gives f32, as PyTorch's type promotion
// does. Handing back bf16 is what keeps activations in 2 bytes between the products (an f32
// copy of every product would move 3 more bytes per element there and back). On CUDA that puts
// the products on the tensor cores; on the CPU it only rounds their inputs and outputs (the CPU
// kernels widen bf16 to f32), so there it is slower than f32 and useful for checking what bf16
// does to a run.
import { argError } from './check.js';
import { onCast } from './ops/promote.js';
import { cast } from './ops/shape.js';
import { sameDevice, sameKind } from './ops/util.js';
import type { Tensor } from './tensor.js';

export type AutocastDType = 'bf16';

let current: AutocastDType | null = null;

/** The dtype that matrix products compute in right now, or null outside autocast. */
export function autocastDtype(): AutocastDType | null {
  return current;
}

/**
 * Runs fn (synchronously) with the matrix products in `dtype`; null runs it in full precision,
 * also inside an outer autocast.
 */
export function autocast<R>(dtype: AutocastDType | null, fn: () => R): R {
  if (dtype !== null && dtype !== 'bf16') throw argError('autocast', 'dtype', "'bf16' or null", dtype);
  if (typeof fn !== 'function') throw argError('autocast', 'fn', 'a function', fn);
  const saved = current;
  current = dtype;
  try {
    return fn();
  } finally {
    current = saved;
  }
}

/**
 * The autocast form of a product op: when autocast is on and an input is f32, fn runs on bf16
 * copies of the inputs (autocast off inside, so it does not recurse) and its bf16 result is
 * returned. Returns null when autocast leaves the op alone. Gradients flow through the casts
 * to the f32 inputs.
 */
export function autocastProduct(
  inputs: readonly (Tensor | null)[],
  fn: (lowered: (Tensor | null)[]) => Tensor,
): Tensor | null {
  const dtype = current;
  if (dtype === null || !inputs.some((t) => t !== null && t.dtype === 'f32')) return null;
  return onCast(inputs, dtype, (lowered) => autocast(null, () => fn(lowered)));
}

/**
 * x as autocast's products will read it: a bf16 copy of an f32 x while autocast is on, x itself
 * otherwise. For an activation that several products read (UniRepLKNet's six dilated branches):
 * one copy, and one cast of the summed gradient back, instead of one per product. Gradients flow
 * back through the cast.
 */
export function autocastInput(x: Tensor): Tensor {
  return current !== null && x.dtype === 'f32' ? cast(x, current) : x;
}

/**
 * The check on a product op's operands: one device, and one dtype unless autocast is on (it
 * lowers every operand to its dtype, so a bf16 activation meets an f32 weight there).
 */
export function productOperands(op: string, names: string[], ...ts: Tensor[]): void {
  if (current === null) sameKind(op, names, ...ts);
  else sameDevice(op, names, ...ts);
}
