// clipforge: CLIP training and inference for Node.js.
export * from './tensor/index.js';
export { native, packageRoot } from './native.js';
export * from './data/tokenizer.js';
export * from './data/text_reduction.js';
export * from './loss/index.js';
export * from './io/index.js';
export * from './nn/index.js';
export * from './optim/index.js';
export * from './train/index.js';
export { readTar, type TarEntry } from './data/tar.js';
export { createWebDataset, expandShardUrls, type WebDatasetOptions } from './data/webdataset.js';
export { createCsvSource, parseCsv, type CsvOptions, type CsvSource } from './data/csv.js';
export { decodeImage, imageSize, type ImageInput, type RgbImage } from './data/image.js';
export { createImageTransform, parseAugConfig, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD, type AugmentOptions, type ImageTransform, type ImageTransformOptions } from './data/transforms.js';
export type { IndexedSource, RawSample, SampleSource, SkippedSample, SourceSpec, StreamPart, StreamSource } from './data/source.js';
export type { TextOptions } from './data/batch_producer.js';
export { createDataLoader, type Batch, type DataLoader, type DataLoaderOptions } from './data/loader.js';
