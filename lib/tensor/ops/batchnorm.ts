// Batch normalization over the channel axis of channels-last activations (PyTorch's
// BatchNorm2d applied to NHWC data), as UniRepLKNet uses it after every depthwise conv and
// FFN. Native kernels (native/include/batchnorm.h): per-channel statistics, one fused
// normalize-scale-shift pass, and a backward of one reduction pass plus one elementwise pass.
// Eval mode runs the same kernels with the running statistics as constants.
import { native } from '../../native.js';
import { attachGrad, noGrad } from '../autograd.js';
import { argError, checkBoolean, checkFinite, sameShape, shapeStr } from '../check.js';
import { scope } from '../scope.js';
import { type DType, empty, emptyLike, type Tensor } from '../tensor.js';
import { add, affine, rsqrt } from './elementwise.js';
import { cast } from './shape.js';
import { checkParamDtypes, sameOrWider } from './promote.js';
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

/** batchNorm's options: BatchNormOptions and a residual to add. */
export interface BatchNormResidualOptions extends BatchNormOptions {
  /**
   * A tensor of x's shape added to the output, y = residual + batchNorm(x), in the residual's
   * dtype (x's, or f32 beside bf16 x): a block's last norm writing the residual stream's sum in
   * one pass, where an f32 stream beside a bf16 norm output would cost the output, an add and,
   * in backward, a cast of the stream's gradient. The residual's gradient is y's, unchanged;
   * the norm's backward reads that gradient in the stream's dtype.
   */
  residual?: Tensor;
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
  xIn: Tensor, weightIn: Tensor, biasIn: Tensor, runningMeanIn: Tensor, runningVarIn: Tensor, opts: BatchNormResidualOptions = {},
): Tensor {
  const op = 'batchNorm';
  const o = options(op, opts);
  const b = checkBranch(op, '', xIn, weightIn, biasIn, runningMeanIn, runningVarIn);
  const residual = opts.residual === undefined ? null : checkResidual(op, opts.residual, b.x);
  const [mean, rstd] = statistics(op, b, o);
  const y = emptyLike(residual ?? b.x);
  native.batchNormApply(b.x, mean, rstd, b.weight, b.bias, residual, y);
  const inputs = residual ? [b.x, b.weight, b.bias, residual] : [b.x, b.weight, b.bias];
  attachGrad(y, op, inputs, [b.x, mean, rstd, b.weight], (gy, [xs, ms, rs, ws], needs) => {
    const grads = branchGrads(gy, xs!, ms!, rs!, ws!, needs, o.training);
    return residual ? [...grads, needs[3] ? gy : null] : grads;
  });
  mean.dispose();
  rstd.dispose();
  return y;
}

/** The native sum pass's limit on branches (kMaxBatchNormBranches in native/include/batchnorm.h). */
const MAX_BRANCHES = 8;

/** One BatchNorm's input, parameters and running statistics: a branch of batchNormSum. */
export interface BatchNormBranch {
  x: Tensor;
  weight: Tensor;
  bias: Tensor;
  runningMean: Tensor;
  runningVar: Tensor;
}

/**
 * The sum of BatchNorms of several inputs of one shape, sum_i batchNorm(x_i, weight_i, ...),
 * as a Dilated Reparam Block adds its parallel branches: the same values and gradients as
 * the separate BatchNorms added, but one native pass writes the sum (the branches' normalized
 * outputs are never written), and the backward hands every branch the same gradient. Each
 * branch's statistics and running averages are its own, as with batchNorm (same options, for
 * all branches). At most 8 branches; the inputs share a dtype, their vectors one dtype too.
 */
