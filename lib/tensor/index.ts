// The tensor runtime: tensors, memory scopes, autograd and the functional ops.
export {
  Tensor, Storage, empty, emptyLike, full, zeros, ones, zerosLike, onesLike, arange, fromArray, scalar,
  liveTensorCount, isTensor, dtypeBytes, DTYPES, type DType, type Device, type TensorOptions,
} from './tensor.js';
export { scope, keep, scopeDepth } from './scope.js';
export { backward, noGrad, enableGrad, isGradEnabled, attachGrad, GradNode, type GradFn, type PendingGrad } from './autograd.js';
export { checkpoint } from './checkpoint.js';
export { autocast, autocastDtype, type AutocastDType } from './autocast.js';
export { Generator, defaultGenerator, manualSeed, rand, randn, type RandomOptions } from './random.js';
export { memoryStats, emptyCache, synchronize, backendInfo, setNumThreads, type MemoryStats } from './memory.js';
export * from './ops/elementwise.js';
export * from './ops/reduce.js';
export * from './ops/shape.js';
export * from './ops/embedding.js';
export * from './ops/permute.js';
export * from './ops/slice.js';
export * from './ops/softmax.js';
export * from './ops/cross_entropy.js';
export * from './ops/layernorm.js';
export * from './ops/l2norm.js';
export * from './ops/matmul.js';
export * from './ops/attention.js';
export * from './ops/dwconv.js';
export * from './ops/conv2d.js';
export * from './ops/batchnorm.js';
export * from './ops/grn.js';
export * from './ops/squeeze_excite.js';
export * from './ops/drop_path.js';
