// Parameter initializers, in place and outside autograd, drawing from a seeded Generator
// (lib/tensor/random.ts) so that a model built with the same seed gets the same weights on
// the CPU and on CUDA. The distributions are PyTorch's (nn.init), which OpenCLIP uses.
import { argError, checkFinite } from '../tensor/check.js';
import { defaultGenerator, Generator } from '../tensor/random.js';
import { checkTensor, type Tensor } from '../tensor/tensor.js';
import { native } from '../native.js';

let skipDepth = 0;

/**
 * Runs fn with every initializer of this file turned into a no-op, so that a model whose
 * weights are about to be loaded is built without drawing them first. The parameters then
 * hold uninitialized memory: load every one of them (a strict loadStateDict) before use.
 * Non-persistent buffers are not loaded, so make them with their values, not with these.
 */
export function withoutInit<R>(fn: () => R): R {
  if (typeof fn !== 'function') throw argError('withoutInit', 'fn', 'a function', fn);
  skipDepth++;
  try {
    return fn();
  } finally {
    skipDepth--;
  }
}

/** Fills t in place with draws from `generator`, as rand / randn would return them. */
function drawInto(op: string, t: Tensor, kind: 'uniform' | 'normal', a: number, b: number, generator: Generator | undefined): Tensor {
  if (t.dtype === 'i32') throw new Error(`${op}: expected a float tensor for t, got dtype 'i32'`);
  const g = generator ?? defaultGenerator;
  if (!(g instanceof Generator)) throw argError(op, 'generator', 'a Generator', generator);
  // The counters are taken only once the draw succeeded, as rand / randn do.
  native.random(t, kind, g.seed, g.getState().counter, a, b);
  g.take(t.size);
  return t;
}

/** Fills t with N(0, std²) draws. Returns t. */
export function initNormal(t: Tensor, std: number, generator?: Generator): Tensor {
  checkTensor('initNormal', 't', t);
  checkFinite('initNormal', 'std', std);
  if (skipDepth > 0) return t;
  return drawInto('initNormal', t, 'normal', 0, std, generator);
}

/** Fills t with U(low, high) draws. Returns t. */
export function initUniform(t: Tensor, low: number, high: number, generator?: Generator): Tensor {
  checkTensor('initUniform', 't', t);
  checkFinite('initUniform', 'low', low);
  checkFinite('initUniform', 'high', high);
  if (skipDepth > 0) return t;
  return drawInto('initUniform', t, 'uniform', low, high, generator);
}

/** Fills t with `value`. Returns t. */
export function initConstant(t: Tensor, value: number): Tensor {
  checkTensor('initConstant', 't', t);
  if (skipDepth > 0) return t;
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
