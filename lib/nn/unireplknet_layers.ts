// The layers UniRepLKNet is built from, with the parameter names and shapes of the official
// implementation (PyTorch Conv2d / BatchNorm2d / nn.Sequential indices), so its checkpoints
// load by name. Activations are NHWC throughout (see unireplknet.ts for why).
import { noGrad } from '../tensor/autograd.js';
import { checkInteger } from '../tensor/check.js';
import { conv2d } from '../tensor/ops/conv2d.js';
import { batchNorm, batchNormSum, type BatchNormOptions } from '../tensor/ops/batchnorm.js';
import { depthwiseConv2d } from '../tensor/ops/dwconv.js';
import { mul } from '../tensor/ops/elementwise.js';
import { grn } from '../tensor/ops/grn.js';
import { squeezeExcite } from '../tensor/ops/squeeze_excite.js';
import type { Tensor } from '../tensor/tensor.js';
import { native } from '../native.js';
import { initConstant, initNormal } from './init.js';
import { emptyParameter, type LayerOptions } from './layers.js';
import { Module } from './module.js';

/**
 * The official code initializes every conv and linear weight with timm's trunc_normal_(std
 * 0.02), truncated at +-2 absolute: 100 standard deviations, so a plain normal draw has the
 * same distribution to within far less than one value in 10^20.
 */
export const UNIREPLKNET_INIT_STD = 0.02;

/**
 * Children under nn.Sequential names: indices ('0', '1', ...) or the names of an OrderedDict.
 * Layers without parameters (permutes, activations) are applied by the owner and leave gaps
 * in the numbering, as they do in the checkpoints.
 */
export class Sequence extends Module {
  constructor(children: Record<string, Module>) {
    super();
    for (const [name, m] of Object.entries(children)) this.registerModule(name, m);
  }

  at<M extends Module>(name: number | string): M {
    return this.child<M>(String(name));
  }
}

/** Dense K x K convolution (weight [out, in, K, K], bias [out]) over NHWC activations. */
export class Conv2d extends Module {
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    readonly stride: number,
    readonly padding: number,
    opts: LayerOptions = {},
  ) {
    super();
    checkInteger('Conv2d', 'inChannels', inChannels, 1);
    checkInteger('Conv2d', 'outChannels', outChannels, 1);
    checkInteger('Conv2d', 'kernelSize', kernelSize, 1);
    this.registerParameter('weight', initNormal(emptyParameter([outChannels, inChannels, kernelSize, kernelSize], opts), UNIREPLKNET_INIT_STD, opts.generator));
    this.registerParameter('bias', initConstant(emptyParameter([outChannels], opts), 0));
  }

  get weight(): Tensor {
    return this.param('weight');
  }

  get bias(): Tensor {
    return this.param('bias');
  }

  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding });
  }
}

/** Depthwise K x K convolution (weight [C, 1, K, K], optional bias [C]), 'same' padding. */
export class DepthwiseConv extends Module {
  constructor(
    readonly channels: number,
    readonly kernelSize: number,
    readonly dilation: number,
    opts: LayerOptions & { bias: boolean },
  ) {
    super();
    checkInteger('DepthwiseConv', 'channels', channels, 1);
    this.registerParameter('weight', initNormal(emptyParameter([channels, 1, kernelSize, kernelSize], opts), UNIREPLKNET_INIT_STD, opts.generator));
    if (opts.bias) this.registerParameter('bias', initConstant(emptyParameter([channels], opts), 0));
  }

  get weight(): Tensor {
    return this.param('weight');
  }

  get bias(): Tensor | null {
    return this.optionalParam('bias');
  }

  forward(x: Tensor): Tensor {
    return depthwiseConv2d(x, this.weight, this.bias, { dilation: this.dilation });
  }
}

export interface BatchNorm2dForwardOptions {
  /** false: a recomputation (gradient checkpointing) of a forward that already updated them (default true). */
  updateRunningStats?: boolean;
  /**
   * A factor [C] on the output (a block's layer scale), folded into the weight and bias,
   * gamma * (xhat * w + b) = xhat * (gamma * w) + gamma * b, so that no pass over the
   * activations (forward or backward) applies it; its gradient comes from the per-channel sums
   * the BatchNorm backward takes anyway.
   */
  outputScale?: Tensor;
  /** Added to the output by the same pass (batchNorm's residual option): a block's residual stream. */
  residual?: Tensor;
}

