// Global response normalization (ConvNeXt V2, in the form UniRepLKNet uses after the FFN's
// GELU), on channels-last activations, composed from reductions and broadcast arithmetic.
import { argError, shapeStr } from '../check.js';
import { scope } from '../scope.js';
import type { Tensor } from '../tensor.js';
import { add, affine, div, mul, sqrt, square } from './elementwise.js';
import { mean, sum } from './reduce.js';
import { reshape } from './shape.js';
import { floatTensor, numel, sameKind } from './util.js';

/** Added to the channel mean of the norms before dividing (UniRepLKNet's constant). */
export const GRN_EPS = 1e-6;

function channelVector(op: string, arg: string, t: Tensor, x: Tensor, c: number): Tensor {
  const v = floatTensor(op, arg, t);
  sameKind(op, ['x', arg], x, v);
  if (numel(v.shape) !== c || v.shape.slice(0, -1).some((d) => d !== 1)) {
    throw new Error(`${op}: expected shape [C] or [1, 1, 1, C] with C = ${c} for ${arg}, got ${shapeStr(v.shape)}`);
  }
  return reshape(v, [c]);
}

/**
 * GRN over x [N, H, W, C]: G[n, c] = ||x[n, :, :, c]||_2 (over H and W),
 * Nx = G / (mean over c of G + 1e-6), y = (gamma * Nx + 1) * x + beta. gamma and beta are
 * [C] or [1, 1, 1, C] (the checkpoint's shape); beta may be null (the deploy form, where it
 * was folded into the next linear layer). Gradients flow to x, gamma and beta.
 */
export function grn(xIn: Tensor, gammaIn: Tensor, betaIn: Tensor | null = null): Tensor {
  const op = 'grn';
  const x = floatTensor(op, 'x', xIn);
  if (x.rank !== 4) throw new Error(`${op}: expected a rank-4 tensor [N, H, W, C] for x, got ${shapeStr(x.shape)}`);
  const [n, h, w, c] = x.shape as [number, number, number, number];
  if (betaIn !== null && betaIn !== undefined && typeof betaIn !== 'object') throw argError(op, 'beta', 'a Tensor or null', betaIn);
  return scope(() => {
    const gamma = channelVector(op, 'gamma', gammaIn, x, c);
    const beta = betaIn ? channelVector(op, 'beta', betaIn, x, c) : null;
    const x3 = reshape(x, [n, h * w, c]);
    const norms = sqrt(sum(square(x3), 1, { keepDims: true }));
    const normalized = div(norms, affine(mean(norms, 2, { keepDims: true }), 1, GRN_EPS));
    const scaled = mul(x3, affine(mul(normalized, gamma), 1, 1));
    return reshape(beta ? add(scaled, beta) : scaled, x.shape);
  });
}
