// permute (general N-D transpose, rank <= 8) and transpose (swap two dims). Tensors are
// contiguous, so a permutation that changes memory order is a copy; one that only moves
// size-1 dims is a view.
import { native } from '../../native.js';
import { attachGrad } from '../autograd.js';
import { checkAxis, shapeStr } from '../check.js';
import { checkTensor, empty, type Tensor } from '../tensor.js';

function checkPerm(op: string, dims: unknown, rank: number): number[] {
  const bad = (): Error =>
    new Error(`${op}: expected a permutation of the ${rank} dims of x for dims, got ${Array.isArray(dims) ? shapeStr(dims) : String(dims)}`);
  if (!Array.isArray(dims) || dims.length !== rank) throw bad();
  const seen = new Set<number>();
  const perm = dims.map((d: unknown) => {
    if (typeof d !== 'number' || !Number.isInteger(d) || d < -rank || d >= rank) throw bad();
    const a = d < 0 ? d + rank : d;
    if (seen.has(a)) throw bad();
    seen.add(a);
    return a;
  });
  return perm;
}

/** True when the dims larger than 1 keep their relative order: the memory does not move. */
function keepsOrder(shape: readonly number[], perm: readonly number[]): boolean {
  let last = -1;
  for (const d of perm) {
    if (shape[d] === 1) continue;
    if (d < last) return false;
    last = d;
  }
  return true;
}

/** y with y.shape[k] = x.shape[dims[k]] (negative dims count from the end). */
export function permute(xIn: Tensor, dims: readonly number[]): Tensor {
  const x = checkTensor('permute', 'x', xIn);
  const perm = checkPerm('permute', dims, x.rank);
  const shape = perm.map((d) => x.shape[d]!);
  const xShape = x.shape;
  if (keepsOrder(x.shape, perm)) return attachGrad(x.view(shape), 'permute', [x], [], (gy) => [gy.view(xShape)]);
  const inverse = new Array<number>(perm.length);
  perm.forEach((d, k) => (inverse[d] = k));
  const y = empty(shape, { dtype: x.dtype, device: x.device });
  native.permute(x, y, perm);
  return attachGrad(y, 'permute', [x], [], (gy) => {
    const g = empty(xShape, { dtype: gy.dtype, device: gy.device });
    native.permute(gy, g, inverse);
    return [g];
  });
}

/** Swaps dims a and b (negative dims count from the end). */
export function transpose(xIn: Tensor, a: number, b: number): Tensor {
  const x = checkTensor('transpose', 'x', xIn);
  const da = checkAxis('transpose', 'a', a, x.rank);
  const db = checkAxis('transpose', 'b', b, x.rank);
  // A rank-0 tensor has one (virtual) dim, as for the other axis arguments.
  if (x.rank === 0) return permute(x, []);
  const perm = x.shape.map((_, i) => i);
  perm[da] = db;
  perm[db] = da;
  return permute(x, perm);
}
