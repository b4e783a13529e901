// Global response normalization (ConvNeXt V2, in the form UniRepLKNet uses after the FFN's
// GELU) on channels-last activations. The two passes over the [N, H, W, C] tensor are native
// (native/include/grn.h: per-sample channel sums, per-sample channel affine), forward and
// backward; what lies between them is [N, C]-sized and done with ordinary ops in f32.
import { native } from '../../native.js';
import { attachGrad, noGrad } from '../autograd.js';
import { argError, checkBoolean, shapeStr } from '../check.js';
import { scope } from '../scope.js';
import { empty, emptyLike, type Tensor } from '../tensor.js';
import { affine, clamp, div, mul, sqrt, square, sub } from './elementwise.js';
import { mean, sum } from './reduce.js';
import { cast, reshape } from './shape.js';
import { checkParamDtypes } from './promote.js';
import { floatTensor, numel, sameDevice } from './util.js';

/** Added to the channel mean of the norms before dividing (UniRepLKNet's constant). */
export const GRN_EPS = 1e-6;

/** Norms below this divide as if they were this, so an all-zero channel gets a zero gradient, not NaN. */
const MIN_NORM = 1e-20;

function channelVector(op: string, arg: string, t: Tensor, x: Tensor, c: number): Tensor {
  const v = floatTensor(op, arg, t);
  sameDevice(op, ['x', arg], x, v);
  if (numel(v.shape) !== c || v.shape.slice(0, -1).some((d) => d !== 1)) {
    throw new Error(`${op}: expected shape [C] or [1, 1, 1, C] with C = ${c} for ${arg}, got ${shapeStr(v.shape)}`);
  }
  return v;
}

export interface GrnOptions {
  /**
   * Normalize GELU(x) (erf form) instead of x, without writing GELU(x) anywhere: UniRepLKNet's
   * act (GELU, then GRN) in GRN's two passes over the activations forward and two backward,
   * where a separate GELU adds one pass each way and keeps its output for the backward.
   * Gradients flow to x through the GELU. Default false.
   */
  gelu?: boolean;
  /**
   * A per-channel bias [C] added to x as GRN's passes read it: GRN(x + inputBias), the bias of
   * the linear layer before GRN, which then writes its product without one. Its gradient (the
   * sum of x's over N, H and W) comes out of the pass that writes x's gradient, where the
   * linear layer would read that gradient once more. Same dtype rules as gamma. Default none.
   */
  inputBias?: Tensor | null;
}

/**
 * GRN over x [N, H, W, C] (x + inputBias when given): G[n, c] = ||x[n, :, :, c]||_2 (over H and W),
 * Nx = G / (mean over c of G + 1e-6), y = (gamma * Nx + 1) * x + beta. gamma and beta are
 * [C] or [1, 1, 1, C] (the checkpoint's shape); beta may be null (the deploy form, where it
 * was folded into the next linear layer). Gradients flow to x, gamma, beta and inputBias. gamma,
 * beta and inputBias share one dtype, x's or f32 beside a bf16 x (a GELU of a bf16 product under autocast): the
 * math is f32 either way and the result has x's dtype, rounded once, which is what the
 * product after GRN reads (an f32 result would only be cast there).
 */
