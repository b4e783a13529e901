// Matrix products: matmul (2-D or batched, transpose flags, fused bias) and linear (a layer
// with OpenCLIP's [out, in] weight layout). Every product, forward or backward, is one call
// of the native batched GEMM; the gradients only change which operands and trans flags it gets.
import { native } from '../../native.js';
import { attachGrad } from '../autograd.js';
import { autocastDtype, autocastProduct, productOperands } from '../autocast.js';
import { argError, checkBoolean, sameShape, shapeStr } from '../check.js';
import { empty, type Tensor } from '../tensor.js';
import { sumTo } from './reduce.js';
import { reshape } from './shape.js';
import { floatTensor, numel } from './util.js';

export interface MatmulOptions {
  /** Use a's last two dims transposed: a is [..., K, M] (default false). */
  transA?: boolean;
  /** Use b's last two dims transposed: b is [..., N, K] (default false). */
  transB?: boolean;
  /** [N], added to every row of the product. */
  bias?: Tensor | null;
}

/** The output shape of op(a) · op(b): batch dims of the higher-rank operand, then [M, N]. */
function productShape(op: string, a: Tensor, b: Tensor, ta: boolean, tb: boolean): number[] {
  for (const [name, t] of [['a', a], ['b', b]] as const) {
    if (t.rank < 2) throw new Error(`${op}: expected a tensor of rank >= 2 for ${name}, got shape ${shapeStr(t.shape)}`);
  }
  const m = a.shape[a.rank - (ta ? 1 : 2)]!;
  const k = a.shape[a.rank - (ta ? 2 : 1)]!;
  const kb = b.shape[b.rank - (tb ? 1 : 2)]!;
  const n = b.shape[b.rank - (tb ? 2 : 1)]!;
  if (kb !== k) {
    const want = tb ? `[..., N, ${k}]` : `[..., ${k}, N]`;
    throw new Error(`${op}: expected shape ${want} for b (K = ${k} from a ${shapeStr(a.shape)}, transA ${ta}, transB ${tb}), got ${shapeStr(b.shape)}`);
  }
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  if (a.rank > 2 && b.rank > 2 && !sameShape(batchA, batchB)) {
    throw new Error(`${op}: expected batch dims ${shapeStr(batchA)} (those of a) for b, or b of rank 2, got shape ${shapeStr(b.shape)}`);
  }
  return [...(a.rank >= b.rank ? batchA : batchB), m, n];
}

/** op(a) · op(b) (+ bias) into a new tensor, without recording a gradient. */
function gemm(a: Tensor, b: Tensor, ta: boolean, tb: boolean, bias: Tensor | null = null): Tensor {
  const out = empty(productShape('matmul', a, b, ta, tb), { dtype: a.dtype, device: a.device });
  try {
    native.matmul(a, b, bias, out, ta, tb, false);
  } catch (e) {
    out.dispose();
    throw e;
  }
  return out;
}

/** A gradient computed batched, summed down to a shared (rank-2) operand's shape. */
function reduceTo(g: Tensor, shape: readonly number[]): Tensor {
  const r = sumTo(g, shape);
  if (r !== g) g.dispose();
  return r;
}

/** [..., R, C] as [prod(...) * R, C]: stacked matrices seen as one tall one. */
function rows(t: Tensor): Tensor {
  return t.view([numel(t.shape.slice(0, -1)), t.shape[t.rank - 1]!]);
}

/**
 * Gradient of a shared (rank-2) B from a batched A when A is not transposed: the batch folds
 * into the rows, so the sum over batch items is part of one GEMM instead of a batched GEMM
 * followed by a reduction.
 */
function foldedWeightGrad(a: Tensor, gy: Tensor, tb: boolean): Tensor {
  const a2 = rows(a);
  const g2 = rows(gy);
  try {
    return tb ? gemm(g2, a2, true, false) : gemm(a2, g2, true, false);
  } finally {
    a2.dispose();
    g2.dispose();
  }
}

/**
 * Matrix product op(a) · op(b) (+ bias), where op transposes the last two dims when
 * transA / transB is set. a is [..., M, K] and b [..., K, N] (as stored: [..., K, M] and
 * [..., N, K] when transposed); the result is [..., M, N]. Batch dims must match, or one
 * operand is 2-D and shared by every batch item (a weight). bias is [N]. f32 or bf16, with
 * f32 accumulation; gradients flow to a, b and bias.
 */
