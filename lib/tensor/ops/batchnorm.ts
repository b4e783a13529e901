// Batch normalization over the channel axis of channels-last activations (PyTorch's
// BatchNorm2d applied to NHWC data), as UniRepLKNet uses it after every depthwise conv and
// FFN. Composed from reductions and broadcast arithmetic, so autograd derives the backward;
// every element passes through about five elementwise ops, cheap next to the convolutions
// and GEMMs around it. Intermediates live in a scope and are freed on return.
import { native } from '../../native.js';
import { noGrad } from '../autograd.js';
import { scope } from '../scope.js';
import { argError, checkBoolean, checkFinite, shapeStr } from '../check.js';
import type { Tensor } from '../tensor.js';
import { add, affine, mul, rsqrt, square, sub } from './elementwise.js';
import { mean } from './reduce.js';
import { reshape } from './shape.js';
import { expectShape, floatTensor, sameKind } from './util.js';

export interface BatchNormOptions {
  /** Normalize with the batch's statistics and update the running ones (default false). */
  training?: boolean;
  /** Weight of the new batch statistic in the running averages (PyTorch's 0.1, default). */
  momentum?: number;
  /** Added to the variance (default 1e-5, PyTorch's). */
  eps?: number;
}

/**
 * y = (x - mean) / sqrt(var + eps) * weight + bias per channel, x [..., C] (channels last,
 * e.g. NHWC), weight, bias, runningMean, runningVar [C]. Training: mean and the biased
 * variance over every element of a channel; runningMean and runningVar are updated in place
 * as PyTorch does (r = (1 - momentum) r + momentum s, with the unbiased variance for
 * runningVar). Eval: the running statistics are used and not changed. Gradients flow to x,
 * weight and bias; the running statistics never carry one.
 */
export function batchNorm(
  xIn: Tensor, weightIn: Tensor, biasIn: Tensor, runningMeanIn: Tensor, runningVarIn: Tensor, opts: BatchNormOptions = {},
): Tensor {
  const op = 'batchNorm';
  if (opts === null || typeof opts !== 'object') throw argError(op, 'opts', 'an options object', opts);
  const x = floatTensor(op, 'x', xIn);
  if (x.rank < 2) throw new Error(`${op}: expected a tensor [..., C] of rank >= 2 for x, got ${shapeStr(x.shape)}`);
  const c = x.shape[x.rank - 1]!;
  const vectors = { weight: weightIn, bias: biasIn, runningMean: runningMeanIn, runningVar: runningVarIn };
  const [weight, bias, runningMean, runningVar] = Object.entries(vectors).map(([name, t]) => {
    const v = floatTensor(op, name, t);
    sameKind(op, ['x', name], x, v);
    expectShape(op, name, v, [c]);
    return v;
  }) as [Tensor, Tensor, Tensor, Tensor];
  const training = opts.training === undefined ? false : checkBoolean(op, 'training', opts.training);
  const momentum = checkFinite(op, 'momentum', opts.momentum ?? 0.1);
  if (momentum < 0 || momentum > 1) throw argError(op, 'momentum', 'a number in [0, 1]', momentum);
  const eps = checkFinite(op, 'eps', opts.eps ?? 1e-5);
  if (eps < 0) throw argError(op, 'eps', 'a finite number >= 0', eps);
  return scope(() =>
    training ? trainingForward(op, x, weight, bias, runningMean, runningVar, momentum, eps) : evalForward(x, weight, bias, runningMean, runningVar, eps),
  );
}

function evalForward(x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor, eps: number): Tensor {
  // y = x * scale + shift with scale = weight / sqrt(var + eps), shift = bias - mean * scale.
  const scale = mul(rsqrt(affine(runningVar, 1, eps)), weight);
  const shift = sub(bias, mul(runningMean, scale));
  return add(mul(x, scale), shift);
}

function trainingForward(
  op: string, x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor, momentum: number, eps: number,
): Tensor {
  const c = x.shape[x.rank - 1]!;
  const rows = x.size / c;
  if (rows < 2) throw new Error(`${op}: expected more than one value per channel in training, got x of shape ${shapeStr(x.shape)}`);
  const x2 = reshape(x, [rows, c]);
  const mu = mean(x2, 0);
  const xc = sub(x2, mu);
  const variance = mean(square(xc), 0);
  const scale = mul(rsqrt(affine(variance, 1, eps)), weight);
  const y2 = add(mul(xc, scale), bias);
  noGrad(() => {
    const newMean = add(affine(runningMean, 1 - momentum), affine(mu, momentum));
    const newVar = add(affine(runningVar, 1 - momentum), affine(variance, (momentum * rows) / (rows - 1)));
    native.copy(newMean, runningMean);
    native.copy(newVar, runningVar);
  });
  return reshape(y2, x.shape);
}
