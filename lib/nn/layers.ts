// The basic layers, with OpenCLIP's (PyTorch's) parameter names, layouts and default
// initialization: Linear (weight [out, in]), LayerNorm, Embedding, LayerScale and the
// transformer MLP (c_fc -> activation -> c_proj, no dropout).
//
// Forward passes dispose their intermediates as soon as the next op has read them: what the
// backward needs is held by the autograd graph, so nothing outlives its use in inference.
import { argError, checkActivation, checkFinite, checkInteger } from '../tensor/check.js';
import { type Generator } from '../tensor/random.js';
import { empty, type DType, type Device, type Tensor } from '../tensor/tensor.js';
import { gelu, mul, quickGelu } from '../tensor/ops/elementwise.js';
import { embedding } from '../tensor/ops/embedding.js';
import { layerNorm } from '../tensor/ops/layernorm.js';
import { linear, mlp, type MlpActivation } from '../tensor/ops/matmul.js';
import { initConstant, initFanInUniform, initNormal } from './init.js';
import { Module } from './module.js';

/** Where and how a layer creates its parameters. */
export interface LayerOptions {
  device?: Device;
  /** Parameter dtype (default 'f32'). */
  dtype?: DType;
  /** Source of the initial values (default: the global generator). */
  generator?: Generator;
}

/** An uninitialized parameter tensor of `shape` as the options ask. */
export function emptyParameter(shape: readonly number[], opts: LayerOptions = {}): Tensor {
  if (opts === null || typeof opts !== 'object') throw argError('emptyParameter', 'opts', 'an options object', opts);
  return empty(shape, { device: opts.device ?? 'cpu', dtype: opts.dtype ?? 'f32' });
}

/** The activations of OpenCLIP's transformer MLPs (mlp's). */
export type Activation = MlpActivation;

/** Applies an activation by name. */
export function activate(x: Tensor, activation: Activation): Tensor {
  checkActivation('activate', activation);
  return activation === 'gelu' ? gelu(x) : quickGelu(x);
}

/** y = x · weightᵀ + bias with weight [out, in] and bias [out] (torch.nn.Linear). */
export class Linear extends Module {
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: LayerOptions & { bias?: boolean } = {},
  ) {
    super();
    checkInteger('Linear', 'inFeatures', inFeatures, 1);
    checkInteger('Linear', 'outFeatures', outFeatures, 1);
    this.registerParameter('weight', initFanInUniform(emptyParameter([outFeatures, inFeatures], opts), inFeatures, opts.generator));
    if (opts.bias ?? true) this.registerParameter('bias', initFanInUniform(emptyParameter([outFeatures], opts), inFeatures, opts.generator));
  }

  get weight(): Tensor {
    return this.param('weight');
  }

  get bias(): Tensor | null {
    return this.optionalParam('bias');
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

/** Layer normalization over the last axis with weight (ones) and bias (zeros), eps 1e-5. */
export class LayerNorm extends Module {
  readonly eps: number;

  constructor(
    readonly dim: number,
    opts: LayerOptions & { eps?: number } = {},
  ) {
    super();
    checkInteger('LayerNorm', 'dim', dim, 1);
    this.eps = opts.eps === undefined ? 1e-5 : checkFinite('LayerNorm', 'eps', opts.eps);
    this.registerParameter('weight', initConstant(emptyParameter([dim], opts), 1));
    this.registerParameter('bias', initConstant(emptyParameter([dim], opts), 0));
  }

  /** outDtype: 'bf16' writes an f32 x's normalized rows in bf16, for a bf16 product next (layerNorm). */
  forward(x: Tensor, outDtype: DType | null = null): Tensor {
    return layerNorm(x, this.param('weight'), this.param('bias'), this.eps, outDtype);
  }
}

/** A [count, dim] lookup table indexed by i32 ids, initialized N(0, 1) (torch.nn.Embedding). */
export class Embedding extends Module {
  constructor(
    readonly count: number,
    readonly dim: number,
    opts: LayerOptions = {},
  ) {
    super();
    checkInteger('Embedding', 'count', count, 1);
    checkInteger('Embedding', 'dim', dim, 1);
    this.registerParameter('weight', initNormal(emptyParameter([count, dim], opts), 1, opts.generator));
  }

  get weight(): Tensor {
    return this.param('weight');
  }

  /** ids of any shape (i32) -> [...ids.shape, dim]. */
  forward(ids: Tensor): Tensor {
    return embedding(this.weight, ids);
  }
}

/** Per-channel scale `gamma` [dim], initialized to `initValue` (OpenCLIP's LayerScale). */
export class LayerScale extends Module {
  constructor(dim: number, initValue: number, opts: LayerOptions = {}) {
    super();
    checkInteger('LayerScale', 'dim', dim, 1);
    checkFinite('LayerScale', 'initValue', initValue);
    this.registerParameter('gamma', initConstant(emptyParameter([dim], opts), initValue));
  }

  forward(x: Tensor): Tensor {
    return mul(x, this.param('gamma'));
  }
}

/** The transformer MLP: c_fc (width -> hidden) -> activation -> c_proj (hidden -> width). */
export class Mlp extends Module {
  readonly cFc: Linear;
  readonly cProj: Linear;
  readonly activation: Activation;

  constructor(width: number, hidden: number, opts: LayerOptions & { activation?: Activation } = {}) {
    super();
    this.activation = checkActivation('Mlp', opts.activation ?? 'gelu');
    this.cFc = this.registerModule('c_fc', new Linear(width, hidden, opts));
    this.cProj = this.registerModule('c_proj', new Linear(hidden, width, opts));
  }

  forward(x: Tensor): Tensor {
    return mlp(x, this.cFc.weight, this.cFc.bias, this.cProj.weight, this.cProj.bias, this.activation);
  }
}
