// Matrix products: matmul (2-D or batched, transpose flags, fused bias), linear (a layer
// with OpenCLIP's [out, in] weight layout) and mlp (the transformer MLP, two linears around an
// activation fused into their stores). Every product, forward or backward, is one call of the
// native batched GEMM; the gradients only change which operands and trans flags it gets.
import { native, type MatmulEpilogue } from '../../native.js';
import { attachGrad, isGradEnabled } from '../autograd.js';
import { autocastDtype, autocastProduct, productOperands } from '../autocast.js';
import { argError, checkActivation, checkBoolean, sameShape, shapeStr, type MlpActivation } from '../check.js';
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

/**
 * op(a) · op(b) (+ bias) into a new tensor, without recording a gradient; through an
 * activation epilogue (lib/native.ts) when given, aux its second tensor.
 */
function gemm(a: Tensor, b: Tensor, ta: boolean, tb: boolean, bias: Tensor | null = null, epilogue: MatmulEpilogue = 'none', aux: Tensor | null = null): Tensor {
  const out = empty(productShape('matmul', a, b, ta, tb), { dtype: a.dtype, device: a.device });
  try {
    native.matmul(a, b, bias, out, ta, tb, false, epilogue, aux);
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

export type { MlpActivation };

/** Weight [rows, cols] and bias [rows] or null of one of mlp's linears. */
function checkLinearParams(op: string, name: string, weight: Tensor, bias: Tensor | null, rows: number, cols: number): void {
  if (!sameShape(weight.shape, [rows, cols])) throw new Error(`${op}: expected shape [${rows}, ${cols}] for ${name}Weight, got ${shapeStr(weight.shape)}`);
  if (bias && !sameShape(bias.shape, [rows])) throw new Error(`${op}: expected shape [${rows}] for ${name}Bias, got ${shapeStr(bias.shape)}`);
}

/**
 * The transformer MLP, c_proj(act(c_fc(x))): linear(activation(linear(x, fcWeight, fcBias)),
 * projWeight, projBias) with OpenCLIP's layouts (fcWeight [hidden, width], projWeight [width,
 * hidden], biases or null) and x [..., width], in one op whose activation ('gelu', the erf
 * form, or 'quickGelu') runs in the GEMMs' stores: forward, c_fc's product stores the
 * activation and the pre-activation the backward needs; backward, the product giving the
 * activation's output gradient stores it times act'. In bf16 that moves 6 bytes per hidden
 * element less than a separate elementwise op each way (the hidden layer is 4 x width per
 * token). Values and gradients are exactly those of the three separate ops. A product under
 * autocast, like linear.
 */
export function mlp(xIn: Tensor, fcWeightIn: Tensor, fcBiasIn: Tensor | null, projWeightIn: Tensor, projBiasIn: Tensor | null, activation: MlpActivation = 'gelu'): Tensor {
  const op = 'mlp';
  const x = floatTensor(op, 'x', xIn);
  const fcWeight = floatTensor(op, 'fcWeight', fcWeightIn);
  const projWeight = floatTensor(op, 'projWeight', projWeightIn);
  const fcBias = fcBiasIn === null || fcBiasIn === undefined ? null : floatTensor(op, 'fcBias', fcBiasIn);
  const projBias = projBiasIn === null || projBiasIn === undefined ? null : floatTensor(op, 'projBias', projBiasIn);
  checkActivation(op, activation);
  const named: [string, Tensor | null][] = [['x', x], ['fcWeight', fcWeight], ['fcBias', fcBias], ['projWeight', projWeight], ['projBias', projBias]];
  const given = named.filter((p): p is [string, Tensor] => p[1] !== null);
  productOperands(op, given.map(([n]) => n), ...given.map(([, t]) => t));
  if (fcWeight.rank !== 2) throw new Error(`${op}: expected shape [hidden, width] for fcWeight, got ${shapeStr(fcWeight.shape)}`);
  const [hidden, width] = fcWeight.shape as [number, number];
  if (x.rank < 1 || x.shape[x.rank - 1] !== width) {
    throw new Error(`${op}: expected shape [..., ${width}] for x (fcWeight is ${shapeStr(fcWeight.shape)}), got ${shapeStr(x.shape)}`);
  }
  checkLinearParams(op, 'fc', fcWeight, fcBias, hidden, width);
  checkLinearParams(op, 'proj', projWeight, projBias, width, hidden);
  if (autocastDtype() !== null) {
    const amp = autocastProduct([x, fcWeight, fcBias, projWeight, projBias], ([x2, w1, b1, w2, b2]) => mlp(x2!, w1!, b1, w2!, b2, activation));
    if (amp) return amp;
  }
  if (x.rank === 2) return mlp2d(x, fcWeight, fcBias, projWeight, projBias, activation);
  const lead = x.shape.slice(0, -1);
  const x2 = reshape(x, [numel(lead), width]);
  const y2 = mlp2d(x2, fcWeight, fcBias, projWeight, projBias, activation);
  x2.dispose();
  const y = reshape(y2, [...lead, width]);
  y2.dispose();
  return y;
}

/** mlp on rows x [R, width], checked. */
function mlp2d(x: Tensor, w1: Tensor, b1: Tensor | null, w2: Tensor, b2: Tensor | null, activation: MlpActivation): Tensor {
  const inputs = [x, w1, ...(b1 ? [b1] : []), w2, ...(b2 ? [b2] : [])];
  const recording = isGradEnabled() && inputs.some((t) => t.requiresGrad);
  // The backward needs the pre-activation when anything below the activation wants a gradient.
  const needsBelow = x.requiresGrad || w1.requiresGrad || (b1?.requiresGrad ?? false);
  const pre = recording && needsBelow ? empty([x.shape[0]!, w1.shape[0]!], { dtype: x.dtype, device: x.device }) : null;
  let a: Tensor | null = null;
  let y: Tensor;
  try {
    a = gemm(x, w1, false, true, b1, activation, pre);
    y = gemm(a, w2, false, true, b2);
  } catch (e) {
    a?.dispose();
    pre?.dispose();
    throw e;
  }
  if (!recording) {
    a.dispose();
    return y;
  }
  // Saved, each only when a gradient reads it: x (dW1), a (dW2), pre and the weights (dz, dx).
  const slots: Record<string, number> = {};
  const saved: Tensor[] = [];
  const keep = (name: string, t: Tensor | null, when: boolean): void => {
    if (t && when) slots[name] = saved.push(t) - 1;
  };
  keep('x', x, w1.requiresGrad);
  keep('a', a, w2.requiresGrad);
  keep('pre', pre, true);
  keep('w1', w1, x.requiresGrad);
  keep('w2', w2, needsBelow);
  const out = attachGrad(y, 'mlp', inputs, saved, (gy, s, needs) => {
    const [nx, nw1, ...rest] = needs;
    const nb1 = b1 ? rest.shift()! : false;
    const nw2 = rest.shift()!;
    const nb2 = b2 ? rest.shift()! : false;
    const dw2 = nw2 ? gemm(gy, s[slots.a!]!, true, false) : null;
    const db2 = nb2 ? sumTo(gy, [w2.shape[0]!]) : null;
    let dx: Tensor | null = null, dw1: Tensor | null = null, db1: Tensor | null = null;
    if (nx || nw1 || nb1) {
      const dz = gemm(gy, s[slots.w2!]!, false, false, null, `${activation}Backward`, s[slots.pre!]!);
      if (nw1) dw1 = gemm(dz, s[slots.x!]!, true, false);
      if (nb1) db1 = sumTo(dz, [w1.shape[0]!]);
      if (nx) dx = gemm(dz, s[slots.w1!]!, false, false);
      if (db1 !== dz) dz.dispose();
    }
    return [dx, dw1, ...(b1 ? [db1] : []), dw2, ...(b2 ? [db2] : [])];
  });
  a.dispose();
  pre?.dispose();
  return out;
}