/**
 * BatchNorm2d over the channel axis of NHWC activations: weight, bias, running_mean,
 * running_var and num_batches_tracked (a float here, in the parameters' dtype: our
 * elementwise kernels are float-only),
 * PyTorch's defaults (eps 1e-5, momentum 0.1). Batch statistics in training mode, running
 * ones in eval mode.
 */
export class BatchNorm2d extends Module {
  readonly eps = 1e-5;
  readonly momentum = 0.1;

  constructor(
    readonly channels: number,
    opts: LayerOptions = {},
  ) {
    super();
    checkInteger('BatchNorm2d', 'channels', channels, 1);
    this.registerParameter('weight', initConstant(emptyParameter([channels], opts), 1));
    this.registerParameter('bias', initConstant(emptyParameter([channels], opts), 0));
    const buffer = (shape: number[], value: number): Tensor => initConstant(emptyParameter(shape, opts), value);
    this.registerBuffer('running_mean', buffer([channels], 0));
    this.registerBuffer('running_var', buffer([channels], 1));
    this.registerBuffer('num_batches_tracked', buffer([], 0));
  }

  get weight(): Tensor {
    return this.param('weight');
  }

  get bias(): Tensor {
    return this.param('bias');
  }

  get runningMean(): Tensor {
    return this.buffer('running_mean');
  }

  get runningVar(): Tensor {
    return this.buffer('running_var');
  }

  forward(x: Tensor, opts: BatchNorm2dForwardOptions = {}): Tensor {
    const { updateRunningStats = true, outputScale, residual } = opts;
    const weight = outputScale ? mul(this.weight, outputScale) : this.weight;
    const bias = outputScale ? mul(this.bias, outputScale) : this.bias;
    const y = batchNorm(x, weight, bias, this.runningMean, this.runningVar, { ...this.options(updateRunningStats), residual });
    this.countBatch(updateRunningStats);
    return y;
  }

  /**
   * sum_i norms[i].forward(xs[i]) with one native pass writing the sum (batchNormSum): a
   * Dilated Reparam Block's parallel branches. The mode, momentum and eps are the first norm's
   * (a block's norms are switched together).
   */
  static sum(terms: readonly (readonly [BatchNorm2d, Tensor])[], updateRunningStats = true): Tensor {
    const first = terms[0]![0];
    const branches = terms.map(([bn, x]) => ({ x, weight: bn.weight, bias: bn.bias, runningMean: bn.runningMean, runningVar: bn.runningVar }));
    const y = batchNormSum(branches, first.options(updateRunningStats));
    for (const [bn] of terms) bn.countBatch(updateRunningStats);
    return y;
  }

  private options(updateRunningStats: boolean): BatchNormOptions {
    return { training: this.training, momentum: this.momentum, eps: this.eps, updateRunningStats };
  }

  /** num_batches_tracked counts the training forwards that updated the running statistics, as PyTorch's does. */
  private countBatch(updateRunningStats: boolean): void {
    if (!this.training || !updateRunningStats) return;
    const count = this.buffer('num_batches_tracked');
    noGrad(() => native.unary('affine', count, count, 1, 1));
  }
}

/** GRN over NHWC with gamma and (training form) beta of shape [1, 1, 1, C], zero-initialized. */
export class GRN extends Module {
  constructor(
    readonly channels: number,
    opts: LayerOptions & { bias: boolean },
  ) {
    super();
    this.registerParameter('gamma', initConstant(emptyParameter([1, 1, 1, channels], opts), 0));
    if (opts.bias) this.registerParameter('beta', initConstant(emptyParameter([1, 1, 1, channels], opts), 0));
  }

  /** gelu: GRN of GELU(x), fused (the block's act); inputBias: the preceding linear layer's bias, added to x as GRN reads it. */
  forward(x: Tensor, gelu = false, inputBias: Tensor | null = null): Tensor {
    return grn(x, this.param('gamma'), this.optionalParam('beta'), { gelu, inputBias });
  }
}

/** UniRepLKNet's SEBlock: `down` (1x1 conv C -> R) and `up` (R -> C), both with bias. */
export class SEBlock extends Module {
  readonly down: Conv2d;
  readonly up: Conv2d;

  constructor(channels: number, internal: number, opts: LayerOptions = {}) {
    super();
    this.down = this.registerModule('down', new Conv2d(channels, internal, 1, 1, 0, opts));
    this.up = this.registerModule('up', new Conv2d(internal, channels, 1, 1, 0, opts));
  }

  forward(x: Tensor): Tensor {
    return squeezeExcite(x, this.down.weight, this.down.bias, this.up.weight, this.up.bias);
  }
}
