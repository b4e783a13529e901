// clipforge: CLIP training and inference for Node.js.
export * from './tensor/index.js';
export { native, packageRoot } from './native.js';
export * from './data/tokenizer.js';
export * from './data/text_reduction.js';
export * from './loss/index.js';
export * from './data/builtin/index.js';
export * from './data/image_folder.js';
