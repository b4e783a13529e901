// Mixed precision by op, as torch.autocast does it: inside `autocast('bf16', fn)` the matrix
// products (matmul and so linear and conv2d, attention) read bf16 copies of their f32 inputs,
// accumulate in f32 and hand back f32, while everything else (norms, softmax statistics,
// losses, the optimizer's master weights) stays f32. On CUDA that puts the products on the
// tensor cores; on the CPU it only rounds their inputs (the CPU kernels widen bf16 to f32), so
// there it is slower than f32 and useful for checking what bf16 does to a run.
import { argError } from './check.js';
import { cast } from './ops/shape.js';
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
 * copies of the inputs (autocast off inside, so it does not recurse) and its result comes back
 * as f32. Returns null when autocast leaves the op alone. Gradients flow through the casts to
 * the f32 inputs.
 */
export function autocastProduct(
  inputs: readonly (Tensor | null)[],
  fn: (lowered: (Tensor | null)[]) => Tensor,
): Tensor | null {
  const dtype = current;
  if (dtype === null || !inputs.some((t) => t !== null && t.dtype === 'f32')) return null;
  const lowered = inputs.map((t) => (t === null ? null : cast(t, dtype)));
  try {
    const low = autocast(null, () => fn(lowered));
    const out = cast(low, 'f32');
    if (out !== low) low.dispose();
    return out;
  } finally {
    lowered.forEach((t, i) => {
      if (t !== null && t !== inputs[i]) t.dispose();
    });
  }
}