export function grn(xIn: Tensor, gammaIn: Tensor, betaIn: Tensor | null = null, opts: GrnOptions = {}): Tensor {
  const op = 'grn';
  if (opts === null || typeof opts !== 'object') throw argError(op, 'opts', 'an options object', opts);
  const gelu = opts.gelu === undefined ? false : checkBoolean(op, 'gelu', opts.gelu);
  const x = floatTensor(op, 'x', xIn);
  if (x.rank !== 4) throw new Error(`${op}: expected a rank-4 tensor [N, H, W, C] for x, got ${shapeStr(x.shape)}`);
  const [n, h, w, c] = x.shape as [number, number, number, number];
  const gamma = channelVector(op, 'gamma', gammaIn, x, c);
  if (betaIn !== null && betaIn !== undefined && typeof betaIn !== 'object') throw argError(op, 'beta', 'a Tensor or null', betaIn);
  const beta = betaIn ? channelVector(op, 'beta', betaIn, x, c) : null;
  const biasIn = opts.inputBias;
  if (biasIn !== null && biasIn !== undefined && typeof biasIn !== 'object') throw argError(op, 'inputBias', 'a Tensor or null', biasIn);
  const inputBias = biasIn ? channelVector(op, 'inputBias', biasIn, x, c) : null;
  checkParamDtypes(op, x, [['gamma', gamma], ['beta', beta], ['inputBias', inputBias]]);
  const xBias = inputBias ? inputBias.view([c]) : null;
  const x3 = x.view([n, h * w, c]);
  const y = emptyLike(x);
  const y3 = y.view([n, h * w, c]);
  // [N, C] f32: the norms, the normalized norms, the per-sample gain 1 + gamma * Nx, and the
  // per-sample denominator mean(G) + eps [N, 1].
  const [norms, normalized, gain, denom] = noGrad(() =>
    scope(() => {
      const squares = empty([n, c], { device: x.device });
      native.sampleChannelDot(x3, null, squares, gelu, null, xBias);
      const g = sqrt(squares);
      const d = affine(mean(g, 1, { keepDims: true }), 1, GRN_EPS);
      const u = div(g, d);
      return [g, u, affine(mul(u, cast(reshape(gamma, [c]), 'f32')), 1, 1), d];
    }),
  );
  const betaFlat = beta ? beta.view([c]) : null;
  native.sampleChannelAffine(x3, gain, null, null, betaFlat, y3, gelu, xBias, null);
  for (const t of [y3, betaFlat]) t?.dispose();
  const inputs = [x, gamma];
  const betaIndex = beta ? inputs.push(beta) - 1 : -1;
  const biasIndex = inputBias ? inputs.push(inputBias) - 1 : -1;
  const saved = [x, norms, normalized, gain, denom, gamma];
  if (xBias) saved.push(xBias);
  attachGrad(y, op, inputs, saved, (gy, [xs, g, u, gn, d, gm, xb], needs) => {
    const xv = xs!.view([n, h * w, c]);
    const gy3 = gy.view([n, h * w, c]);
    // S[n, c] = sum over pixels of dy * x (GELU(x) with gelu): the gradient of every [N, C]
    // quantity runs through it. The same pass sums dy per sample for beta's gradient.
    const s = empty([n, c], { device: gy.device });
    const dySums = betaIndex > 0 && needs[betaIndex] ? empty([n, c], { device: gy.device }) : null;
    native.sampleChannelDot(gy3, xv, s, gelu, dySums, xb ?? null);
    let dx: Tensor | null = null;
    // inputBias's gradient: the sums of dx, from the pass that writes dx.
    const dxSums = biasIndex > 0 && needs[biasIndex] ? empty([n, c], { device: gy.device }) : null;
    if (needs[0] || dxSums) {
      // dx = dy * gain + x * coef, coef = (a / d - sum_c(a * G) / (C d^2)) / G with a = gamma * S
      // (with gelu, GELU(x) in place of x and the sum times GELU'(x), in the same pass).
      const a = mul(s, cast(reshape(gm!, [c]), 'f32'));
      const k = div(sum(mul(a, g!), 1, { keepDims: true }), affine(square(d!), c));
      const coef = div(sub(div(a, d!), k), clamp(g!, MIN_NORM));
      dx = emptyLike(xs!);
      native.sampleChannelAffine(gy3, gn!, xv, coef, null, dx.view([n, h * w, c]), gelu, xb ?? null, dxSums);
    }
    const channelSums = (sums: Tensor | null, like: Tensor | null): Tensor | null => (sums && like ? reshape(cast(sum(sums, 0), like.dtype), like.shape) : null);
    const grads = [dx, needs[1] ? reshape(cast(sum(mul(u!, s), 0), gm!.dtype), gm!.shape) : null];
    if (beta) grads.push(channelSums(dySums, beta));
    if (inputBias) grads.push(channelSums(dxSums, inputBias));
    return grads;
  });
  for (const t of [x3, norms, normalized, gain, denom, xBias]) t?.dispose();
  return y;
}