export function batchNormSum(branches: readonly BatchNormBranch[], opts: BatchNormOptions = {}): Tensor {
  const op = 'batchNormSum';
  if (!Array.isArray(branches) || branches.length < 1 || branches.length > MAX_BRANCHES) {
    throw argError(op, 'branches', `an array of 1 to ${MAX_BRANCHES} branches`, branches);
  }
  const o = options(op, opts);
  const checked = branches.map((b, i) => {
    if (b === null || typeof b !== 'object') throw argError(op, `branches[${i}]`, 'an object { x, weight, bias, runningMean, runningVar }', b);
    return checkBranch(op, `branches[${i}].`, b.x, b.weight, b.bias, b.runningMean, b.runningVar);
  });
  const first = checked[0]!;
  for (const [i, b] of checked.entries()) {
    sameDevice(op, ['branches[0].x', `branches[${i}].x`], first.x, b.x);
    if (b.x.dtype !== first.x.dtype || !sameShape(b.x.shape, first.x.shape)) {
      throw new Error(`${op}: expected branches[${i}].x like branches[0].x (${first.x.dtype} ${shapeStr(first.x.shape)}), got ${b.x.dtype} ${shapeStr(b.x.shape)}`);
    }
    if (b.weight.dtype !== first.weight.dtype) {
      throw new Error(`${op}: expected the weights and biases of every branch in one dtype (${first.weight.dtype}, as branches[0]'s), got ${b.weight.dtype} in branches[${i}]`);
    }
  }
  const stats = checked.map((b) => statistics(op, b, o));
  const y = emptyLike(first.x);
  native.batchNormSumApply(checked.map((b) => b.x), stats.map(([m]) => m), stats.map(([, r]) => r), checked.map((b) => b.weight), checked.map((b) => b.bias), y);
  const inputs = checked.flatMap((b) => [b.x, b.weight, b.bias]);
  const saved = checked.flatMap((b, i) => [b.x, stats[i]![0], stats[i]![1], b.weight]);
  attachGrad(y, op, inputs, saved, (gy, kept, needs) => sumGrads(gy, kept, needs, o.training));
  for (const [m, r] of stats) {
    m.dispose();
    r.dispose();
  }
  return y;
}

/** One BatchNorm's tensors, checked: x [..., C] and its four [C] vectors. */
interface Branch {
  x: Tensor;
  weight: Tensor;
  bias: Tensor;
  runningMean: Tensor;
  runningVar: Tensor;
  c: number;
}

interface Options {
  training: boolean;
  momentum: number;
  eps: number;
  updateRunning: boolean;
}

function options(op: string, opts: BatchNormOptions): Options {
  if (opts === null || typeof opts !== 'object') throw argError(op, 'opts', 'an options object', opts);
  const training = opts.training === undefined ? false : checkBoolean(op, 'training', opts.training);
  const momentum = checkFinite(op, 'momentum', opts.momentum ?? 0.1);
  if (momentum < 0 || momentum > 1) throw argError(op, 'momentum', 'a number in [0, 1]', momentum);
  const eps = checkFinite(op, 'eps', opts.eps ?? 1e-5);
  if (eps < 0) throw argError(op, 'eps', 'a finite number >= 0', eps);
  const updateRunning = opts.updateRunningStats === undefined ? true : checkBoolean(op, 'updateRunningStats', opts.updateRunningStats);
  return { training, momentum, eps, updateRunning };
}

/** prefix names the branch in errors ('' for a lone batchNorm, 'branches[i].' in a sum). */
function checkBranch(op: string, prefix: string, xIn: Tensor, weightIn: Tensor, biasIn: Tensor, runningMeanIn: Tensor, runningVarIn: Tensor): Branch {
  const x = floatTensor(op, `${prefix}x`, xIn);
  if (x.rank < 2) throw new Error(`${op}: expected a tensor [..., C] of rank >= 2 for ${prefix}x, got ${shapeStr(x.shape)}`);
  const c = x.shape[x.rank - 1]!;
  const vectors = { weight: weightIn, bias: biasIn, runningMean: runningMeanIn, runningVar: runningVarIn };
  const [weight, bias, runningMean, runningVar] = Object.entries(vectors).map(([name, t]) => {
    const v = floatTensor(op, `${prefix}${name}`, t);
    sameDevice(op, [`${prefix}x`, `${prefix}${name}`], x, v);
    expectShape(op, `${prefix}${name}`, v, [c]);
    return v;
  }) as [Tensor, Tensor, Tensor, Tensor];
  checkParamDtypes(op, x, [[`${prefix}weight`, weight], [`${prefix}bias`, bias], [`${prefix}runningMean`, runningMean], [`${prefix}runningVar`, runningVar]]);
  return { x, weight, bias, runningMean, runningVar, c };
}

/** x's shape and device, x's dtype or f32 beside bf16 x. */
function checkResidual(op: string, residualIn: Tensor, x: Tensor): Tensor {
  const residual = floatTensor(op, 'residual', residualIn);
  sameDevice(op, ['x', 'residual'], x, residual);
  expectShape(op, 'residual', residual, x.shape);
  if (!sameOrWider(x.dtype, residual.dtype)) {
    throw new Error(`${op}: expected residual of x's dtype ${x.dtype}${x.dtype === 'bf16' ? ' or f32' : ''}, got ${residual.dtype}`);
  }
  return residual;
}

