// Running an op on cast copies of its inputs: autocast's products on bf16 copies, and the ops
// that keep f32 (LayerNorm) on f32 copies when a bf16 activation meets their f32 parameters;
// and the rule of the norms whose kernels take that mix as it is (BatchNorm, GRN).
import type { DType, Tensor } from '../tensor.js';
import { cast } from './shape.js';
import { sameKind } from './util.js';

/** True when the float tensors given (nulls skipped) include both f32 and bf16. */
export function mixedFloats(...ts: (Tensor | null)[]): boolean {
  let f32 = false, bf16 = false;
  for (const t of ts) {
    if (t?.dtype === 'f32') f32 = true;
    else if (t?.dtype === 'bf16') bf16 = true;
  }
  return f32 && bf16;
}

/**
 * fn on the tensors cast to `dtype` (nulls and tensors already in it passed as they are); the
 * copies are freed when fn returns. Gradients flow back through the casts in each input's dtype.
 */
export function onCast(ts: readonly (Tensor | null)[], dtype: DType, fn: (cast: (Tensor | null)[]) => Tensor): Tensor {
  const copies = ts.map((t) => (t === null ? null : cast(t, dtype)));
  try {
    return fn(copies);
  } finally {
    copies.forEach((c, i) => {
      if (c !== null && c !== ts[i]) c.dispose();
    });
  }
}

/**
 * The dtype rule of the ops that compute in f32 (LayerNorm): a bf16 x beside f32 parameters (a
 * bf16 product's output under autocast) runs as fn on an f32 copy of x, as PyTorch's autocast
 * runs layer_norm in f32. Otherwise every parameter must have x's dtype (an error naming it
 * if not), and null is returned for the op to go on with x as it is.
 */
export function onWidenedInput(op: string, x: Tensor, params: readonly [string, Tensor | null][], fn: (x32: Tensor) => Tensor): Tensor | null {
  if (x.dtype === 'bf16' && params.some(([, p]) => p?.dtype === 'f32')) return onCast([x], 'f32', ([x32]) => fn(x32!));
  for (const [name, p] of params) if (p) sameKind(op, ['x', name], x, p);
  return null;
}

/**
 * True when `wide` is `dtype` or, beside bf16, f32: the mixes the native kernels take for a
 * norm's parameters and a sum's output (CF_SAME_OR_WIDER_DTYPES in native/include/core.h).
 */
export function sameOrWider(dtype: DType, wide: DType): boolean {
  return wide === dtype || (dtype === 'bf16' && wide === 'f32');
}

/**
 * The dtype rule of the norms whose kernels read bf16 activations beside f32 parameters
 * (BatchNorm, GRN), as PyTorch's batch norm does under autocast: the parameters share one
 * dtype, x's or f32 beside a bf16 x, and the result keeps x's dtype. An error names the
 * parameter that breaks it.
 */
export function checkParamDtypes(op: string, x: Tensor, params: readonly [string, Tensor | null][]): void {
  const given = params.filter((p): p is [string, Tensor] => p[1] !== null);
  if (given.length === 0) return;
  const [firstName, first] = given[0]!;
  for (const [name, p] of given) {
    if (p.dtype !== first.dtype) throw new Error(`${op}: expected ${firstName} and ${name} of the same dtype, got ${first.dtype} and ${p.dtype}`);
  }
  if (!sameOrWider(x.dtype, first.dtype)) {
    throw new Error(`${op}: expected ${firstName} of x's dtype ${x.dtype}${x.dtype === 'bf16' ? ' or f32' : ''}, got ${first.dtype}`);
  }
}