export function matmul(aIn: Tensor, bIn: Tensor, opts: MatmulOptions = {}): Tensor {
  const op = 'matmul';
  if (opts === null || typeof opts !== 'object') throw argError(op, 'opts', 'an options object', opts);
  const a = floatTensor(op, 'a', aIn);
  const b = floatTensor(op, 'b', bIn);
  productOperands(op, ['a', 'b'], a, b);
  const ta = opts.transA === undefined ? false : checkBoolean(op, 'transA', opts.transA);
  const tb = opts.transB === undefined ? false : checkBoolean(op, 'transB', opts.transB);
  const bias = opts.bias === undefined || opts.bias === null ? null : floatTensor(op, 'bias', opts.bias);
  const shape = productShape(op, a, b, ta, tb);
  if (bias) {
    productOperands(op, ['a', 'bias'], a, bias);
    const n = shape[shape.length - 1]!;
    if (!sameShape(bias.shape, [n])) throw new Error(`${op}: expected shape [${n}] for bias, got ${shapeStr(bias.shape)}`);
  }
  // Checked first so that the common case, outside autocast, builds no closure per call.
  if (autocastDtype() !== null) {
    const amp = autocastProduct([a, b, bias], ([a2, b2, bias2]) => matmul(a2!, b2!, { transA: ta, transB: tb, bias: bias2 }));
    if (amp) return amp;
  }
  const out = gemm(a, b, ta, tb, bias);
  const inputs = bias ? [a, b, bias] : [a, b];
  // dA reads B and dB reads A: keep each only when the other side wants a gradient.
  const keepA = b.requiresGrad, keepB = a.requiresGrad;
  const saved = [...(keepA ? [a] : []), ...(keepB ? [b] : [])];
  const aShape = a.shape, bShape = b.shape;
  return attachGrad(out, op, inputs, saved, (gy, kept, needs) => {
    let gA: Tensor | null = null;
    let gB: Tensor | null = null;
    if (needs[0]) {
      // d op(A) = dC · op(B)^T; stored transposed when transA.
      const B = kept[kept.length - 1]!;
      const g = ta ? gemm(B, gy, tb, true) : gemm(gy, B, false, !tb);
      gA = aShape.length === 2 && g.rank > 2 ? reduceTo(g, aShape) : g;
    }
    if (needs[1]) {
      // d op(B) = op(A)^T · dC; stored transposed when transB.
      const A = kept[0]!;
      if (bShape.length === 2 && A.rank > 2 && !ta) {
        gB = foldedWeightGrad(A, gy, tb);
      } else {
        const g = tb ? gemm(gy, A, true, ta) : gemm(A, gy, !ta, false);
        gB = bShape.length === 2 && g.rank > 2 ? reduceTo(g, bShape) : g;
      }
    }
    const grads = [gA, gB];
    if (bias) grads.push(needs[2] ? sumTo(gy, bias.shape) : null);
    return grads;
  });
}

/**
 * A linear layer: x · weight^T + bias, with weight [out, in] as OpenCLIP (torch.nn.Linear)
 * stores it, bias [out], and x [..., in] of any rank >= 1 (leading dims are flattened into
 * rows as a view). The result is [..., out].
 */
export function linear(xIn: Tensor, weightIn: Tensor, biasIn: Tensor | null = null): Tensor {
  const op = 'linear';
  const x = floatTensor(op, 'x', xIn);
  const weight = floatTensor(op, 'weight', weightIn);
  productOperands(op, ['x', 'weight'], x, weight);
  if (weight.rank !== 2) throw new Error(`${op}: expected shape [out, in] for weight, got ${shapeStr(weight.shape)}`);
  const [outF, inF] = weight.shape as [number, number];
  if (x.rank < 1 || x.shape[x.rank - 1] !== inF) {
    throw new Error(`${op}: expected shape [..., ${inF}] for x (weight is ${shapeStr(weight.shape)}), got ${shapeStr(x.shape)}`);
  }
  const bias = biasIn === null || biasIn === undefined ? null : floatTensor(op, 'bias', biasIn);
  if (bias) {
    productOperands(op, ['x', 'bias'], x, bias);
    if (!sameShape(bias.shape, [outF])) throw new Error(`${op}: expected shape [${outF}] for bias, got ${shapeStr(bias.shape)}`);
  }
  if (x.rank === 2) return matmul(x, weight, { transB: true, bias });
  const lead = x.shape.slice(0, -1);
  const x2 = reshape(x, [numel(lead), inF]);
  const y2 = matmul(x2, weight, { transB: true, bias });
  x2.dispose();
  const y = reshape(y2, [...lead, outF]);
  y2.dispose();
  return y;
}