/** The mean and 1 / sqrt(var + eps) to normalize with, f32 [C]; in training the batch's, folded into the running ones. */
function statistics(op: string, { x, c, runningMean, runningVar }: Branch, o: Options): [Tensor, Tensor] {
  const rows = x.size / c;
  if (!o.training) {
    // Copies: the saved statistics must not change if the running ones are updated before backward.
    return noGrad(() => scope(() => [affine(cast(runningMean, 'f32'), 1), rsqrt(affine(cast(runningVar, 'f32'), 1, o.eps))]));
  }
  if (rows < 2) throw new Error(`${op}: expected more than one value per channel in training, got x of shape ${shapeStr(x.shape)}`);
  const channelStats = (): Tensor => empty([c], { device: x.device });
  const mean = channelStats();
  const rstd = channelStats();
  const variance = channelStats();
  native.batchNormStats(x, mean, variance, rstd, o.eps);
  if (o.updateRunning) noGrad(() =>
    scope(() => {
      // PyTorch's running update: the biased variance normalizes, the unbiased one is tracked.
      const newMean = add(affine(runningMean, 1 - o.momentum), cast(affine(mean, o.momentum), runningMean.dtype));
      const newVar = add(affine(runningVar, 1 - o.momentum), cast(affine(variance, (o.momentum * rows) / (rows - 1)), runningVar.dtype));
      native.copy(newMean, runningMean);
      native.copy(newVar, runningVar);
    }),
  );
  variance.dispose();
  return [mean, rstd];
}

/**
 * A batchNormSum's gradients [dx, dweight, dbias] per branch from dy and the saved [x, mean,
 * rstd, weight] per branch: one reduction and one input-gradient pass for all branches, each
 * reading dy once. Every branch's bias gradient is the same sum of dy (copied for all but the
 * first, as every gradient must be its own tensor).
 */
function sumGrads(gy: Tensor, kept: readonly (Tensor | null)[], needs: boolean[], batchStats: boolean): (Tensor | null)[] {
  const count = kept.length / 4;
  const field = (j: number): Tensor[] => Array.from({ length: count }, (_, i) => kept[4 * i + j]!);
  const [xs, means, rstds, weights] = [field(0), field(1), field(2), field(3)];
  const c = xs[0]!.shape[xs[0]!.rank - 1]!;
  const sumDy = empty([c], { device: gy.device });
  const sumDyXhats = xs.map(() => empty([c], { device: gy.device }));
  native.batchNormSumBackwardReduce(xs, means, rstds, gy, sumDy, sumDyXhats);
  const dxs = xs.map((x, i) => (needs[3 * i] ? emptyLike(x) : null));
  if (dxs.some((dx) => dx !== null)) native.batchNormSumBackwardInput(xs, means, rstds, weights, gy, sumDy, sumDyXhats, dxs, batchStats);
  let sumDyTaken = false;
  const biasGrad = (dtype: DType): Tensor => {
    if (dtype !== 'f32') return cast(sumDy, dtype);
    if (sumDyTaken) return affine(sumDy, 1);
    sumDyTaken = true;
    return sumDy;
  };
  const grads = xs.flatMap((_, i) => {
    const dtype = weights[i]!.dtype;
    const dw = needs[3 * i + 1] ? cast(sumDyXhats[i]!, dtype) : null;
    if (dw !== sumDyXhats[i]) sumDyXhats[i]!.dispose();
    return [dxs[i] ?? null, dw, needs[3 * i + 2] ? biasGrad(dtype) : null];
  });
  if (!sumDyTaken) sumDy.dispose();
  return grads;
}

/** One BatchNorm's gradients [dx, dweight, dbias] from dy, its input and statistics. */
function branchGrads(gy: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor, needs: boolean[], batchStats: boolean): (Tensor | null)[] {
  const c = x.shape[x.rank - 1]!;
  const sumDy = empty([c], { device: gy.device });
  const sumDyXhat = empty([c], { device: gy.device });
  native.batchNormBackwardReduce(x, gy, mean, rstd, sumDy, sumDyXhat);
  let dx: Tensor | null = null;
  if (needs[0]) {
    dx = emptyLike(x);
    native.batchNormBackwardInput(x, gy, mean, rstd, weight, sumDy, sumDyXhat, dx, batchStats);
  }
  const dw = needs[1] ? cast(sumDyXhat, weight.dtype) : null;
  const db = needs[2] ? cast(sumDy, weight.dtype) : null;
  if (dw !== sumDyXhat) sumDyXhat.dispose();
  if (db !== sumDy) sumDy.dispose();
  return [dx, dw, db];
}
