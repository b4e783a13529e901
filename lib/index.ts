// clipforge: CLIP training and inference for Node.js.
export * from './tensor/index.js';
export { native, packageRoot } from './native.js';
