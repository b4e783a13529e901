// Checks shared by the ops over the last axis (softmax, crossEntropy, layerNorm,
// l2Normalize), which see a tensor as [rows, n]; mirrors native/addon/rows.h.
import { argError, shapeStr } from '../check.js';
import type { Tensor } from '../tensor.js';

/** The last-axis length of x; throws unless x has a last axis of size >= 1. */
export function lastAxis(op: string, arg: string, x: Tensor): number {
  if (x.rank < 1) throw new Error(`${op}: expected at least one dimension for ${arg}.shape, got ${shapeStr(x.shape)}`);
  const n = x.shape[x.rank - 1]!;
  if (n < 1) throw new Error(`${op}: expected a last axis of size >= 1 for ${arg}.shape, got ${shapeStr(x.shape)}`);
  return n;
}

/** A finite number >= 0 (eps attributes). */
export function checkEps(op: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw argError(op, 'eps', 'a finite number >= 0', v);
  return v;
}
