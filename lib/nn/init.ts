// Parameter initializers, in place and outside autograd, drawing from a seeded Generator
// (lib/tensor/random.ts) so that a model built with the same seed gets the same weights on
// the CPU and on CUDA. The distributions are PyTorch's (nn.init), which OpenCLIP uses.
import { noGrad } from '../tensor/autograd.js';
import { checkFinite } from '../tensor/check.js';
import { rand, randn, type Generator } from '../tensor/random.js';
import { checkTensor, type Tensor } from '../tensor/tensor.js';
import { native } from '../native.js';

function writeInto(t: Tensor, values: Tensor): Tensor {
  native.copy(values, t);
  values.dispose();
  return t;
}

/** Fills t with N(0, std²) draws. Returns t. */
export function initNormal(t: Tensor, std: number, generator?: Generator): Tensor {
  checkTensor('initNormal', 't', t);
  checkFinite('initNormal', 'std', std);
  return noGrad(() => writeInto(t, randn(t.shape, { std, dtype: t.dtype, device: t.device, generator })));
}

/** Fills t with U(low, high) draws. Returns t. */
export function initUniform(t: Tensor, low: number, high: number, generator?: Generator): Tensor {
  checkTensor('initUniform', 't', t);
  checkFinite('initUniform', 'low', low);
  checkFinite('initUniform', 'high', high);
  return noGrad(() => writeInto(t, rand(t.shape, { low, high, dtype: t.dtype, device: t.device, generator })));
}

/** Fills t with `value`. Returns t. */
export function initConstant(t: Tensor, value: number): Tensor {
  checkTensor('initConstant', 't', t);
  native.fill(t, checkFinite('initConstant', 'value', value));
  return t;
}

/** fan_in and fan_out of a weight [out, in, ...receptive field] as PyTorch computes them. */
export function fans(shape: readonly number[]): { fanIn: number; fanOut: number } {
  if (shape.length < 2) throw new Error(`fans: expected a weight of rank 2 or more, got shape [${shape.join(', ')}]`);
  const receptive = shape.slice(2).reduce((a, b) => a * b, 1);
  return { fanIn: shape[1]! * receptive, fanOut: shape[0]! * receptive };
}

/** Xavier (Glorot) uniform: U(-b, b) with b = sqrt(6 / (fan_in + fan_out)). Returns t. */
export function initXavierUniform(t: Tensor, generator?: Generator): Tensor {
  checkTensor('initXavierUniform', 't', t);
  const { fanIn, fanOut } = fans(t.shape);
  const bound = Math.sqrt(6 / (fanIn + fanOut));
  return initUniform(t, -bound, bound, generator);
}

/**
 * PyTorch's default for nn.Linear / nn.Conv2d weights (kaiming_uniform with a = sqrt(5)),
 * which works out to U(-1/sqrt(fan_in), 1/sqrt(fan_in)); their biases use the same bound,
 * passed here as `fanIn`. Returns t.
 */
export function initFanInUniform(t: Tensor, fanIn: number, generator?: Generator): Tensor {
  checkTensor('initFanInUniform', 't', t);
  if (!(fanIn > 0)) throw new Error(`initFanInUniform: expected a positive fanIn, got ${fanIn}`);
  const bound = 1 / Math.sqrt(fanIn);
  return initUniform(t, -bound, bound, generator);
}
