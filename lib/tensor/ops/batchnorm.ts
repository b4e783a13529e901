// Batch normalization over the channel axis of channels-last activations (PyTorch's
// BatchNorm2d applied to NHWC data), as UniRepLKNet uses it after every depthwise conv and
// FFN. Native kernels (native/include/batchnorm.h): per-channel statistics, one fused
// normalize-scale-shift pass, and a backward of one reduction pass plus one elementwise pass.
// Eval mode runs the same kernels with the running statistics as constants.
import { native } from '../../native.js';
import { attachGrad, noGrad } from '../autograd.js';
import { argError, checkBoolean, checkFinite, shapeStr } from '../check.js';
import { scope } from '../scope.js';
import { empty, emptyLike, type Tensor } from '../tensor.js';
import { add, affine, rsqrt } from './elementwise.js';
import { cast } from './shape.js';
import { checkParamDtypes } from './promote.js';
import { expectShape, floatTensor, sameDevice } from './util.js';

export interface BatchNormOptions {
  /** Normalize with the batch's statistics and update the running ones (default false). */
  training?: boolean;
  /** Weight of the new batch statistic in the running averages (PyTorch's 0.1, default). */
  momentum?: number;
  /** Added to the variance (default 1e-5, PyTorch's). */
  eps?: number;
  /**
   * In training, fold the batch statistics into the running ones (default true). false for a
   * recomputation (gradient checkpointing) of a forward that already did.
   */
  updateRunningStats?: boolean;
}

/**
 * y = (x - mean) / sqrt(var + eps) * weight + bias per channel, x [..., C] (channels last,
 * e.g. NHWC), weight, bias, runningMean, runningVar [C]. Training: mean and the biased
 * variance over every element of a channel; runningMean and runningVar are updated in place
 * as PyTorch does (r = (1 - momentum) r + momentum s, with the unbiased variance for
 * runningVar). Eval: the running statistics are used and not changed. Gradients flow to x,
 * weight and bias; the running statistics never carry one. The vectors share one dtype, x's or
 * f32 beside a bf16 x (a bf16 product's output under autocast): the kernels read that mix as it
 * is, normalize in f32 and give x's dtype, as PyTorch's batch norm does under autocast.
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
    sameDevice(op, ['x', name], x, v);
    expectShape(op, name, v, [c]);
    return v;
  }) as [Tensor, Tensor, Tensor, Tensor];
  checkParamDtypes(op, x, [['weight', weight], ['bias', bias], ['runningMean', runningMean], ['runningVar', runningVar]]);
  const training = opts.training === undefined ? false : checkBoolean(op, 'training', opts.training);
  const momentum = checkFinite(op, 'momentum', opts.momentum ?? 0.1);
  if (momentum < 0 || momentum > 1) throw argError(op, 'momentum', 'a number in [0, 1]', momentum);
  const eps = checkFinite(op, 'eps', opts.eps ?? 1e-5);
  if (eps < 0) throw argError(op, 'eps', 'a finite number >= 0', eps);
  const updateRunning = opts.updateRunningStats === undefined ? true : checkBoolean(op, 'updateRunningStats', opts.updateRunningStats);
  const rows = x.size / c;
  if (training && rows < 2) throw new Error(`${op}: expected more than one value per channel in training, got x of shape ${shapeStr(x.shape)}`);
  const channelStats = (): Tensor => empty([c], { device: x.device });
  let mean: Tensor, rstd: Tensor;
  if (training) {
    mean = channelStats();
    rstd = channelStats();
    const variance = channelStats();
    native.batchNormStats(x, mean, variance, rstd, eps);
    if (updateRunning) noGrad(() =>
      scope(() => {
        // PyTorch's running update: the biased variance normalizes, the unbiased one is tracked.
        const newMean = add(affine(runningMean, 1 - momentum), cast(affine(mean, momentum), runningMean.dtype));
        const newVar = add(affine(runningVar, 1 - momentum), cast(affine(variance, (momentum * rows) / (rows - 1)), runningVar.dtype));
        native.copy(newMean, runningMean);
        native.copy(newVar, runningVar);
      }),
    );
    variance.dispose();
  } else {
    // Copies: the saved statistics must not change if the running ones are updated before backward.
    [mean, rstd] = noGrad(() => scope(() => [affine(cast(runningMean, 'f32'), 1), rsqrt(affine(cast(runningVar, 'f32'), 1, eps))]));
  }
  const y = emptyLike(x);
  native.batchNormApply(x, mean, rstd, weight, bias, y);
  attachGrad(y, op, [x, weight, bias], [x, mean, rstd, weight], (gy, [xs, ms, rs, ws], needs) => {
    const sumDy = empty([c], { device: gy.device });
    const sumDyXhat = empty([c], { device: gy.device });
    native.batchNormBackwardReduce(xs!, gy, ms!, rs!, sumDy, sumDyXhat);
    let dx: Tensor | null = null;
    if (needs[0]) {
      dx = emptyLike(xs!);
      native.batchNormBackwardInput(xs!, gy, ms!, rs!, ws!, sumDy, sumDyXhat, dx, training);
    }
    const dw = needs[1] ? cast(sumDyXhat, ws!.dtype) : null;
    const db = needs[2] ? cast(sumDy, ws!.dtype) : null;
    if (dw !== sumDyXhat) sumDyXhat.dispose();
    if (db !== sumDy) sumDy.dispose();
    return [dx, dw, db];
  });
  mean.dispose();
  rstd.dispose();
  return y;
}
