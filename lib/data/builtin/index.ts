// The built-in dataset's public surface.
export { BUILTIN_DEFAULT_IMAGE_SIZE, BUILTIN_DEFAULT_SIZES, createBuiltinDataset } from './dataset.js';
export type { BuiltinDataset, BuiltinDatasetOptions, BuiltinSample, BuiltinSplit } from './dataset.js';
export { BUILTIN_TEMPLATES } from './zeroshot.js';
